"""Files of the dgm-operator checkout that the development tools need (the quickstart
example, the chart). They are not package data: the tools look for the checkout and say
exactly what is missing when they cannot find it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dgm_operator.api.crdgen import crds_yaml

ENV_VAR = "DGM_REPO_DIR"


class CheckoutNotFound(RuntimeError):
    """The dgm-operator checkout (or one file of it) cannot be found."""


def _is_checkout(path: Path) -> bool:
    return (path / "examples" / "quickstart").is_dir() and (path / "charts").is_dir()


def repo_dir() -> Path:
    """``$DGM_REPO_DIR``, else the checkout holding this package or the working directory."""
    value = os.environ.get(ENV_VAR)
    if value:
        path = Path(value)
        if not _is_checkout(path):
            raise CheckoutNotFound(f"{ENV_VAR}={value} is not a dgm-operator checkout "
                                   f"(no examples/quickstart and charts/ there)")
        return path
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if _is_checkout(candidate):
                return candidate
    raise CheckoutNotFound("the dgm-operator checkout was not found (looked above this package and the "
                           f"working directory for examples/quickstart and charts/); run from the "
                           f"checkout or set {ENV_VAR}")


def repo_file(*parts: str) -> Path:
    """A path inside the checkout, checked to exist."""
    path = repo_dir().joinpath(*parts)
    if not path.exists():
        raise CheckoutNotFound(f"{path} is missing from the dgm-operator checkout")
    return path


def crds_file() -> Path:
    """The project's CRDs rendered from the installed models into a temporary file
    (no checkout needed)."""
    fd, name = tempfile.mkstemp(prefix="dgm-crds-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(crds_yaml())
    return Path(name)
