"""Static safety analysis of a candidate's changes -> score in [0, 1] and findings.

Rules (rule name, severity):

* ``path`` (critical): empty names, absolute paths, ``..`` components, backslashes, NUL.
* ``protected_file`` (critical): edits of evaluation files (`protected_files` globs; the
  checker must stay out of reach, see the DGM paper's objective hacking).
* ``file_not_allowed`` (high): names matching none of the `allowed_files` globs.
* ``change_too_large`` (high): total bytes of all changes, or one file, above
  `max_change_bytes` / `max_file_bytes`.
* ``python_syntax`` (high): a `.py` change that does not parse.
* ``forbidden_call`` (critical): eval, exec, compile, __import__, breakpoint, os.system,
  os.popen, os.exec*, os.spawn*, os.fork, subprocess.*, socket.*, ctypes.*, importlib.*,
  and open() for writing to an absolute path or through ``..``.
* ``forbidden_import`` (critical): subprocess, socket, ctypes, importlib, multiprocessing,
  pty, shutil, signal, builtins, marshal, pickle, network and thread modules (anything
  spawning, linking, deserialising or escaping the sandbox; ``os`` and ``sys`` are only
  off the allow list, their dangerous calls are ``forbidden_call``).
* ``import_not_allowed`` (high): an import off the allow list (default: safe stdlib
  modules, :data:`DEFAULT_ALLOWED_IMPORTS`; overridable).
* ``dunder_access`` (high): attribute access such as ``__subclasses__``, ``__globals__``,
  ``__builtins__`` (the classic sandbox escapes).
* ``dynamic_open`` (medium): open() for writing with a path that is not a literal.
* ``config_syntax`` (high): a YAML/JSON change that does not parse.
* ``search_space_type`` (high) / ``search_space_range`` (medium): a search-space key
  whose new value has the wrong type or lies outside [min, max] / the choices.

Score: 1.0 minus a penalty per finding (critical 1.0, high 0.3, medium 0.15, low 0.05),
floored at 0. One critical finding gives 0, so it is always rejected; with the default
threshold 0.8 one high finding rejects, one medium finding passes, two do not.
"""

from __future__ import annotations

import ast
import fnmatch
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from . import configfiles
from .types import Finding, ParamType, SafetyReport, SearchParam, Severity

PENALTY = {Severity.CRITICAL: 1.0, Severity.HIGH: 0.3, Severity.MEDIUM: 0.15, Severity.LOW: 0.05}

DEFAULT_ALLOWED_IMPORTS = frozenset({
    "math", "cmath", "decimal", "fractions", "re", "json", "collections", "itertools", "functools",
    "operator", "statistics", "string", "dataclasses", "typing", "heapq", "bisect", "random", "time",
    "datetime", "enum", "abc", "copy", "textwrap", "unicodedata", "__future__", "numbers", "array",
    "contextlib", "difflib", "hashlib", "base64", "uuid", "logging",
})
FORBIDDEN_MODULES = frozenset({
    "subprocess", "socket", "ctypes", "importlib", "multiprocessing", "pty", "shutil", "signal",
    "builtins", "marshal", "pickle", "cffi", "urllib", "http", "ftplib", "telnetlib",
    "asyncio", "threading",
})
FORBIDDEN_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "breakpoint"})
DANGEROUS_DUNDERS = frozenset({
    "__subclasses__", "__globals__", "__builtins__", "__code__", "__bases__", "__mro__",
    "__getattribute__", "__loader__", "__import__",
})
DEFAULT_PROTECTED_FILES = ("evaluate*", "eval_*", "*_eval.*", "benchmark*", "test_*", "*_test.py", "conftest.py")


@dataclass
class SafetyPolicy:
    allowed_files: Sequence[str] = ("*",)
    protected_files: Sequence[str] = DEFAULT_PROTECTED_FILES
    max_change_bytes: int = 65536
    max_file_bytes: int | None = None
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
    search_space: Sequence[SearchParam] = field(default_factory=tuple)


