"""Static safety analysis of a candidate -> score in [0, 1] and findings.

This is a linter in front of isolation, not a substitute for it: static analysis of Python
cannot be sound, so the evaluation sandbox (a separate grader container, no token, no
egress, read-only file systems) carries the guarantee. What the analysis promises is to
*decide every input*: :func:`analyze` never raises, bounds its time and memory before
parsing, and turns anything it cannot read (a parse error, a recursion or memory limit, an
input above a size bound, an internal error) into a critical finding. It closes the known
bypass classes as classes, with rules about what code may *reach*, not lists of examples.

It analyses the merged workspace (the parent's files with the changes on top): a finding in
a changed file always counts; a finding in an unchanged file counts only when the change
introduced it (it is absent when the parent's files are analysed alone), so a new module
that an unchanged file imports is covered, while the baseline's own findings do not block.

Rules (rule name, severity):

Names and workspace
* ``path`` (critical): a file name that is not a Kubernetes ConfigMap key: characters other
  than ``[-._a-zA-Z0-9]`` (so no ``/``, no whitespace, no trailing newline), longer than 253,
  ``.`` or ``..``, or starting with ``..`` (reserved by the kubelet's atomic writer: ``..data``).
* ``too_many_files`` (critical): more changed files than ``max_files`` (default 64); the
  contents are then not analysed.
* ``protected_file`` (critical): a name matching ``protected_files`` (case-insensitive): the
  evaluation's own files and what Python runs by itself (``sitecustomize.py``,
  ``usercustomize.py``, ``*.pth``, ``conftest.py``, compiled ``*.pyc``/``*.so``).
* ``file_not_allowed`` (high): a name matching none of ``allowed_files``.
* ``change_too_large`` (high): all changes, or one file, above ``max_change_bytes`` /
  ``max_file_bytes``.
* ``analysis_limit`` (critical): beyond a bound of the analysis (changes above
  ``max_analysed_bytes``, a Python file above 1 MiB, brackets nested deeper than 100, more than
  400,000 syntax nodes or deeper than 400, YAML/JSON deeper than 64, more than 100 YAML
  aliases, aliases adding more than 100,000 nodes, a recursive alias).
* ``module_shadowing`` (critical): a new ``.py`` file named like a standard-library module or an
  allowed import (``random.py`` would replace ``random`` for the agent's other files).
* ``analysis_error`` (critical): the analysis itself failed; the candidate is not trusted.
* ``parent_agent`` (critical, :func:`parent_findings`): the parent belongs to another agent.

Encoding (Python files are analysed as the bytes Python reads, :mod:`.pysource`)
* ``encoding`` (critical): NUL characters, or text that is not valid Unicode.
* ``coding_cookie`` (critical): a PEP 263 cookie other than UTF-8 (``utf-7``,
  ``raw_unicode_escape``, ``latin-1``, ..., also after a byte-order mark), detected on the first
  two lines by any line-break convention (wider than Python's own detection, on purpose).
* ``bidi_control`` (high): Unicode bidirectional controls in code (Trojan Source).

Python (:mod:`.pyanalysis`)
* ``python_syntax`` (critical): the file does not parse, or the parser hits its recursion or
  memory limit.
* ``forbidden_import`` (critical): process, native-code, import-system, introspection,
  deserialisation and network modules (:data:`FORBIDDEN_MODULES`, any prefix), private modules,
  ``logging.config``/``logging.handlers``.
* ``import_not_allowed`` (high): an import off the allow list (default
  :data:`DEFAULT_ALLOWED_IMPORTS`, overridable; the workspace's own modules are allowed), a
  relative import. ``import_star`` (high): ``from m import *``.
* ``forbidden_call`` (critical): any *reference* (not only a call) to ``eval``, ``exec``,
  ``compile``, ``__import__``, ``breakpoint``, ``globals``, ``locals``, ``vars``, ``help``; a
  reference to ``open`` or ``type`` other than a direct call; members such as ``os.system``,
  ``sys.modules``; any alias of these in an allowed module (``io.open`` is ``open``).
* ``forbidden_member`` (critical): members of allowed modules that evaluate strings or reach
  frames: ``typing.get_type_hints``, ``typing.ForwardRef``, ``functools.singledispatch``,
  ``string.Formatter``, ``logging.currentframe``.
* ``dynamic_attribute`` (critical): ``getattr``/``setattr``/``delattr``,
  ``operator.attrgetter``/``methodcaller`` with a computed name, or referenced other than
  called; literal names go through the attribute rules below.
* ``type_creation`` (critical): ``type()`` with other than one argument,
  ``dataclasses.make_dataclass``.
* ``dunder_access`` (critical): a dunder attribute other than plain data (``__name__``,
  ``__class__``, ``__dict__``, ...) and data-model methods (``__init__``, ``__eq__``, ...),
  read on anything but a zero-argument ``super()``; any write to a dunder attribute; dunder
  names such as ``__builtins__``, ``__loader__``; binding a reserved name (``__builtins__``,
  ``__import__``, ...); dunders reached in ``str.format`` fields and ``match`` class patterns.
* ``frame_access`` (critical): frame, code, generator, coroutine, traceback and cell internals
  (``f_globals``, ``f_back``, ``gi_frame``, ``tb_frame``, ``co_code``, ``cell_contents``, ...).
* ``private_module_attribute`` (critical): an attribute starting with ``_`` on an imported
  module (``random._os``) or on anything reached through one, and ``from m import _x``.
* ``module_via_attribute`` (critical / high): an attribute of an imported module that is a
  module (introspected on the real module: ``logging.os``, ``typing.sys``,
  ``json.decoder.re``): critical when that module may not be imported, high otherwise (import
  it explicitly; ``os.path`` excepted); submodules imported explicitly are fine.
* ``module_as_value`` (critical): a module used other than as the object of an attribute
  access (``m = random``, ``f(random)``, ``getattr(random, "x")`` returning a module).
* ``module_patch`` (critical): assignment, augmented assignment or ``del`` of an attribute or
  item reached through an imported module (``json.dumps = f``, ``logging.root.x += 1``),
  ``setattr``/``delattr`` on a module.
* ``file_write`` (critical / high): ``open`` for writing (modes with ``w``, ``a``, ``x``,
  ``+``), a computed mode, an opener, ``logging.FileHandler``, ``basicConfig(filename=)``:
  high (rejected at the default threshold; the evaluation's file system is read-only apart
  from ``/tmp``); critical for an absolute path outside ``/tmp`` or one with ``..``.
* ``string_code`` (critical): a string in an annotation, a subscript or a ``typing`` call that
  contains calls, lambdas, comprehensions or private attributes (typing evaluates such
  strings as code).

Configuration files (:mod:`.configfiles`)
* ``config_syntax`` (critical): YAML/JSON that does not parse, duplicate keys, several YAML
  documents, unknown tags.
* ``search_space_type`` (high) / ``search_space_range`` (medium): a search-space key whose new
  value has the wrong type or lies outside [min, max] / the choices.

Score: 1.0 minus a penalty per finding (critical 1.0, high 0.3, medium 0.15, low 0.05),
floored at 0. One critical finding gives 0, so it is always rejected; with the default
threshold 0.8 one high finding rejects, one medium finding passes, two do not. At most
:data:`MAX_FINDINGS` findings are reported (the worst first); the score is unchanged by that.
"""

