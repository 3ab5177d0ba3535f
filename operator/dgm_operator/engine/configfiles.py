"""Read and write parameters in an agent's config files.

Formats, by file extension:

* YAML (`.yaml`, `.yml`, PyYAML ``safe_load``/``safe_dump``): dotted keys reach into
  nested mappings (``retrieval.top_k``). Rewriting re-dumps the document with the key
  order kept (comments are not preserved by PyYAML).
* JSON (`.json`): dotted keys as for YAML; rewritten with the file's indentation
  (2 when it cannot be detected) and its trailing newline kept.
* Python (`.py`): top-level ``NAME = literal`` (or ``NAME: T = literal``) assignments.
  Values are rewritten in place, only the literal's source span changes, so comments
  and everything else in the file stay byte for byte. A missing name is appended.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Mapping

import yaml

YAML_EXTS = (".yaml", ".yml")
JSON_EXTS = (".json",)
PY_EXTS = (".py",)


class ConfigFileError(ValueError):
    """A config file could not be parsed or a key could not be read or written."""


def file_format(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(YAML_EXTS):
        return "yaml"
    if lower.endswith(JSON_EXTS):
        return "json"
    if lower.endswith(PY_EXTS):
        return "python"
    raise ConfigFileError(f"{filename}: unsupported config format (use .yaml, .yml, .json or .py)")


def parse(filename: str, text: str) -> dict[str, Any]:
    """The file's parameters as a mapping (Python: name -> literal value)."""
    fmt = file_format(filename)
    if fmt == "yaml":
        try:
            doc = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            raise ConfigFileError(f"{filename}: invalid YAML: {exc}") from exc
    elif fmt == "json":
        try:
            doc = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"{filename}: invalid JSON: {exc}") from exc
    else:
        return {name: value for name, (value, _node) in _python_assignments(filename, text).items()}
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigFileError(f"{filename}: top level must be a mapping, got {type(doc).__name__}")
    return doc


def get_value(filename: str, text: str, key: str) -> Any:
    """The value at `key`; KeyError when absent."""
    doc = parse(filename, text)
    if file_format(filename) == "python":
        return doc[key]
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def set_values(filename: str, text: str, values: Mapping[str, Any]) -> str:
    """The file's text with `values` (key -> new value) written in its own format."""
    fmt = file_format(filename)
    if fmt == "python":
        return _set_python(filename, text, values)
    doc = parse(filename, text)
    for key, value in values.items():
        _set_dotted(filename, doc, key, value)
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    indent = _json_indent(text)
    out = json.dumps(doc, indent=indent)
    return out + ("\n" if text.endswith("\n") or not text else "")


def _set_dotted(filename: str, doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = doc
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigFileError(f"{filename}: cannot set {key!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def _json_indent(text: str) -> int | None:
    match = re.search(r"\n([ ]+)\S", text)
    if match:
        return len(match.group(1))
    if text.strip() and "\n" not in text.strip():
        return None  # a one-line document stays on one line
    return 2


def _python_assignments(filename: str, text: str) -> dict[str, tuple[Any, ast.AST]]:
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ConfigFileError(f"{filename}: Python syntax error line {exc.lineno}: {exc.msg}") from exc
    found: dict[str, tuple[Any, ast.AST]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value_node = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value_node = stmt.target.id, stmt.value
        else:
            continue
        try:
            found[name] = (ast.literal_eval(value_node), value_node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue  # not a literal: not a parameter
    return found


def _py_literal(value: Any) -> str:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple, dict, set)):
        text = repr(value)
        ast.literal_eval(text)
        return text
    raise ConfigFileError(f"cannot write {type(value).__name__} as a Python literal")


def _set_python(filename: str, text: str, values: Mapping[str, Any]) -> str:
    assignments = _python_assignments(filename, text)
    lines = text.splitlines(keepends=True)
    # byte offsets of line starts, to turn (line, col) into string offsets
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    appended: list[str] = []
    for name, value in values.items():
        if not name.isidentifier():
            raise ConfigFileError(f"{filename}: {name!r} is not a Python identifier")
        literal = _py_literal(value)
        if name in assignments:
            node = assignments[name][1]
            begin = starts[node.lineno - 1] + _char_col(lines[node.lineno - 1], node.col_offset)
            end = starts[node.end_lineno - 1] + _char_col(lines[node.end_lineno - 1], node.end_col_offset)
            edits.append((begin, end, literal))
        else:
            appended.append(f"{name} = {literal}\n")
    out = text
    for begin, end, literal in sorted(edits, reverse=True):
        out = out[:begin] + literal + out[end:]
    if appended:
        if out and not out.endswith("\n"):
            out += "\n"
        out += "".join(appended)
    return out


def _char_col(line: str, byte_col: int) -> int:
    """ast gives UTF-8 byte columns; convert to a character index in `line`."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))