def score_findings(findings: Sequence[Finding]) -> float:
    return max(0.0, 1.0 - sum(PENALTY[f.severity] for f in findings))


def analyze(changes: Mapping[str, str], policy: SafetyPolicy | None = None) -> SafetyReport:
    policy = policy or SafetyPolicy()
    findings: list[Finding] = []
    total = 0
    for name in sorted(changes):
        content = changes[name]
        size = len(content.encode("utf-8", errors="surrogatepass"))
        total += size
        path_problem = _path_problem(name)
        if path_problem:
            findings.append(Finding("path", Severity.CRITICAL, name, path_problem))
            continue
        if any(fnmatch.fnmatchcase(name, g) for g in policy.protected_files):
            findings.append(Finding("protected_file", Severity.CRITICAL, name,
                                    "evaluation files may not be changed by a candidate"))
        if not any(fnmatch.fnmatchcase(name, g) for g in policy.allowed_files):
            findings.append(Finding("file_not_allowed", Severity.HIGH, name,
                                    f"not matched by allowedFiles {list(policy.allowed_files)}"))
        if policy.max_file_bytes is not None and size > policy.max_file_bytes:
            findings.append(Finding("change_too_large", Severity.HIGH, name,
                                    f"{size} bytes > per-file limit {policy.max_file_bytes}"))
        if "\x00" in content:
            findings.append(Finding("path", Severity.CRITICAL, name, "content contains NUL bytes"))
            continue
        lower = name.lower()
        if lower.endswith(".py"):
            findings.extend(_python_findings(name, content, policy.allowed_imports))
        if lower.endswith((".py", ".yaml", ".yml", ".json")):
            findings.extend(_config_findings(name, content, policy.search_space))
    if total > policy.max_change_bytes:
        findings.append(Finding("change_too_large", Severity.HIGH, None,
                                f"changes total {total} bytes > maxChangeBytes {policy.max_change_bytes}"))
    return SafetyReport(score_findings(findings), tuple(findings))