from __future__ import annotations

import ast
import fnmatch
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from . import configfiles, pyanalysis, pysource
from .pyanalysis import DEFAULT_ALLOWED_IMPORTS, FORBIDDEN_MODULES
from .types import Finding, ParamType, SafetyReport, SearchParam, Severity

__all__ = [
    "DEFAULT_ALLOWED_IMPORTS", "DEFAULT_PROTECTED_FILES", "FORBIDDEN_MODULES", "MAX_FINDINGS", "PENALTY",
    "SafetyPolicy", "analyze", "configmap_key_findings", "configmap_key_problem", "parent_findings",
    "score_findings",
]

PENALTY = {Severity.CRITICAL: 1.0, Severity.HIGH: 0.3, Severity.MEDIUM: 0.15, Severity.LOW: 0.05}
_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}
CRIT, HIGH, MEDIUM = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM

DEFAULT_PROTECTED_FILES = (
    # the evaluation's files
    "evaluate*", "eval_*", "*_eval.*", "benchmark*", "test_*", "*_test.py", "conftest.py",
    # what Python runs by itself, or runs without source
    "sitecustomize.py", "usercustomize.py", "*.pth", "*.pyc", "*.pyo", "*.pyd", "*.so",
)
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
MAX_KEY_LENGTH = 253
MAX_FINDINGS = 50
"""Findings kept in a report (worst first). 20 findings already score 0, so the cut never
changes a score."""
MAX_WORKSPACE_BYTES = 8 << 20
"""The merged workspace (parent files + changes) analysed at most; a ConfigMap holds 1 MiB."""
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_CONFIG_EXTS = (".yaml", ".yml", ".json")


