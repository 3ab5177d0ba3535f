"""`dgm proposal-result`: the proposal Job's ``result`` container.

It runs after the proposer (an init container: ``dgm propose-llm`` or a user's coding agent)
has finished, reads what that left in ``/proposal/out`` and prints one result block on
stdout, which the operator reads from this container's log. Only this program writes to
that log, so nothing the model or the user's agent prints can pose as a result.

The proposer's output contract (``/proposal/out`` is an emptyDir both containers share):

* ``result.json``: a ``ProposalResult`` document (as ``dgm propose-llm`` writes it); or
* ``files/NAME``: the full new content of each changed file (names are ConfigMap keys: no
  directories), with an optional ``description.md`` (or ``description.txt``) saying what
  the change does and why, and an optional ``usage.json``
  (``{"promptTokens": .., "completionTokens": .., "totalTokens": .., "calls": ..}``).

Whatever is missing, malformed or too large becomes a failed result with the reason, so the
operator always reads a well-formed block. Exit code 0 (1 only when stdout fails).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..engine import proposal

#: the JSON of a result must leave room for the markers under the operator's log bound
MAX_RESULT_BYTES = proposal.MAX_RESULT_LOG_BYTES - 1024


def _read_bounded(path: Path, limit: int) -> str:
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path.name} has {size} bytes, more than {limit}")
    return path.read_text(encoding="utf-8")


def collect(out_dir: Path, parent_files: dict[str, str]) -> proposal.ProposalResult:
    """The proposer's output in ``out_dir`` as a result (a failure when it breaks the contract)."""
    result_json = out_dir / "result.json"
    files_dir = out_dir / "files"
    try:
        if result_json.is_file():
            try:
                data = json.loads(_read_bounded(result_json, MAX_RESULT_BYTES))
            except ValueError as exc:
                return proposal.failure("InvalidResult", f"result.json: {exc}")
            try:
                return proposal.validate_result(data)
            except proposal.ResultError as exc:
                return proposal.failure("InvalidResult", f"result.json: {exc}")
        if files_dir.is_dir():
            return _from_files(out_dir, files_dir, parent_files)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return proposal.failure("InvalidResult", f"cannot read the proposer's output: {exc}")
    return proposal.failure("NoResult", f"the proposer wrote neither {result_json} nor {files_dir}/")


def _from_files(out_dir: Path, files_dir: Path, parent_files: dict[str, str]) -> proposal.ProposalResult:
    files: dict[str, str] = {}
    total = 0
    for entry in sorted(files_dir.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            return proposal.failure("InvalidResult", f"files/{entry.name}: only regular files, no directories "
                                    "or links (file names are ConfigMap keys)")
        if not proposal.CONFIGMAP_KEY.match(entry.name):
            return proposal.failure("InvalidResult", f"files/{entry.name}: not a ConfigMap key "
                                    "(letters, digits, '-', '_', '.')")
        text = _read_bounded(entry, MAX_RESULT_BYTES - total)
        total += len(text.encode("utf-8"))
        files[entry.name] = text
    description = ""
    for name in ("description.md", "description.txt"):
        if (out_dir / name).is_file():
            description = _read_bounded(out_dir / name, proposal.MAX_TEXT)
            break
    usage = None
    if (out_dir / "usage.json").is_file():
        try:
            usage = proposal.ProposalUsage.model_validate(json.loads(_read_bounded(out_dir / "usage.json", 4096)))
        except ValueError as exc:
            return proposal.failure("InvalidResult", f"usage.json: {' '.join(str(exc).split())[:300]}")
    return proposal.result_from_files(files, description, parent_files=parent_files, usage=usage)


def render_bounded(result: proposal.ProposalResult) -> str:
    block = proposal.render_result(result)
    if len(block.encode()) > proposal.MAX_RESULT_LOG_BYTES:
        block = proposal.render_result(proposal.failure(
            "ResultTooLarge", f"the result needs {len(block.encode())} bytes, more than the "
            f"{proposal.MAX_RESULT_LOG_BYTES} the operator reads", usage=result.usage, model=result.model,
            attempts=result.attempts))
    return block


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dgm proposal-result", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("DGM_PROPOSAL_OUT", proposal.OUT_DIR))
    p.add_argument("--context", default=os.environ.get("DGM_PROPOSAL_CONTEXT", proposal.CONTEXT_PATH))
    args = p.parse_args(argv)
    parent_files: dict[str, str] = {}
    try:
        parent_files = proposal.load_context(Path(args.context).read_text(encoding="utf-8")).parent.files
    except (OSError, ValueError) as exc:  # only the files mode needs it, to leave unchanged files out
        print(f"dgm proposal-result: context unavailable ({exc}); every file in files/ counts as changed",
              file=sys.stderr)
    result = collect(Path(args.out), parent_files)
    try:
        sys.stdout.write(render_bounded(result))
        sys.stdout.flush()
    except OSError:
        return 1
    return 0