def _path_problem(name: str) -> str | None:
    if not name:
        return "empty file name"
    if "\x00" in name:
        return "file name contains NUL"
    if "\\" in name:
        return "file name contains a backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.split("/"):
        return "path traversal ('..')"
    return None


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _python_findings(name: str, content: str, allowed_imports: frozenset[str]) -> list[Finding]:
    try:
        tree = ast.parse(content, filename=name)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        return [Finding("python_syntax", Severity.HIGH, name,
                        f"syntax error{f' line {line}' if line else ''}: {getattr(exc, 'msg', exc)}")]
    out: list[Finding] = []
    aliases: dict[str, str] = {}  # local name -> module it stands for

    def add(rule: str, severity: Severity, node: ast.AST, message: str) -> None:
        out.append(Finding(rule, severity, name, f"line {getattr(node, 'lineno', '?')}: {message}"))

    def check_module(module: str, node: ast.AST) -> None:
        root = module.split(".")[0]
        if root in FORBIDDEN_MODULES:
            add("forbidden_import", Severity.CRITICAL, node, f"import of {module}")
        elif root not in allowed_imports:
            add("import_not_allowed", Severity.HIGH, node, f"import of {module} is not on the allow list")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_module(alias.name, node)
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                add("import_not_allowed", Severity.HIGH, node, "relative import")
                continue
            check_module(node.module or "", node)
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute) and node.attr in DANGEROUS_DUNDERS:
            add("dunder_access", Severity.HIGH, node, f"access to {node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("__builtins__",):
            add("dunder_access", Severity.HIGH, node, f"access to {node.id}")
        elif isinstance(node, ast.Call):
            _check_call(node, aliases, add)
    return out


def _check_call(node: ast.Call, aliases: dict[str, str], add) -> None:
    dotted = _dotted(node.func)
    if dotted is None:
        return
    head, _, rest = dotted.partition(".")
    resolved = aliases.get(head, head) + (f".{rest}" if rest else "")
    if dotted in FORBIDDEN_BUILTINS or resolved in FORBIDDEN_BUILTINS:
        add("forbidden_call", Severity.CRITICAL, node, f"call of {dotted}()")
        return
    root = resolved.split(".")[0]
    last = resolved.rsplit(".", 1)[-1]
    if root in ("subprocess", "socket", "ctypes", "importlib", "multiprocessing", "pty"):
        add("forbidden_call", Severity.CRITICAL, node, f"call of {resolved}()")
    elif root == "os" and (last in ("system", "popen", "fork", "forkpty", "kill", "killpg")
                           or last.startswith(("exec", "spawn", "posix_spawn"))):
        add("forbidden_call", Severity.CRITICAL, node, f"call of {resolved}()")
    elif resolved in ("getattr", "setattr", "delattr", "globals", "locals", "vars"):
        add("dunder_access", Severity.MEDIUM, node, f"dynamic attribute/namespace access via {resolved}()")
    elif resolved in ("open", "io.open", "os.open", "pathlib.Path.open"):
        _check_open(node, resolved, add)


def _check_open(node: ast.Call, resolved: str, add) -> None:
    mode_node = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
    if resolved == "os.open":
        writing = True
    elif mode_node is None:
        writing = False
    elif isinstance(mode_node, ast.Constant) and isinstance(mode_node.value, str):
        writing = any(c in mode_node.value for c in "wax+")
    else:
        writing = True  # unknown mode: assume the worst
    if not writing:
        return
    path_node = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "file"), None)
    if isinstance(path_node, ast.Constant) and isinstance(path_node.value, str):
        path = path_node.value
        if path.startswith("/") and not path.startswith("/tmp/") or ".." in path.replace("\\", "/").split("/"):
            add("forbidden_call", Severity.CRITICAL, node, f"open({path!r}) for writing outside the workspace")
    else:
        add("dynamic_open", Severity.MEDIUM, node, "open() for writing with a computed path")


def _config_findings(name: str, content: str, space: Sequence[SearchParam]) -> list[Finding]:
    params = [p for p in space if p.file == name]
    is_py = name.lower().endswith(".py")
    if is_py and not params:
        return []  # Python syntax is already checked
    try:
        configfiles.parse(name, content)
    except configfiles.ConfigFileError as exc:
        if is_py:
            return []
        return [Finding("config_syntax", Severity.HIGH, name, str(exc))]
    out = []
    for param in params:
        try:
            value = configfiles.get_value(name, content, param.key)
        except (KeyError, configfiles.ConfigFileError):
            continue  # absent: the agent's default applies
        problem = _value_problem(param, value)
        if problem:
            out.append(Finding(problem[0], problem[1], name, f"{param.key}: {problem[2]}"))
    return out


def _value_problem(param: SearchParam, value) -> tuple[str, Severity, str] | None:
    if param.type is ParamType.BOOL:
        return None if isinstance(value, bool) else ("search_space_type", Severity.HIGH, f"{value!r} is not a bool")
    if param.type is ParamType.CHOICE:
        if not isinstance(value, str):
            return ("search_space_type", Severity.HIGH, f"{value!r} is not a string choice")
        if value not in param.choices:
            return ("search_space_range", Severity.MEDIUM, f"{value!r} not in {list(param.choices)}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ("search_space_type", Severity.HIGH, f"{value!r} is not a number")
    if param.type is ParamType.INT and not isinstance(value, int):
        return ("search_space_type", Severity.HIGH, f"{value!r} is not an int")
    if not math.isfinite(value) or value < param.min or value > param.max:
        return ("search_space_range", Severity.MEDIUM, f"{value!r} outside [{param.min}, {param.max}]")
    return None
