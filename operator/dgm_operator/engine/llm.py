"""The LLM proposer's pure half: the prompt, the SEARCH/REPLACE edit format, token usage.

The program that talks to the model (``dgm propose-llm``, :mod:`dgm_operator.proposal.llm`)
runs inside a proposal Job; everything it decides is here, so it is tested without a model.

Conversation (the DGM's two steps, one conversation):

1. system (:func:`system_message`) + user (:func:`diagnose_message`): the objective, the
   parent's files and evaluation, the lineage and the rules; the model *diagnoses* (what to
   change and why). The reply becomes the candidate's description.
2. user (:func:`implement_message`): the model *implements* its diagnosis as SEARCH/REPLACE
   blocks. A reply that is malformed, or whose edits do not apply or break a rule, is sent
   back with the error (:func:`feedback_message`) a bounded number of times.

Edit format (aider's and OpenEvolve's convention), parsed strictly by :func:`parse_edits`::

    config.yaml
    <<<<<<< SEARCH
      top_k: 4
    =======
      top_k: 6
    >>>>>>> REPLACE

The file name stands alone on the line before ``<<<<<<< SEARCH`` (a code-fence line may sit
between them). The SEARCH part must match the current file exactly and once, at line
boundaries. An empty SEARCH part makes the REPLACE part the whole content of the file (a new
file, or a full rewrite). Several blocks and files may follow each other; blocks apply in
order. Marker lines are exactly ``<<<<<<< SEARCH``, ``=======`` and ``>>>>>>> REPLACE``
(trailing spaces ignored); a marker out of place is an error, never guessed around.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

SEARCH = "<<<<<<< SEARCH"
DIVIDER = "======="
REPLACE = ">>>>>>> REPLACE"
MARKERS = (SEARCH, DIVIDER, REPLACE)

#: files larger than this are listed but not shown to the model (they cannot be edited)
PROMPT_FILE_LIMIT = 48 * 1024
#: the grader's test results shown to the model (the termination log holds 4 KiB anyway)
PROMPT_TESTS_LIMIT = 4096
#: one lineage entry's diff in the prompt
PROMPT_DIFF_LIMIT = 3000
#: lineage entries in the prompt
PROMPT_LINEAGE_LIMIT = 6
#: the diagnosis kept as the candidate's description
DESCRIPTION_LIMIT = 2000
#: an error message sent back to the model
ERROR_LIMIT = 1500


class EditError(ValueError):
    """The model's reply cannot be used; the message is written for the model to act on."""


class EditFormatError(EditError):
    """The reply does not follow the SEARCH/REPLACE format."""


class EditApplyError(EditError):
    """A block does not apply to the files (no match, several matches, missing file)."""


class EditRuleError(EditError):
    """The edits apply but break a rule (a file that may not change, a safety finding)."""


@dataclass(frozen=True)
class Edit:
    file: str
    search: str  # exact old lines ("" = the REPLACE part is the whole file)
    replace: str
    line: int  # line of the <<<<<<< SEARCH marker in the reply (1-based)


# ---------------------------------------------------------------------------------- parsing


def _is_marker(line: str, marker: str) -> bool:
    return line.rstrip() == marker


def _marker_of(line: str) -> str | None:
    stripped = line.rstrip()
    return stripped if stripped in MARKERS else None


def _file_name(lines: Sequence[str], search_index: int) -> str:
    """The file name of the block whose SEARCH marker is ``lines[search_index]``."""
    i = search_index - 1
    if i >= 0 and lines[i].strip().startswith("```"):
        i -= 1  # a code fence between the name and the block
    where = f"line {search_index + 1}"
    if i < 0:
        raise EditFormatError(f"{where}: '{SEARCH}' must follow a line holding the file name alone")
    name = lines[i].strip()
    if not name:
        raise EditFormatError(
            f"{where}: the line before '{SEARCH}' is empty; put the file name alone on the line "
            "right before it")
    if _marker_of(name) or name.startswith("```"):
        raise EditFormatError(f"{where}: '{SEARCH}' must follow a line holding the file name alone")
    if any(ch.isspace() for ch in name) or any(ch in name for ch in "`*\"'<>|"):
        raise EditFormatError(
            f"line {i + 1}: {name[:80]!r} is not a bare file name; write the file name alone on the "
            f"line before '{SEARCH}', without quotes, backticks, bold or other words")
    return name


