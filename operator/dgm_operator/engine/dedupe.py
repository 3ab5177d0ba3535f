"""Duplicate proposals: a stable digest of a merged file set, and who it duplicates.

A proposal whose merged file set (its parent's files with its changes applied) and image
equal an archived candidate's would measure the same agent again: it is decided as
``DuplicateCandidate`` (see :func:`.policies.duplicate_candidate`), linked to the original,
and not evaluated. The digest is SHA-256 over the files sorted by name, each name and content
length-prefixed (so no two different file sets share an encoding), then the image.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

DIGEST_PREFIX = "sha256:"


def merged_files(parent_files: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """The file set a candidate is evaluated with: the parent's files, `changes` on top."""
    return {**parent_files, **changes}


def files_digest(files: Mapping[str, str], image: str | None = None) -> str:
    """Stable digest of a file set (and the image it runs with); independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(files):
        for part in (name, files[name]):
            if not isinstance(part, str):
                raise TypeError(f"file {name!r}: names and contents must be strings, got {type(part).__name__}")
            data = part.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    h.update(b"\x01" if image else b"\x00")
    if image:
        h.update(image.encode("utf-8"))
    return DIGEST_PREFIX + h.hexdigest()


def find_original(digest: str, archived: Iterable[tuple[str, str]], exclude: str | None = None) -> str | None:
    """The first archived name whose digest equals `digest` (`archived`: (name, digest) pairs,
    oldest first; the caller leaves out candidates that should not block a retry, such as
    Failed ones). `exclude` is the proposal's own name."""
    for name, other in archived:
        if other == digest and name != exclude:
            return name
    return None
