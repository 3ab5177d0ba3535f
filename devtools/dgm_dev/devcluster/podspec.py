"""Pure helpers of the local node: path mapping, env resolution, volume projection and
pod phase rules. No Kubernetes API access here (unit-tested on their own)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Callable, Iterable

TERMINATION_LOG_DEFAULT = "/dev/termination-log"
MAX_TERMINATION_MESSAGE = 4096


class PathMap:
    """Rewrites container paths (mount paths, the termination log path) to host paths.

    A container path matches only as a whole path prefix: ``/data`` rewrites ``/data`` and
    ``/data/x`` but not ``/database``; it must start a path token (string start or after a
    character that is not part of a path, e.g. ``=``, ``:``, space, quote). Longest first, one
    pass, so host paths are never rewritten again."""

    def __init__(self, mapping: dict[str, str]):
        self.mapping = {k.rstrip("/") or "/": v for k, v in mapping.items() if k and k.rstrip("/")}
        if self.mapping:
            keys = sorted(self.mapping, key=len, reverse=True)
            alt = "|".join(re.escape(k) for k in keys)
            self._re = re.compile(r"(?<![\w.\-/~$])(" + alt + r")(?=/|$|[^\w.\-])")
        else:
            self._re = None

    def __call__(self, text: str) -> str:
        if not self._re or not isinstance(text, str):
            return text
        return self._re.sub(lambda m: self.mapping[m.group(1)], text)


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes, others stay."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, text)


_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: dict, path: str, node_name: str = "", host_ip: str = "127.0.0.1") -> str:
    meta = pod.get("metadata", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName") or node_name,
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", "default"),
        "status.podIP": host_ip,
        "status.podIPs": host_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    m = _FIELD.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    raise ValueError(f"unsupported fieldRef {path!r}")


class MissingReference(Exception):
    """A referenced ConfigMap/Secret (or key) does not exist and is not optional."""


def resolve_env(container: dict, pod: dict, get_configmap: Callable[[str], dict | None],
                get_secret: Callable[[str], dict | None], base: dict[str, str] | None = None,
                node_name: str = "") -> dict[str, str]:
    """The container's environment: base, then envFrom, then env (with $(VAR) expansion).

    get_configmap/get_secret take a name and return the object's ``data`` as str->str (secrets
    already decoded) or None if absent."""
    env = dict(base or {})

    def source(kind: str, name: str, optional: bool) -> dict | None:
        data = (get_configmap if kind == "configMap" else get_secret)(name)
        if data is None and not optional:
            raise MissingReference(f"{kind} {name!r} not found")
        return data

    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        for kind in ("configMap", "secret"):
            ref = ef.get(f"{kind}Ref")
            if ref:
                data = source(kind, ref.get("name", ""), bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e or e.get("value") is not None:
            env[name] = expand(e.get("value") or "", env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"]["fieldPath"], node_name)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "configMap" if "configMapKeyRef" in vf else "secret"
            ref = vf[f"{kind}KeyRef"]
            optional = bool(ref.get("optional"))
            data = source(kind, ref.get("name", ""), optional)
            if data is not None and ref["key"] in data:
                env[name] = data[ref["key"]]
            elif not optional:
                raise MissingReference(f"key {ref['key']!r} not found in {kind} {ref.get('name')!r}")
        elif "resourceFieldRef" in vf:
            env[name] = "0"  # resource limits are not enforced on the local node
    return env


def project(data: dict[str, bytes], items: list[dict] | None, optional: bool = False,
            what: str = "") -> dict[str, tuple[bytes, int | None]]:
    """Relative file path -> (content, mode) for a configMap/secret volume, honouring items."""
    if not items:
        return {k: (v, None) for k, v in data.items()}
    out = {}
    for it in items:
        key = it["key"]
        if key not in data:
            if optional:
                continue
            raise MissingReference(f"key {key!r} not found in {what}")
        out[it.get("path") or key] = (data[key], it.get("mode"))
    return out


def write_files(root: Path, files: dict[str, tuple[bytes, int | None]], default_mode: int | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        rel = rel.lstrip("/")
        if ".." in Path(rel).parts:
            raise ValueError(f"path {rel!r} escapes the volume")
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        m = mode if mode is not None else default_mode
        if m is not None:
            os.chmod(p, m | 0o600)  # the host user must keep read/write access


def decode_secret(data: dict | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


def configmap_bytes(cm: dict) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def termination_message(path: Path, policy: str | None, exit_code: int, log_path: Path | None) -> str:
    """What the kubelet would put in state.terminated.message."""
    data = b""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TERMINATION_MESSAGE)
    except OSError:
        pass
    if not data.strip() and exit_code != 0 and policy == "FallbackToLogsOnError" and log_path:
        data = log_tail(log_path, lines=80, max_bytes=2048)
    return data.decode(errors="replace")


def log_tail(path: Path, lines: int = 80, max_bytes: int = 2048) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return b""
    return b"\n".join(data.splitlines()[-lines:])


def backoff(restarts: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait before restart number `restarts` (1-based) of a crashing container."""
    return min(cap, base * (2 ** max(0, restarts - 1)))


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def pod_phase(policy: str, exits: Iterable[int | None]) -> str:
    """Phase from the containers' final exit codes (None = still running or to be restarted)."""
    exits = list(exits)
    if any(e is None for e in exits):
        return "Running"
    return "Succeeded" if all(e == 0 for e in exits) else "Failed"


def process_path(container_env: dict[str, str], node_path: str, python_dir: str) -> str:
    if container_env.get("PATH"):
        return container_env["PATH"]
    parts = [python_dir] + [p for p in node_path.split(os.pathsep) if p and p != python_dir]
    return os.pathsep.join(parts)