def parse_edits(reply: str) -> list[Edit]:
    """The SEARCH/REPLACE blocks of ``reply``, in order. Raises :class:`EditFormatError`
    naming the line and the rule on any malformed block, or when there is none."""
    lines = reply.replace("\r\n", "\n").split("\n")
    edits: list[Edit] = []
    i = 0
    while i < len(lines):
        marker = _marker_of(lines[i])
        if marker is None:
            i += 1
            continue
        if marker != SEARCH:
            raise EditFormatError(f"line {i + 1}: {marker!r} outside a SEARCH/REPLACE block "
                                  f"(every block starts with '{SEARCH}')")
        start = i
        name = _file_name(lines, i)
        search: list[str] = []
        i += 1
        while i < len(lines) and not _is_marker(lines[i], DIVIDER):
            if _marker_of(lines[i]):
                raise EditFormatError(f"line {i + 1}: {lines[i].rstrip()!r} inside the SEARCH part of the "
                                      f"block opened at line {start + 1} (expected '{DIVIDER}' first)")
            search.append(lines[i])
            i += 1
        if i >= len(lines):
            raise EditFormatError(f"the block opened at line {start + 1} ({name}) has no '{DIVIDER}' line")
        i += 1
        replace: list[str] = []
        while i < len(lines) and not _is_marker(lines[i], REPLACE):
            if _marker_of(lines[i]):
                raise EditFormatError(f"line {i + 1}: {lines[i].rstrip()!r} inside the REPLACE part of the "
                                      f"block opened at line {start + 1} (expected '{REPLACE}' first)")
            replace.append(lines[i])
            i += 1
        if i >= len(lines):
            raise EditFormatError(f"the block opened at line {start + 1} ({name}) has no '{REPLACE}' line")
        i += 1
        edits.append(Edit(file=name, search=_join(search), replace=_join(replace), line=start + 1))
    if not edits:
        raise EditFormatError(
            f"the reply holds no SEARCH/REPLACE block; each edit is the file name alone on a line, "
            f"then '{SEARCH}', the exact old lines, '{DIVIDER}', the new lines, '{REPLACE}'")
    return edits


