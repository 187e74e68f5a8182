"""Parse once, compute facts once, run the selected rules, apply suppressions.

`lint_source` is the whole per-file pipeline and is a pure function of its
inputs, so front ends can run it in a process pool or on an editor buffer.
"""

from __future__ import annotations

import ast
import re
import traceback
from dataclasses import dataclass
from pathlib import PurePath

import libcst as cst

from modelint import source, suppression
from modelint.facts import FileFacts
from modelint.summary import FileSummary
from modelint.finding import (INTERNAL_ERROR, IO_ERROR, SYNTAX_ERROR, FileResult, Finding, Location, Related,
                              not_checked)
from modelint.registry import all_rules


# A file that mentions none of these cannot produce any finding: it is only
# checked for syntax errors (with the stdlib parser, ten times faster than libcst).
_RELEVANT = re.compile(r"torch|\bnn\b|\.eval\b|\.train\b|\btrain\(|no_grad|inference_mode|grad|dropout|training|Module")


@dataclass(frozen=True)
class Selection:
    codes: frozenset[str]
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()


def lint_path(path: str, codes: frozenset[str], index=None) -> FileResult:
    if path.endswith(".ipynb"):
        try:
            with open(path, "rb") as handle:
                return lint_bytes(handle.read(), path, codes, index)
        except OSError as error:
            return not_checked(path, IO_ERROR, f"cannot read file: {error.strerror or error}")
    try:
        text = source.read(path)
    except source.UnreadableSource as error:
        return not_checked(path, IO_ERROR, str(error))
    return lint_source(text, path, codes, index)


def lint_bytes(data: bytes, path: str, codes: frozenset[str], index=None) -> FileResult:
    if path.endswith(".ipynb"):
        from modelint.notebook import lint_notebook

        return lint_notebook(data, path, codes)
    try:
        text = source.decode(data)
    except source.UnreadableSource as error:
        return not_checked(path, IO_ERROR, str(error))
    return lint_source(text, path, codes, index)


# Rules whose facts come from the mode flow: only they make summaries worth computing.
FLOW_RULES = frozenset({"MDL001", "MDL002", "MDL003", "MDL007"})


def lint_source(text: str, path: str, codes: frozenset[str], index=None) -> FileResult:
    """Every finding of the selected rules in one file's text."""
    if "\x00" in text:
        return not_checked(path, IO_ERROR, "file contains NUL bytes (binary file?)")
    file_noqa = suppression.file_noqa(text) if "modelint" in text else None
    if file_noqa == suppression.ALL:
        return FileResult(path)
    if index is None and not _RELEVANT.search(text):
        return _syntax_only(text, path, bool(codes & FLOW_RULES))
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        # libcst may point one past the end (a truncated file): keep the position inside the file.
        lines = text.splitlines() or [""]
        row = min(max(error.raw_line, 1), len(lines))
        column = min(error.raw_column + 1, len(lines[row - 1]) + 1) if row == error.raw_line else len(lines[row - 1]) + 1
        return not_checked(path, SYNTAX_ERROR, f"SyntaxError: {error.message}", row, column)
    except RecursionError:
        return not_checked(path, SYNTAX_ERROR, "file is nested too deeply to parse")
    except Exception as error:  # libcst's native parser raises a few other kinds
        return not_checked(path, SYNTAX_ERROR, f"cannot parse: {_one_line(error)}")
    lines = text.splitlines()
    facts = FileFacts(module, path, index=index, lines=lines)
    reports = []
    internal: list[Finding] = []
    for code, rule_class in all_rules().items():
        if code not in codes:
            continue
        try:
            for report in rule_class().check(facts):
                reports.append((rule_class, report))
        except RecursionError:
            internal.append(_internal(path, code, "file is nested too deeply to analyse"))
        except Exception as error:
            internal.append(_internal(path, code, f"{type(error).__name__}: {_one_line(error)} at {_where(error)}"))
    summary = None
    if codes & FLOW_RULES:
        try:
            summary = facts.flow.file_summary()
        except Exception:  # a failed flow was already reported by the rules that need it
            summary = None
    if not reports:
        return FileResult(path, internal, summary=summary)
    positions = facts.positions
    findings: list[Finding] = []
    foreign: list[Finding] = []
    for rule_class, report in reports:
        if report.elsewhere is not None:
            # Positioned (and checked for `# noqa`) by the runner, which can read that file.
            other, ordinal = report.elsewhere
            foreign.append(Finding(other, rule_class.code, rule_class.name, report.message, rule_class.severity,
                                   Location(0, 0), Location(0, 0), related=report.related, call=ordinal))
            continue
        span = positions[report.node]
        start = Location(span.start.line, span.start.column + 1)
        end = Location(span.end.line, span.end.column + 1)
        stmt_row = positions[report.stmt].start.line if report.stmt is not None else start.row
        if suppression.covers(file_noqa, rule_class.code):
            continue
        noqa_row = None
        for row in {start.row, stmt_row}:
            if row <= len(lines) and suppression.covers(suppression.line_noqa(lines[row - 1]), rule_class.code):
                noqa_row = row
        if noqa_row is not None:
            continue
        notes = tuple(
            Related(path, Location(positions[node].start.line, positions[node].start.column + 1), message)
            for node, message in report.notes
        )
        findings.append(
            Finding(path, rule_class.code, rule_class.name, report.message, rule_class.severity, start, end,
                    fix=_resolve_fix(report.fix, positions, lines), related=notes + report.related)
        )
    findings.extend(internal)
    findings.sort(key=lambda f: f.sort_key)
    return FileResult(path, _dedupe(findings), summary=summary, foreign=foreign)


