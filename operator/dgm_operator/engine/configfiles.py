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

Reading is strict and bounded, because candidates write these files
(:func:`load_document`): duplicate keys are an error in YAML and JSON (the agent's loader
would silently keep one of them); nesting deeper than :data:`MAX_DEPTH`, more than
:data:`MAX_YAML_ALIASES` YAML aliases, aliases that add more than :data:`MAX_ALIAS_EXPANSION`
nodes once followed, or a recursive alias is a :class:`ConfigLimitError`
(the "billion laughs"). Depth is measured on the event stream, before any recursive
composition, so no input reaches a recursion limit. Python files are parsed by
:mod:`.pysource` (the bytes Python reads, within its bounds).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Mapping

import yaml

from . import pysource

MAX_TEXT_CHARS = 1 << 20
MAX_DEPTH = 64
MAX_YAML_EVENTS = 500_000
MAX_YAML_ALIASES = 100
MAX_ALIAS_EXPANSION = 100_000

YAML_EXTS = (".yaml", ".yml")
JSON_EXTS = (".json",)
PY_EXTS = (".py",)


class ConfigFileError(ValueError):
    """A config file could not be parsed or a key could not be read or written."""


class ConfigLimitError(ConfigFileError):
    """A config file is beyond the bounds the reader accepts (depth, aliases, size)."""


def file_format(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(YAML_EXTS):
        return "yaml"
    if lower.endswith(JSON_EXTS):
        return "json"
    if lower.endswith(PY_EXTS):
        return "python"
    raise ConfigFileError(f"{filename}: unsupported config format (use .yaml, .yml, .json or .py)")


def load_document(filename: str, text: str) -> Any:
    """The whole document of a YAML/JSON file (any top-level type; empty text is ``{}``),
    read strictly and within bounds; ConfigFileError otherwise. Never raises anything else."""
    fmt = file_format(filename)
    if fmt == "python":
        return parse(filename, text)
    if not isinstance(text, str):
        raise ConfigFileError(f"{filename}: content is a {type(text).__name__}, not text")
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigLimitError(f"{filename}: {len(text)} characters: config files above {MAX_TEXT_CHARS} are not read")
    if not text.strip():
        return {}
    try:
        return _load_yaml(filename, text) if fmt == "yaml" else _load_json(filename, text)
    except ConfigFileError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise ConfigLimitError(f"{filename}: too deeply nested or too large to read ({type(exc).__name__})") from None
    except Exception as exc:  # a reader bug or an input it does not handle: still an invalid file
        raise ConfigFileError(f"{filename}: unreadable: {type(exc).__name__}: {str(exc)[:200]}") from None


def parse(filename: str, text: str) -> dict[str, Any]:
    """The file's parameters as a mapping (Python: name -> literal value)."""
    if file_format(filename) == "python":
        return {name: value for name, (value, _node) in _python_assignments(filename, text).items()}
    doc = load_document(filename, text)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigFileError(f"{filename}: top level must be a mapping, got {type(doc).__name__}")
    return doc


# -- YAML ---------------------------------------------------------------------------------
_YAML_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: fast


class _StrictLoader(_YAML_BASE):  # type: ignore[misc]
    """The safe loader that refuses duplicate keys in a mapping (merge keys excepted)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark) from None
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_events_within_limits(filename: str, text: str) -> int:
    """Scan the event stream (iterative, no composition) against the bounds; the number of
    aliases."""
    loader = _StrictLoader(text)
    try:
        depth = events = aliases = 0
        while loader.check_event():
            event = loader.get_event()
            events += 1
            if events > MAX_YAML_EVENTS:
                raise ConfigLimitError(f"{filename}: more than {MAX_YAML_EVENTS} YAML events")
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigLimitError(f"{filename}: YAML nested deeper than {MAX_DEPTH}")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise ConfigLimitError(f"{filename}: more than {MAX_YAML_ALIASES} YAML aliases")
        return aliases
    finally:
        loader.dispose()


def _check_expansion(filename: str, root: Any) -> None:
    """Aliases may add at most MAX_ALIAS_EXPANSION nodes once followed (iterative, memoised
    on the node graph); ConfigLimitError for more, or for a recursive alias."""
    distinct: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) not in distinct:
            distinct.add(id(node))
            pending.extend(_yaml_children(node))
    limit = len(distinct) + MAX_ALIAS_EXPANSION
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in children)
            if total > limit:
                raise ConfigLimitError(f"{filename}: YAML aliases expand to more than {MAX_ALIAS_EXPANSION} extra nodes")
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigLimitError(f"{filename}: recursive YAML alias")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise ConfigLimitError(f"{filename}: recursive YAML alias")
            if id(child) not in size:
                stack.append((child, False))


def _yaml_children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _load_yaml(filename: str, text: str) -> Any:
    try:
        aliases = _yaml_events_within_limits(filename, text)
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            if aliases:
                _check_expansion(filename, node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{filename}: invalid YAML: {' '.join(str(exc).split())[:300]}") from None


# -- JSON ---------------------------------------------------------------------------------
_JSON_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """Deepest [] / {} nesting outside strings, in one linear pass (stops above `limit`)."""
    depth = deepest = 0
    in_string = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue
        elif token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigFileError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _load_json(filename: str, text: str) -> Any:
    if _json_depth(text) > MAX_DEPTH:
        raise ConfigLimitError(f"{filename}: JSON nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{filename}: invalid JSON: {exc}") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ConfigFileError(f"{filename}: invalid JSON: {str(exc)[:300]}") from None


def get_value(filename: str, text: str, key: str) -> Any:
    """The value at `key`; KeyError when absent."""
    return value_at(filename, parse(filename, text), key)


def value_at(filename: str, doc: Mapping[str, Any], key: str) -> Any:
    """The value at `key` of a document :func:`parse` returned; KeyError when absent."""
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


def _python_assignments(filename: str, text: str) -> dict[str, tuple[Any, ast.expr]]:
    try:
        tree, _text = pysource.parse(text, filename)
    except pysource.SourceError as exc:
        raise ConfigFileError(f"{filename}: {exc.message}") from None
    found: dict[str, tuple[Any, ast.expr]] = {}
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
            end_line = node.end_lineno if node.end_lineno is not None else node.lineno
            end_col = node.end_col_offset if node.end_col_offset is not None else node.col_offset
            begin = starts[node.lineno - 1] + _char_col(lines[node.lineno - 1], node.col_offset)
            end = starts[end_line - 1] + _char_col(lines[end_line - 1], end_col)
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