@dataclass
class SafetyPolicy:
    allowed_files: Sequence[str] = ("*",)
    protected_files: Sequence[str] = DEFAULT_PROTECTED_FILES
    max_change_bytes: int = 65536
    max_file_bytes: int | None = None
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
    search_space: Sequence[SearchParam] = field(default_factory=tuple)
    max_files: int = 64
    """Changed files per candidate; above it the candidate is decided without reading them."""
    max_analysed_bytes: int = 2 << 20
    """Total bytes of changes the analysis reads at all (a hard bound, unlike max_change_bytes)."""


def score_findings(findings: Sequence[Finding]) -> float:
    return max(0.0, 1.0 - sum(PENALTY[f.severity] for f in findings))


# -- names --------------------------------------------------------------------------------
def configmap_key_problem(name: object) -> str | None:
    """Why `name` is not a valid Kubernetes ConfigMap key, or None. Every change becomes a key
    of the agent's ConfigMap, so this is the file-name rule."""
    if not isinstance(name, str):
        return f"file name is a {type(name).__name__}, not text"
    if not name:
        return "empty file name"
    if len(name) > MAX_KEY_LENGTH:
        return f"file name longer than {MAX_KEY_LENGTH} characters"
    if "\x00" in name:
        return "file name contains NUL"
    if name in (".", ".."):
        return "file name '.' or '..'"
    if name.startswith(".."):
        return "file names starting with '..' are reserved for the kubelet's atomic writer (..data)"
    if CONFIGMAP_KEY.fullmatch(name) is None:
        if "/" in name or "\\" in name:
            return "file names are ConfigMap keys: no directories or path separators"
        return "file names are ConfigMap keys: letters, digits, '-', '_' and '.' only"
    return None


def configmap_key_findings(names: Mapping[str, Any] | Sequence[str]) -> list[Finding]:
    out = []
    for name in names:
        problem = configmap_key_problem(name)
        if problem:
            out.append(Finding("path", CRIT, _show(name), problem))
    return out


def parent_findings(agent: str, parent: str | None, parent_agent: str | None) -> list[Finding]:
    """A candidate's parent must be a candidate of the same agent (its files seed the
    workspace); empty `parent` means the agent's current revision."""
    if not parent:
        return []
    if parent_agent != agent:
        return [Finding("parent_agent", CRIT, None,
                        f"parent candidate {parent!r} belongs to agent {parent_agent!r}, not {agent!r}")]
    return []


def _show(name: object) -> str:
    """A file name fit for a finding: bounded, and escaped when it holds control characters."""
    text = name if isinstance(name, str) and name.isprintable() else repr(name)
    return text if len(text) <= 300 else text[:300] + "..."


def _size(content: object) -> int:
    if isinstance(content, bytes):
        return len(content)
    if isinstance(content, str):
        return len(content.encode("utf-8", errors="surrogatepass"))
    return 0


# -- the analysis ---------------------------------------------------------------------------
def analyze(changes: Mapping[str, str], policy: SafetyPolicy | None = None, *,
            base_files: Mapping[str, str] | None = None) -> SafetyReport:
    """Findings and score of `changes` (file name -> new content) applied on `base_files`
    (the parent's full file set; None analyses the changes alone). Never raises."""
    try:
        findings = _analyze(changes, policy or SafetyPolicy(), base_files)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # MemoryError, RecursionError, a bug: still a decision
        findings = [Finding("analysis_error", CRIT, None,
                            f"the analysis failed ({type(exc).__name__}); the candidate is not trusted")]
    return _report(findings)


def _clean(text: str | None) -> str | None:
    """Text safe to write into status: lone surrogates escaped."""
    return None if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _report(findings: list[Finding]) -> SafetyReport:
    unique = list(dict.fromkeys(Finding(f.rule, f.severity, _clean(f.file), _clean(f.message) or "")
                                for f in findings))
    score = score_findings(unique)
    if len(unique) > MAX_FINDINGS:
        unique.sort(key=lambda f: _RANK[f.severity])
        kept, dropped = unique[:MAX_FINDINGS - 1], unique[MAX_FINDINGS - 1:]
        worst = min(dropped, key=lambda f: _RANK[f.severity]).severity
        kept.append(Finding("more_findings", worst, None, f"{len(dropped)} more findings not shown"))
        unique = kept
    return SafetyReport(score, tuple(unique))