def _resolve_fix(fix, positions, lines: list[str]):
    """A rule's node-based fix -> positioned edits (None if a node cannot be placed)."""
    if fix is None:
        return None
    from modelint.finding import Edit, Fix

    edits = []
    for edit in fix.edits:
        span = positions.get(edit.node)
        if span is None:
            return None
        start = Location(span.start.line, span.start.column + 1)
        end = Location(span.end.line, span.end.column + 1)
        line = lines[start.row - 1] if start.row <= len(lines) else ""
        indent = line[: len(line) - len(line.lstrip())]
        if edit.where == "replace":
            edits.append(Edit(start, end, edit.content))
        elif edit.where == "before":
            edits.append(Edit(start, start, edit.content))
        elif edit.where == "after":
            edits.append(Edit(end, end, edit.content))
        elif edit.where == "line_before":
            at = Location(start.row, 1)
            edits.append(Edit(at, at, f"{indent}{edit.content}\n"))
        elif edit.where == "line_after":
            at = Location(end.row + 1, 1)
            edits.append(Edit(at, at, f"{indent}{edit.content}\n"))
        elif edit.where == "delete_lines":
            edits.append(Edit(Location(start.row, 1), Location(end.row + 1, 1), ""))
    return Fix(fix.message, tuple(edits), fix.applicability)


def call_positions(path: str) -> tuple[list[tuple[Location, Location]], list[str]] | None:
    """Start/end of every call of a file, in the order the facts pass meets them, and its lines.

    Summaries name calls by that ordinal so that positions (a costly pass) are only
    computed for the few calls a cross-file finding or note actually shows.
    """
    try:
        text = source.read(path)
        module = cst.parse_module(text)
    except Exception:
        return None
    facts = FileFacts(module, path)
    positions = facts.positions
    out = []
    for site in facts.collector.calls:
        span = positions[site.node]
        out.append((Location(span.start.line, span.start.column + 1), Location(span.end.line, span.end.column + 1)))
    return out, text.splitlines()


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple] = set()
    out = []
    for finding in findings:
        key = (finding.code, finding.location, finding.end_location)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def _syntax_only(text: str, path: str, follow_calls: bool) -> FileResult:
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as error:
        return not_checked(path, SYNTAX_ERROR, f"SyntaxError: {error.msg}", error.lineno or 1, error.offset or 1)
    except (ValueError, RecursionError, MemoryError) as error:
        return not_checked(path, SYNTAX_ERROR, f"cannot parse: {_one_line(error)}")
    if not follow_calls:
        return FileResult(path)
    # It mentions nothing of torch itself, but it may build a project's model and hand
    # it to a project helper: keep what it imports, so the runner can take a closer look.
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            imported.update(f"{module}.{alias.name}" if module else alias.name for alias in node.names)
    return FileResult(path, summary=FileSummary(path, unresolved=imported) if imported else None)


def _internal(path: str, code: str, why: str) -> Finding:
    location = Location(1, 1)
    return Finding(path, INTERNAL_ERROR, "internal-error",
                   f"rule {code} failed on this file ({why}); the other rules ran. Please report this.",
                   "error", location, location)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{PurePath(frame.filename).name}:{frame.lineno}"