def _join(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


# -------------------------------------------------------------------------------- applying


def _split(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _bare(line: str) -> str:
    return line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith("\n") else line


def _replace_once(name: str, text: str, edit: Edit, number: int) -> str:
    file_lines = _split(text)
    want = [_bare(x) for x in _split(edit.search)]
    bare = [_bare(x) for x in file_lines]
    n = len(want)
    hits = [i for i in range(len(bare) - n + 1) if bare[i:i + n] == want]
    where = f"block {number} (line {edit.line}) for {name}"
    if not hits:
        raise EditApplyError(f"{where}: the SEARCH part does not match the file exactly"
                             + _closest(bare, want))
    if len(hits) > 1:
        at = ", ".join(str(h + 1) for h in hits[:5])
        raise EditApplyError(f"{where}: the SEARCH part matches {len(hits)} places (lines {at}); "
                             "include more surrounding lines so that it matches exactly one")
    first, last = hits[0], hits[0] + n - 1
    newline = "\r\n" if file_lines[first].endswith("\r\n") else "\n"
    new = [_bare(x) + newline for x in _split(edit.replace)]
    if new and not file_lines[last].endswith("\n"):  # the match ended the file without a newline
        new[-1] = _bare(new[-1])
    return "".join(file_lines[:first] + new + file_lines[last + 1:])


def _closest(file_lines: Sequence[str], want: Sequence[str]) -> str:
    """A hint for a SEARCH part that matched nothing: the file line that holds its first
    non-blank line (whitespace or a trailing comment differs), else the most similar one."""
    probe = next((w for w in want if w.strip()), "")
    if not probe:
        return ""
    core = probe.strip()
    line_no = next((i for i, line in enumerate(file_lines, start=1) if core in line), None)
    if line_no is None:
        stripped = [line.strip() for line in file_lines]
        close = difflib.get_close_matches(core, stripped, n=1, cutoff=0.6)
        line_no = stripped.index(close[0]) + 1 if close else None
    if line_no is None:
        return f"; its first line {probe[:120]!r} is not in the file"
    return (f"; its first line {probe[:120]!r} is not in the file, the closest is line {line_no}: "
            f"{file_lines[line_no - 1][:120]!r} (copy the old lines exactly, whitespace and comments included)")


def apply_edits(files: Mapping[str, str], edits: Sequence[Edit]) -> dict[str, str]:
    """Apply ``edits`` in order to ``files``; returns the full new content of each changed
    file (unchanged files left out). Raises :class:`EditApplyError`."""
    work = dict(files)
    for number, edit in enumerate(edits, start=1):
        if not edit.search.strip():
            if edit.search:
                raise EditApplyError(f"block {number} (line {edit.line}) for {edit.file}: the SEARCH part holds "
                                     "only blank lines; leave it empty to write the whole file, or copy old lines")
            work[edit.file] = edit.replace
            continue
        if edit.file not in work:
            known = ", ".join(sorted(files)) or "none"
            raise EditApplyError(f"block {number} (line {edit.line}): there is no file {edit.file!r} (files: {known}); "
                                 "to create a file, give it a block with an empty SEARCH part")
        try:
            work[edit.file] = _replace_once(edit.file, work[edit.file], edit, number)
        except EditApplyError as exc:
            if work[edit.file] != files.get(edit.file):
                raise EditApplyError(f"{exc} (earlier blocks of this reply already changed {edit.file}: "
                                     "a block matches the file as those blocks left it)") from None
            raise
    changed = {name: text for name, text in work.items() if files.get(name) != text}
    if not changed:
        raise EditApplyError("the edits change nothing: every REPLACE part equals its SEARCH part")
    return dict(sorted(changed.items()))


def check_files(changes: Mapping[str, str], allowed: Sequence[str], protected: Sequence[str]) -> None:
    """Raise :class:`EditRuleError` when a changed file is protected or not allowed."""
    for name in changes:
        if any(fnmatch.fnmatchcase(name, g) for g in protected):
            raise EditRuleError(f"{name} is protected (evaluation files may never change); leave it alone")
        if not any(fnmatch.fnmatchcase(name, g) for g in allowed):
            raise EditRuleError(f"{name} is not an allowed file (allowedFiles: {', '.join(allowed)}); "
                                "change only allowed files")


# ----------------------------------------------------------------------------------- diffs


def unified_diff(old: Mapping[str, str], changes: Mapping[str, str], limit: int = PROMPT_DIFF_LIMIT) -> str:
    """A unified diff of ``changes`` against ``old``, cut to ``limit`` characters."""
    parts: list[str] = []
    for name in sorted(changes):
        before = old.get(name)
        parts.extend(difflib.unified_diff(
            _split(before or ""), _split(changes[name]),
            fromfile=f"a/{name}" if before is not None else "/dev/null", tofile=f"b/{name}", n=2))
    text = "".join(p if p.endswith("\n") else p + "\n\\ No newline at end of file\n" for p in parts)
    return truncate(text, limit)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rstrip("\n") + f"\n... [cut: {len(text) - limit} more characters]\n"


# ----------------------------------------------------------------------------------- prompt


@dataclass(frozen=True)
class PromptFile:
    name: str
    content: str
    editable: bool


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_line(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return "not measured"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(metrics.items()))


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(run) for run in text.split("\n") if run and set(run) == {"`"}), default=0)
    ticks = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{ticks}{lang}\n{body}{ticks}"


