"""Python source as Python itself would read it, parsed within fixed bounds.

A ConfigMap delivers a file as text; the agent's interpreter reads the UTF-8 bytes of that
text and decodes them by the rules of PEP 263 (a UTF-8 byte-order mark, or a coding cookie
in a comment on one of the first two lines). A cookie naming another codec (``utf-7``,
``raw_unicode_escape``, ...) would make Python execute text that differs from the text an
analysis of the string sees, so any cookie other than UTF-8 is refused here, with a
detector that is deliberately wider than Python's own (see :func:`coding_problem`). Once that
holds, the bytes are handed to the compiler's own parser, so the tree analysed is the tree
Python would execute.

Every failure is a :class:`SourceError` carrying the rule it breaks; nothing else escapes
:func:`parse`. Parsing is bounded before it starts (size, bracket nesting) and after
(node count, tree depth); :func:`walk` is iterative.
"""

from __future__ import annotations

import ast
import codecs
import re
import warnings
from typing import Callable, NamedTuple

MAX_SOURCE_BYTES = 1 << 20
"""A Python file larger than this is not parsed (a ConfigMap holds 1 MiB in all)."""
MAX_BRACKET_DEPTH = 100
"""Nested (), [] and {} deeper than this are refused before parsing (CPython stops at 200)."""
MAX_AST_NODES = 400_000
MAX_AST_DEPTH = 400
"""Syntax trees with more nodes, or deeper, are refused (legitimate code stays far below)."""

UTF8_BOM = b"\xef\xbb\xbf"
_COOKIE = re.compile(rb"coding[:=][ \t]*([-\w.]+)")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_OUTSIDE = re.compile(r"""[][(){}]|#[^\r\n]*|'''|\"\"\"|'|\"""")
_STRING_END = {  # the rest of a string after its opening quote; the alternatives are disjoint
    "'": re.compile(r"(?:[^'\\\n]|\\.)*(?:'|\n|\Z)", re.DOTALL),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*(?:"|\n|\Z)', re.DOTALL),
    "'''": re.compile(r"(?:[^'\\]|\\.|'(?!''))*(?:'''|\Z)", re.DOTALL),
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)', re.DOTALL),
}


class SourceError(Exception):
    """The source cannot be trusted to mean what the analysis would see.

    `rule` is the finding's rule name: ``encoding``, ``coding_cookie``, ``analysis_limit``
    or ``python_syntax``."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def source_bytes(content: str | bytes) -> bytes:
    """The bytes the interpreter reads: a ConfigMap's text encoded as UTF-8."""
    if isinstance(content, bytes):
        return content
    if not isinstance(content, str):
        raise SourceError("encoding", f"content is a {type(content).__name__}, not text")
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SourceError("encoding", f"content is not valid Unicode text (position {exc.start})") from None


def _is_utf8(name: str) -> bool:
    lowered = name.lower().replace("_", "-")
    if lowered == "utf-8" or lowered.startswith("utf-8-"):  # Python's own normalisation
        return True
    try:
        return codecs.lookup(name).name == "utf-8"
    except (LookupError, ValueError, TypeError):
        return False


def coding_problem(data: bytes) -> str | None:
    """Why the bytes' declared encoding is not plain UTF-8, or None.

    Python looks for a cookie in a comment on line 1, or on line 2 when line 1 is blank or a
    comment; the interpreter splits lines on CR, LF or CRLF, while ``importlib`` (through
    ``tokenize.detect_encoding``) splits on LF only. This detector is a superset of both: any
    ``coding[:=]name`` after a ``#`` on the first two lines by either convention counts,
    whatever precedes the ``#``."""
    head = data[:4096]
    bom = head.startswith(UTF8_BOM)
    if bom:
        head = head[len(UTF8_BOM):]
    lines = _LINE_BREAK.split(head, maxsplit=2)[:2] + head.split(b"\n", 2)[:2]
    for line in lines:
        hash_at = line.find(b"#")
        if hash_at < 0:
            continue
        for match in _COOKIE.finditer(line, hash_at):
            name = match.group(1).decode("ascii", errors="replace")
            if not _is_utf8(name):
                return (f"coding cookie {name[:60]!r}" + (" after a UTF-8 byte-order mark" if bom else "")
                        + ": only UTF-8 is accepted (another codec makes Python run text the analysis does not see)")
    return None


def bracket_depth(text: str, limit: int = MAX_BRACKET_DEPTH) -> int:
    """Deepest nesting of (), [] and {} outside strings and comments, stopping at `limit` + 1.

    An estimate (string prefixes and nested f-string quotes are not modelled), only used to
    refuse absurd nesting before the parser sees it; the parser stays guarded anyway."""
    depth = deepest = 0
    pos = 0
    while True:
        match = _OUTSIDE.search(text, pos)
        if match is None:
            return deepest
        token, pos = match.group(), match.end()
        if token[0] == "#":
            continue
        if token[0] in "'\"":
            end = _STRING_END[token].match(text, pos)
            pos = end.end() if end else len(text)
            continue
        if token in "([{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        else:
            depth = max(0, depth - 1)


