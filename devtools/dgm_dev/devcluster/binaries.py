"""Locating the control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl).

Order: ``$DGM_CONTROLPLANE_DIR``, ``$KUBEBUILDER_ASSETS``, the output of
``hack/build-controlplane.sh`` when running from the repository checkout, else an error
telling the user to run ``make controlplane``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")


class BinaryError(RuntimeError):
    """A control-plane binary is missing or unusable; ``component`` names it."""

    def __init__(self, component: str | None, message: str):
        super().__init__(message)
        self.component = component


def repo_root() -> Path | None:
    """The repository checkout this package runs from, if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "build-controlplane.sh").is_file() and (parent / "controlplane").is_dir():
            return parent
    return None


def find_bin_dir(env: dict[str, str] | None = None, *, build: bool = True) -> Path:
    """The directory holding the binaries; raises BinaryError with a hint when none is found."""
    env = os.environ if env is None else env
    for var in ("DGM_CONTROLPLANE_DIR", "KUBEBUILDER_ASSETS"):
        value = env.get(var)
        if value:
            path = Path(value)
            if not path.is_dir():
                raise BinaryError(None, f"{var}={value} is not a directory")
            return path
    root = repo_root()
    if root is not None and build:
        script = root / "hack" / "build-controlplane.sh"
        proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, env=dict(env))
        out = proc.stdout.strip().splitlines()
        if proc.returncode == 0 and out and Path(out[-1]).is_dir():
            return Path(out[-1])
        raise BinaryError(None, f"{script} failed (exit {proc.returncode}); run `make controlplane` and read its output")
    raise BinaryError(
        None,
        "no control-plane binaries: set DGM_CONTROLPLANE_DIR (or KUBEBUILDER_ASSETS) to a directory "
        "holding etcd, kube-apiserver, kube-controller-manager and kubectl, or run `make controlplane` "
        "in the dgm-operator checkout",
    )


def binary(bin_dir: Path | str, component: str) -> Path:
    """Path of one component's binary, checked to exist and be executable."""
    path = Path(bin_dir) / component
    if not path.exists():
        raise BinaryError(component, f"{component}: binary not found at {path} (run `make controlplane`)")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BinaryError(component, f"{component}: {path} is not an executable file")
    return path


def check_all(bin_dir: Path | str, components: tuple[str, ...] = COMPONENTS) -> dict[str, Path]:
    return {c: binary(bin_dir, c) for c in components}