def _analyze(changes: Mapping[str, str], policy: SafetyPolicy,
             base_files: Mapping[str, str] | None) -> list[Finding]:
    if not isinstance(changes, Mapping):
        return [Finding("analysis_error", CRIT, None, f"changes must map file names to contents, got {type(changes).__name__}")]
    if len(changes) > policy.max_files:
        return [Finding("too_many_files", CRIT, None,
                        f"{len(changes)} changed files > {policy.max_files}: not analysed")]
    findings: list[Finding] = []
    valid: dict[str, str | bytes] = {}
    total = 0
    for name in sorted(changes, key=lambda n: (not isinstance(n, str), _show(n))):
        content = changes[name]
        size = _size(content)
        total += size
        problem = configmap_key_problem(name)
        if problem:
            findings.append(Finding("path", CRIT, _show(name), problem))
            continue
        if not isinstance(content, (str, bytes)):
            findings.append(Finding("encoding", CRIT, name, f"content is a {type(content).__name__}, not text"))
            continue
        lower = name.lower()
        if any(fnmatch.fnmatchcase(lower, g.lower()) for g in policy.protected_files):
            findings.append(Finding("protected_file", CRIT, name,
                                    "evaluation files and files Python runs by itself may not be changed by a candidate"))
        if not any(fnmatch.fnmatchcase(name, g) for g in policy.allowed_files):
            findings.append(Finding("file_not_allowed", HIGH, name,
                                    f"not matched by allowedFiles {list(policy.allowed_files)[:20]}"))
        if policy.max_file_bytes is not None and size > policy.max_file_bytes:
            findings.append(Finding("change_too_large", HIGH, name,
                                    f"{size} bytes > per-file limit {policy.max_file_bytes}"))
        valid[name] = content
    if total > policy.max_change_bytes:
        findings.append(Finding("change_too_large", HIGH, None,
                                f"changes total {total} bytes > maxChangeBytes {policy.max_change_bytes}"))
    if total > policy.max_analysed_bytes:
        findings.append(Finding("analysis_limit", CRIT, None,
                                f"changes total {total} bytes > {policy.max_analysed_bytes}: not analysed"))
        return findings
    base = {n: c for n, c in (base_files or {}).items()
            if isinstance(n, str) and isinstance(c, str) and configmap_key_problem(n) is None} \
        if isinstance(base_files, Mapping) else {}
    merged: dict[str, str | bytes] = {**base, **valid}
    if sum(_size(c) for c in merged.values()) > MAX_WORKSPACE_BYTES:
        findings.append(Finding("analysis_limit", CRIT, None,
                                f"the merged workspace is above {MAX_WORKSPACE_BYTES} bytes: not analysed"))
        return findings
    changed = {n for n, c in valid.items() if base.get(n) != c}
    findings += _workspace_findings(merged, base, changed, policy)
    return findings


@dataclass
class _Parsed:
    tree: ast.Module | None
    text: str | None
    error: pysource.SourceError | None


def _parse(name: str, content: str | bytes) -> _Parsed:
    try:
        tree, text = pysource.parse(content, name)
        return _Parsed(tree, text, None)
    except pysource.SourceError as exc:
        return _Parsed(None, None, exc)


def _is_py(name: str) -> bool:
    return name.lower().endswith(".py")


def _context(files: Mapping[str, str | bytes], parsed: Mapping[str, _Parsed],
             allowed: frozenset[str]) -> pyanalysis.Context:
    ctx = pyanalysis.Context(frozenset(allowed), {})
    local: dict[str, pyanalysis.LocalModule] = {}
    for name in files:
        stem = name[:-3]
        if _is_py(name) and name.endswith(".py") and stem.isidentifier():
            tree = parsed[name].tree
            local[stem] = pyanalysis.local_module(stem, tree, ctx) if tree is not None else pyanalysis.LocalModule(stem)
    ctx.local_modules = local
    return ctx


def _python_findings(name: str, parsed: _Parsed, ctx: pyanalysis.Context) -> list[Finding]:
    if parsed.error is not None:
        return [Finding(parsed.error.rule, CRIT, name, parsed.error.message)]
    assert parsed.tree is not None
    try:
        return pyanalysis.analyse_tree(name, parsed.tree, ctx)
    except pysource.SourceError as exc:
        return [Finding(exc.rule, CRIT, name, exc.message)]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return [Finding("analysis_error", CRIT, name, f"the Python analysis failed ({type(exc).__name__})")]