def decode(content: str | bytes) -> tuple[bytes, str]:
    """(bytes Python reads, the text it executes); SourceError when they could differ."""
    data = source_bytes(content)
    if len(data) > MAX_SOURCE_BYTES:
        raise SourceError("analysis_limit", f"{len(data)} bytes: Python files above {MAX_SOURCE_BYTES} bytes are not analysed")
    if b"\x00" in data:
        raise SourceError("encoding", "content contains NUL bytes")
    problem = coding_problem(data)
    if problem:
        raise SourceError("coding_cookie", problem)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError("encoding", f"not valid UTF-8 at byte {exc.start}") from None
    return data, text


def parse(content: str | bytes, filename: str = "<candidate>") -> tuple[ast.Module, str]:
    """(tree, text) of a Python file, or SourceError. Never raises anything else."""
    try:
        data, text = decode(content)
        depth = bracket_depth(text)
        if depth > MAX_BRACKET_DEPTH:
            raise SourceError("analysis_limit", f"brackets nested deeper than {MAX_BRACKET_DEPTH}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a SyntaxWarning must not turn into an error here
            tree = compile(data, filename, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SourceError:
        raise
    except SyntaxError as exc:  # also IndentationError, TabError
        line = f" line {exc.lineno}" if exc.lineno else ""
        raise SourceError("python_syntax", f"syntax error{line}: {str(exc.msg)[:200]}") from None
    except RecursionError:
        raise SourceError("python_syntax", "nested too deeply for the parser (RecursionError)") from None
    except MemoryError:
        raise SourceError("python_syntax", "too complex for the parser (MemoryError)") from None
    except Exception as exc:  # ValueError (NUL), OverflowError, ...: the parser gave up
        raise SourceError("python_syntax", f"the parser failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(tree, ast.Module):
        raise SourceError("python_syntax", "not a module")
    return tree, text


class Entry(NamedTuple):
    """One node of a tree in pre-order: its parent, the parent's field holding it, its depth
    and the context flags inherited from its ancestors (:data:`IN_ANNOTATION`, ...)."""

    node: ast.AST
    parent: ast.AST | None
    field: str | None
    depth: int
    flags: int


IN_ANNOTATION = 1
IN_SUBSCRIPT = 2
IN_TYPING_CALL = 4
_ANNOTATION_FIELDS = frozenset({"annotation", "returns"})
_CONTEXTS = (ast.Load, ast.Store, ast.Del)
_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")


def walk(tree: ast.AST, *, typing_call: Callable[[ast.Call], bool] | None = None,
         max_nodes: int = MAX_AST_NODES, max_depth: int = MAX_AST_DEPTH) -> list[Entry]:
    """All nodes of `tree` but the Load/Store/Del markers, in pre-order (parents before
    children, fields in order), built iteratively; SourceError(analysis_limit) above the
    node or depth bound."""
    out: list[Entry] = []
    append = out.append
    stack: list[Entry] = [Entry(tree, None, None, 0, 0)]
    pop = stack.pop
    while stack:
        entry = pop()
        append(entry)
        node, depth, flags = entry.node, entry.depth + 1, entry.flags
        if depth > max_depth:
            raise SourceError("analysis_limit", f"syntax tree deeper than {max_depth}")
        if len(out) > max_nodes:
            raise SourceError("analysis_limit", f"more than {max_nodes} syntax nodes")
        typing_args = typing_call is not None and isinstance(node, ast.Call) and typing_call(node)
        children: list[Entry] = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or isinstance(value, (str, int, float, complex, bytes, bool, _CONTEXTS)):
                continue
            child_flags = flags
            if name in _ANNOTATION_FIELDS:
                child_flags |= IN_ANNOTATION
            elif name == "slice" and isinstance(node, ast.Subscript):
                child_flags |= IN_SUBSCRIPT
            elif typing_args and (name == "args" or name == "keywords"):
                child_flags |= IN_TYPING_CALL
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        children.append(Entry(item, node, name, depth, child_flags))
            elif isinstance(value, ast.AST):
                children.append(Entry(value, node, name, depth, child_flags))
        if children:
            children.reverse()
            stack.extend(children)
    return out


def statements(tree: ast.AST) -> list[ast.stmt]:
    """Every statement of `tree` at any nesting (imports are statements), iteratively."""
    out: list[ast.stmt] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for name in _STATEMENT_LISTS:
            items = getattr(node, name, None)
            if isinstance(items, list):
                for item in items:
                    if isinstance(item, (ast.stmt, ast.excepthandler, ast.match_case)):
                        if isinstance(item, ast.stmt):
                            out.append(item)
                        stack.append(item)
    return out