def _lang(name: str) -> str:
    return {"py": "python", "yaml": "yaml", "yml": "yaml", "json": "json", "md": "markdown",
            "txt": "text", "toml": "toml", "sh": "bash"}.get(name.rsplit(".", 1)[-1].lower(), "")


SYSTEM_PROMPT = """\
You improve a deployed AI agent's own code and configuration, one step of a Darwin Goedel \
Machine: an archive of variants of the agent, each a change to a parent variant, measured by a \
benchmark in a sandbox and kept when it scores better. You are given the parent variant's files, \
how it scored, what earlier attempts from it did, and the rules a change must follow. You work \
in two steps: first you diagnose (what limits the score and what single change would help), \
then you implement that change as exact SEARCH/REPLACE edits. Changes that break a rule are \
rejected before they are measured."""


def system_message() -> dict[str, str]:
    return {"role": "system", "content": SYSTEM_PROMPT}


def render_context(ctx: Mapping[str, Any]) -> str:
    """The shared part of the prompt, from a context document (:mod:`.proposal`'s
    ``ProposalContext`` in its JSON form, camelCase)."""
    out: list[str] = []
    objective = ctx.get("objective") or {}
    out.append("# Objective")
    out.append("The improvement score is the weighted relative change of these metrics against the agent's "
               "current revision:")
    for m in objective.get("metrics") or []:
        unit = f", unit {m['unit']}" if m.get("unit") else ""
        out.append(f"- {m['name']}: {m.get('goal', 'maximize')}, weight {_fmt(float(m.get('weight', 1.0)))}{unit}")
    if objective.get("minImprovement") is not None:
        out.append(f"A variant is kept as an improvement when its score exceeds {_fmt(float(objective['minImprovement']))}.")
    out.append("")

    baseline = ctx.get("baseline") or {}
    parent = ctx.get("parent") or {}
    out.append("# Where the parent stands")
    rev = baseline.get("revision")
    out.append(f"Current revision{f' {rev}' if rev is not None else ''}: {_metrics_line(baseline.get('metrics'))}.")
    if parent.get("name"):
        score = parent.get("score")
        out.append(f"Parent: variant {parent['name']}"
                   + (f", score {score:+.4f} against the revision it was measured on" if isinstance(score, (int, float)) else "")
                   + f"; metrics: {_metrics_line(parent.get('metrics'))}.")
        if parent.get("description"):
            out.append(f"Its change was: {truncate(str(parent['description']), 600).strip()}")
    else:
        out.append("Parent: the current revision itself.")
    tests = (parent.get("evaluation") or {}).get("tests")
    if tests:
        out.append("The grader's results for the parent (per-task failures show what goes wrong):")
        out.append(_fence(truncate(render_tests(tests), PROMPT_TESTS_LIMIT)))
    out.append("")

    rules = ctx.get("rules") or {}
    files = prompt_files(parent.get("files") or {}, rules.get("allowedFiles") or ["**"],
                         rules.get("protectedFiles") or [])
    out.append("# The parent's files")
    editable = [f.name for f in files if f.editable]
    readonly = [f.name for f in files if not f.editable]
    out.append(f"Editable: {', '.join(editable) or 'none'}." + (f" Read-only: {', '.join(readonly)}." if readonly else ""))
    for f in files:
        out.append("")
        if len(f.content) > PROMPT_FILE_LIMIT:
            out.append(f"{f.name} ({len(f.content)} characters: too large to show, leave it alone)")
            continue
        out.append(f.name + ("" if f.editable else " (read-only)"))
        out.append(_fence(f.content, _lang(f.name)))
    out.append("")

    lineage = list(ctx.get("lineage") or [])[:PROMPT_LINEAGE_LIMIT]
    if lineage:
        out.append("# Earlier attempts from this parent (newest first; do not repeat one that failed)")
        for entry in lineage:
            score = entry.get("score")
            head = f"## {entry.get('name')}: {entry.get('phase') or 'Proposed'}"
            if entry.get("reason"):
                head += f" ({entry['reason']})"
            if isinstance(score, (int, float)):
                head += f", score {score:+.4f}"
            out.append(head)
            if entry.get("message"):
                out.append(f"Outcome: {truncate(str(entry['message']), 400).strip()}")
            if entry.get("description"):
                out.append(f"Idea: {truncate(str(entry['description']), 400).strip()}")
            if entry.get("diff"):
                out.append(_fence(truncate(str(entry["diff"]), PROMPT_DIFF_LIMIT), "diff"))
        out.append("")

    out.append("# Rules (a change that breaks one is rejected before it is measured)")
    out.extend(f"- {r}" for r in rule_lines(rules))
    return "\n".join(out).rstrip() + "\n"