def _workspace_findings(merged: Mapping[str, str | bytes], base: Mapping[str, str],
                        changed: set[str], policy: SafetyPolicy) -> list[Finding]:
    findings: list[Finding] = []
    allowed = frozenset(policy.allowed_imports)
    py_names = [n for n in merged if _is_py(n)]
    parsed = {n: _parse(n, merged[n]) for n in py_names}
    ctx = _context(merged, parsed, allowed)
    python_changed = any(_is_py(n) for n in changed)
    base_ctx: pyanalysis.Context | None = None
    if python_changed and base:
        base_parsed = {n: (parsed[n] if n not in changed else _parse(n, base[n])) for n in base if _is_py(n)}
        base_ctx = _context(base, base_parsed, allowed)
    for name in sorted(merged):
        content = merged[name]
        if name in changed:
            if isinstance(content, str) and "\x00" in content and not _is_py(name):
                findings.append(Finding("encoding", CRIT, name, "content contains NUL characters"))
                continue
            if _is_py(name):
                findings += _python_findings(name, parsed[name], ctx)
                if parsed[name].text is not None and _BIDI.search(parsed[name].text or ""):
                    findings.append(Finding("bidi_control", HIGH, name,
                                            "Unicode bidirectional control characters in code (Trojan Source)"))
                if name not in base:
                    findings += _shadowing(name, allowed)
            findings += _config_findings(name, content, policy.search_space)
        elif _is_py(name) and base_ctx is not None:
            # unchanged: only what the change introduced here counts
            now = _python_findings(name, parsed[name], ctx)
            if now:
                before = Counter(_python_findings(name, parsed[name], base_ctx))
                for finding in now:
                    if before[finding] > 0:
                        before[finding] -= 1
                    else:
                        findings.append(finding)
    return findings


def _shadowing(name: str, allowed: frozenset[str]) -> list[Finding]:
    stem = name[:-3]
    if stem in sys.stdlib_module_names or stem in allowed or stem in FORBIDDEN_MODULES:
        return [Finding("module_shadowing", CRIT, name,
                        f"a new file {name} would be imported instead of the module {stem}")]
    return []


def _config_findings(name: str, content: str | bytes, space: Sequence[SearchParam]) -> list[Finding]:
    params = [p for p in space if p.file == name]
    lower = name.lower()
    is_config = lower.endswith(_CONFIG_EXTS)
    if not is_config and not (params and _is_py(name)):
        return []
    if not isinstance(content, str):
        return [Finding("encoding", CRIT, name, "configuration files must be text")]
    try:
        if is_config:
            document = configfiles.load_document(name, content)
            if not params:
                return []
            if not isinstance(document, dict):
                return []  # a non-mapping document has none of the keys (the agent's defaults apply)
        else:
            document = configfiles.parse(name, content)
    except configfiles.ConfigLimitError as exc:
        return [Finding("analysis_limit", CRIT, name, str(exc))]
    except configfiles.ConfigFileError as exc:
        return [Finding("config_syntax", CRIT, name, str(exc))] if is_config else []  # Python: reported already
    out = []
    for param in params:
        try:
            value = configfiles.value_at(name, document, param.key)
        except KeyError:
            continue  # absent: the agent's default applies
        problem = _value_problem(param, value)
        if problem:
            out.append(Finding(problem[0], problem[1], name, f"{param.key}: {problem[2]}"))
    return out


def _value_problem(param: SearchParam, value: Any) -> tuple[str, Severity, str] | None:
    if param.type is ParamType.BOOL:
        return None if isinstance(value, bool) else ("search_space_type", HIGH, f"{value!r:.100} is not a bool")
    if param.type is ParamType.CHOICE:
        if not isinstance(value, str):
            return ("search_space_type", HIGH, f"{value!r:.100} is not a string choice")
        if value not in param.choices:
            return ("search_space_range", MEDIUM, f"{value!r:.100} not in {list(param.choices)}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ("search_space_type", HIGH, f"{value!r:.100} is not a number")
    if param.type is ParamType.INT and not isinstance(value, int):
        return ("search_space_type", HIGH, f"{value!r:.100} is not an int")
    assert param.min is not None and param.max is not None
    if not math.isfinite(value) or value < param.min or value > param.max:
        return ("search_space_range", MEDIUM, f"{value!r:.100} outside [{param.min}, {param.max}]")
    return None