def render_tests(tests: Mapping[str, Any]) -> str:
    """The grader's ``tests`` object, compact: scalars on one line, each list item (a
    per-task failure) on its own line."""
    scalars = {k: v for k, v in sorted(tests.items()) if not isinstance(v, (list, dict))}
    lines = [", ".join(f"{k}: {json.dumps(v)}" for k, v in scalars.items())] if scalars else []
    for key, value in sorted(tests.items()):
        if isinstance(value, list):
            lines.append(f"{key} ({len(value)}):")
            lines.extend(f"- {json.dumps(item, sort_keys=True)}" for item in value)
        elif isinstance(value, dict):
            lines.append(f"{key}: {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def prompt_files(files: Mapping[str, str], allowed: Sequence[str], protected: Sequence[str]) -> list[PromptFile]:
    """The parent's files the model sees: protected (evaluation) files are left out."""
    out = []
    for name in sorted(files):
        if any(fnmatch.fnmatchcase(name, g) for g in protected):
            continue
        out.append(PromptFile(name, files[name], any(fnmatch.fnmatchcase(name, g) for g in allowed)))
    return out


def rule_lines(rules: Mapping[str, Any]) -> list[str]:
    lines = [f"Change only files matching: {', '.join(rules.get('allowedFiles') or ['**'])}."]
    if rules.get("protectedFiles"):
        lines.append(f"Never change evaluation files: {', '.join(rules['protectedFiles'])}.")
    if rules.get("maxChangeBytes"):
        lines.append(f"The changed files together hold at most {rules['maxChangeBytes']} bytes"
                     + (f", in at most {rules['maxFiles']} files." if rules.get("maxFiles") else "."))
    lines.append("File names are plain names (letters, digits, '-', '_', '.'): no directories.")
    imports = rules.get("allowedImports")
    if imports:
        lines.append(f"Python files must parse and import only: {', '.join(sorted(imports))}.")
    else:
        lines.append("Python files must parse and import only safe standard-library modules.")
    lines.extend(str(r) for r in rules.get("rejected") or [])
    for p in rules.get("searchSpace") or []:
        if p.get("type") in ("int", "float"):
            lines.append(f"{p['file']}:{p['key']} stays {'an' if p['type'] == 'int' else 'a'} {p['type']} in [{_fmt(p.get('min'))}, {_fmt(p.get('max'))}].")
        elif p.get("type") == "choice":
            lines.append(f"{p['file']}:{p['key']} stays one of: {', '.join(p.get('choices') or [])}.")
        elif p.get("type") == "bool":
            lines.append(f"{p['file']}:{p['key']} stays true or false.")
    return lines


DIAGNOSE_INSTRUCTIONS = """\
# Step 1: diagnose
Do not write code yet. In at most 150 words, say which weakness limits the score most (use the \
grader's failures above), which single change to the editable files would address it, and why \
you expect it to raise the score. If an earlier attempt tried something similar, say what is \
different this time."""

IMPLEMENT_INSTRUCTIONS = f"""\
# Step 2: implement
Implement the change you diagnosed as SEARCH/REPLACE blocks. For example:

config.yaml
{SEARCH}
  top_k: 4
{DIVIDER}
  top_k: 6
{REPLACE}

The format, read strictly:
- the file name alone on the line before {SEARCH} (no quotes, backticks, bold or other words);
- the SEARCH part copies the current lines exactly, whitespace included, and matches one place \
only: add surrounding lines to make it unique;
- several blocks, for one file or several, may follow each other; a file's blocks apply in order;
- an empty SEARCH part makes the REPLACE part the whole content of the file (use it for a new file);
- the marker lines are exactly {SEARCH}, {DIVIDER} and {REPLACE}.
Reply with the blocks only."""


def diagnose_message(ctx: Mapping[str, Any]) -> dict[str, str]:
    return {"role": "user", "content": render_context(ctx) + "\n" + DIAGNOSE_INSTRUCTIONS + "\n"}


def implement_message() -> dict[str, str]:
    return {"role": "user", "content": IMPLEMENT_INSTRUCTIONS + "\n"}


def feedback_message(error: str) -> dict[str, str]:
    return {"role": "user", "content": (
        f"Your edits cannot be used: {truncate(error, ERROR_LIMIT).strip()}\n\n"
        "Reply with the complete, corrected set of SEARCH/REPLACE blocks. They apply to the parent's "
        "files as shown above: the blocks of your previous reply are discarded.\n")}


def description_from(diagnosis: str) -> str:
    """The candidate's description: the diagnosis, whitespace-normalised and bounded."""
    text = " ".join(diagnosis.split())
    if len(text) > DESCRIPTION_LIMIT:
        text = text[:DESCRIPTION_LIMIT - 3].rstrip() + "..."
    return text or "LLM proposal (the model gave no diagnosis)"


CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml", ".ini", ".cfg", ".conf", ".env")


def classify(parent_files: Mapping[str, str], changes: Mapping[str, str],
             search_space_files: Sequence[str] = ()) -> str:
    """The candidate's improvementType from what changed: a new file ArchitectureChange, code
    AlgorithmModification, only search-space files ParameterTuning, other config
    ConfigurationUpdate."""
    if any(name not in parent_files for name in changes):
        return "ArchitectureChange"
    if not all(name.lower().endswith(CONFIG_SUFFIXES) for name in changes):
        return "AlgorithmModification"
    if search_space_files and all(name in search_space_files for name in changes):
        return "ParameterTuning"
    return "ConfigurationUpdate"


# ------------------------------------------------------------------------------ token usage


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = 0
    estimated: bool = False  # some reply carried no `usage`: its tokens were estimated

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.total_tokens + other.total_tokens, self.calls + other.calls,
                     self.estimated or other.estimated)

    def as_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"promptTokens": self.prompt_tokens, "completionTokens": self.completion_tokens,
                               "totalTokens": self.total_tokens, "calls": self.calls}
        if self.estimated:
            out["estimated"] = True
        return out


def usage_from_api(usage: Mapping[str, Any] | None, messages: Sequence[Mapping[str, str]], reply: str) -> Usage:
    """One call's usage from the API's ``usage`` object; estimated (and flagged) when absent."""
    if usage and isinstance(usage.get("prompt_tokens"), int) and isinstance(usage.get("completion_tokens"), int):
        prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        total = usage.get("total_tokens")
        return Usage(prompt, completion, int(total) if isinstance(total, int) else prompt + completion, 1)
    prompt = sum(estimate_tokens(m.get("content") or "") for m in messages)
    completion = estimate_tokens(reply)
    return Usage(prompt, completion, prompt + completion, 1, estimated=True)


#: UTF-8 bytes per token of BPE tokenizers on these prompts (English prose, YAML and Python):
#: 3.35 to 3.86 with cl100k_base and o200k_base (docs/llm-proposer.md says how it was checked)
CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: UTF-8 bytes / :data:`CHARS_PER_TOKEN`, rounded up. Used when
    an endpoint reports no ``usage``, and for the cost figures in the docs."""
    return int(math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN))
