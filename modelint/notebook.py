"""Jupyter notebooks: code cells joined into one module, findings mapped back to cells.

Cells are joined in order (state flows from one cell to the next, as when the
notebook runs top to bottom). IPython syntax is neutralised without moving any
line: a `%magic` / `!shell` / `?obj` / `obj?` line (or an automagic one: `cd data`) that starts a statement (not one
inside brackets or a string: `%(a, b))` continuing a format is Python) becomes
`pass` at the same indentation (the lines it continues with a backslash become
blank), a capture (`files = !ls`) binds its names to `...`, and a cell magic other than
%%time/%%timeit/%%capture comments its whole cell out. A cell that does not
parse is reported (E999 at that cell); each statement CPython stops in is then blanked
in place (`pass`, or `if True:` for a line opening a block), a few times at most, so
that an exercise cell (`h = <YOUR CODE>` in a class's `forward`) still defines its
class and switches its modes for the cells after it, though nothing is reported in it
(what it computes is not written yet); a cell that still does not parse is left out.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace

from modelint import limits
from modelint.finding import IO_ERROR, NOT_CHECKED_NAMES, FileResult, Finding, Location, Related, not_checked
from modelint.source import physical_lines
from modelint.summary import FileSummary

_LINE_MAGIC = re.compile(r"^(\s*)(%|!|\?)")
# `files = !ls logs`, `t = %timeit -o f()`: never Python (`!` and `%` cannot start an expression); the name
# stays bound, to a value the analysis knows nothing about.
_CAPTURE_MAGIC = re.compile(r"^(\s*[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*\s*)=\s*[%!]")
_PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")
# IPython's automagic: a line magic or shell alias written without its `%` (`cd drive/My\ Drive`, `pip install
# x`, `cat log.txt`). Only a line that is no Python by itself (`ls = []`, `ls -la`, `cd(x)` are Python).
_AUTOMAGIC = re.compile(r"^(\s*)(?:cd|ls|ll|pwd|pip|conda|mkdir|rmdir|cat|cp|mv|rm|env|load_ext|matplotlib|run)"
                        r"\s+\S")


def code_cells(data: bytes) -> list[list[str]]:
    notebook = json.loads(data.decode("utf-8"))
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            cells.append(None)
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        cells.append(physical_lines(text))
    return cells


def neutralise(lines: list[str]) -> list[str]:
    if lines and lines[0].startswith("%%"):
        if lines[0].split()[0] not in _PYTHON_CELL_MAGICS:
            return ["# " + line for line in lines]
        lines = ["pass"] + lines[1:]
    out = []
    continued = False  # inside a magic continued with a backslash (`!python export.py \\`): blank lines
    depth, quote, python_continued = 0, None, False  # where the Python so far leaves the next line
    for line in lines:
        if continued:
            out.append("")
        else:
            # Only a line that starts a statement can be IPython's: `%(a, b))` continuing a call is Python.
            starts = depth == 0 and quote is None and not python_continued
            match = (_LINE_MAGIC.match(line) or _automagic(line)) if starts else None
            depth, quote, python_continued, last = _scan(line, depth, quote)
            if match is None and starts and last == "?" and line.strip() not in ("?", "??"):
                match = _LINE_MAGIC.match(" " * (len(line) - len(line.lstrip())) + "?")  # `obj?`, `obj??`: help
                depth, quote, python_continued = 0, None, False
            capture = _CAPTURE_MAGIC.match(line) if starts and match is None else None
            if capture is not None:
                match = capture
                out.append(f"{capture.group(1).rstrip()} = ...")
            else:
                out.append(f"{match.group(1)}pass" if match else line)
            if not match:
                continue
            depth, quote, python_continued = 0, None, False
        continued = line.rstrip().endswith("\\")
    return out


def _automagic(line: str) -> re.Match | None:
    match = _AUTOMAGIC.match(line)
    if match is None or _ASSIGNED.match(line) or _scan(line, 0, None)[0] > 0:
        # (`env = make_env(` spanning lines: an assignment whose brackets close below, Python)
        return None
    try:
        ast.parse(line.strip())
    except (SyntaxError, ValueError):
        return match
    return None


# A name followed by an assignment (`env = ...`, `run += 1`): Python, which IPython's automagic leaves alone.
_ASSIGNED = re.compile(r"^\s*\w+\s*(?:[-+*/%&|^@]|//|\*\*|>>|<<)?=(?!=)")


def _scan(line: str, depth: int, quote: str | None) -> tuple[int, str | None, bool, str]:
    """Read one line of Python on from (open brackets, open triple-quoted string): the same after it,
    whether a backslash continues it, and its last character outside strings and comments."""
    i, n, last = 0, len(line), ""
    while i < n:
        if quote is not None:
            end = line.find(quote, i)
            while end > 0 and line[end - 1] == "\\" and (end - len(line[:end].rstrip("\\"))) % 2:
                end = line.find(quote, end + 1)
            if end < 0:
                return depth, (quote if len(quote) == 3 else None), len(quote) != 3 and line.endswith("\\"), last
            i, quote, last = end + len(quote), None, quote[0]
            continue
        char = line[i]
        if char == "#":
            break
        if char in "\"'":
            quote = char * 3 if line.startswith(char * 3, i) else char
            i += len(quote)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(depth - 1, 0)
        if not char.isspace():
            last = char
        i += 1
    return depth, quote, last == "\\", last


_MOST_BLANKED = 8  # statements blanked in one cell before giving it up


def blank_errors(lines: list[str], verdict: limits.Verdict) -> list[str] | None:
    """The cell with each statement CPython stops in blanked in place (rows do not move), or None when that
    does not make it parse: the rest of an exercise cell (its layers, its `train(False)`) is what the
    notebook runs once the student fills the gap in."""
    lines = list(lines)
    for _ in range(_MOST_BLANKED):
        if not 0 < verdict.row <= len(lines) or verdict.code != limits.SYNTAX_ERROR:
            return None
        first, last = _statement_around(lines, verdict.row - 1)
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        opens_block = lines[last].split("#")[0].rstrip().endswith(":")
        blank = [f"{indent}if True:" if opens_block else f"{indent}pass"] + [""] * (last - first)
        if lines[first:last + 1] == blank:
            return None  # (an indentation error at a line already blanked: the structure itself is broken)
        lines[first:last + 1] = blank
        verdict = limits.cpython_parse("\n".join(lines))
        if not isinstance(verdict, limits.Verdict):
            return lines
    return None


def _statement_around(lines: list[str], row: int) -> tuple[int, int]:
    """The rows (0-based, inclusive) of the logical line holding `row`: from where the brackets, strings and
    backslashes open before it to where they close after it (`f(a,\n <YOUR CODE>\n b)`)."""
    starts, depth, quote, continued = [], 0, None, False
    for line in lines:
        starts.append(depth == 0 and quote is None and not continued)
        depth, quote, continued, _ = _scan(line, depth, quote)
    first = row
    while first > 0 and not starts[first]:
        first -= 1
    last = row
    while last + 1 < len(lines) and not starts[last + 1]:
        last += 1
    return first, last


class Joined:
    """A notebook's code cells as one module: the text, where each of its rows came from, and the cells
    that do not parse (left out)."""

    def __init__(self, cells: list[list[str] | None], path: str) -> None:
        joined: list[str] = []
        self.line_map: list[tuple[int, int]] = []  # joined row -> (cell number, row in cell)
        self.problems: list[Finding] = []
        self.blanked: set[int] = set()  # cells read with their broken statements blanked
        self.shifts: list[int] = []  # joined row -> the columns IPython's dedent took off its start
        for number, lines in enumerate(cells, 1):
            if lines is None:
                continue
            lines, shifts = _leading_indent(lines)
            python = neutralise(lines)
            verdict = limits.cpython_parse("\n".join(python))
            if isinstance(verdict, limits.Verdict):
                location = Location(verdict.row, verdict.column)
                self.problems.append(Finding(path, verdict.code, NOT_CHECKED_NAMES[verdict.code], verdict.message,
                                             "error", location, location, cell=number))
                python = blank_errors(python, verdict)
                if python is None:
                    continue
                self.blanked.add(number)
            for row, line in enumerate(python, 1):
                joined.append(line)
                self.line_map.append((number, row))
                self.shifts.append(shifts[row - 1] if row <= len(shifts) else 0)
        self.text = "\n".join(joined) + "\n"

    def row_of(self, cell: int, row: int) -> int | None:
        """The joined row of a cell's row (the runtime checker probes the joined module)."""
        try:
            return self.line_map.index((cell, row)) + 1
        except ValueError:
            return None


def _leading_indent(lines: list[str]) -> tuple[list[str], list[int]]:
    """IPython's dedent of a cell whose first line is indented (` model.eval()`): that indentation comes off
    every line starting with it. The lines, and how many columns each lost."""
    first = lines[0] if lines else ""
    indent = first[:len(first) - len(first.lstrip(" \t"))]
    if not indent or not first.strip():
        return lines, [0] * len(lines)
    shifts = [len(indent) if line.startswith(indent) else 0 for line in lines]
    return [line[shift:] for line, shift in zip(lines, shifts)], shifts


def joined_source(data: bytes, path: str) -> Joined:
    """Raises ValueError (and friends) for a file that is no readable notebook."""
    return Joined(code_cells(data), path)


def lint_notebook(data: bytes, path: str, codes: frozenset[str], index=None) -> FileResult:
    from modelint.engine import lint_source

    try:
        joined = joined_source(data, path)
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as error:
        return not_checked(path, IO_ERROR, f"not a readable notebook: {error}")
    line_map, problems = joined.line_map, joined.problems
    result = lint_source(joined.text, path, codes, index)
    findings = list(problems)
    for finding in result.findings:
        if 0 < finding.location.row <= len(line_map):
            cell, row = line_map[finding.location.row - 1]
            if cell in joined.blanked:
                continue  # what a cell with gaps computes is not written yet: it only tells the others its names
            end_index = min(finding.end_location.row, len(line_map)) - 1
            end_cell, end_row = line_map[end_index]
            shift = joined.shifts[finding.location.row - 1]
            finding.cell = cell
            finding.location = Location(row, finding.location.column + shift)
            finding.end_location = Location(end_row if end_cell == cell else row,
                                            finding.end_location.column + joined.shifts[end_index])
        finding.fix = None  # edits are positions in the joined source, not in the notebook's JSON
        # (its notes here move to their cells; a position still to be looked up in the notebook cannot be)
        finding.related = tuple(_in_cells(related, path, line_map, joined.shifts) for related in finding.related
                                if related.path != path
                                or (related.call is None and 0 < related.location.row <= len(line_map)))
        findings.append(finding)
    findings.sort(key=lambda f: (f.cell or 0, f.location.row, f.location.column, f.code))
    # What the notebook calls in the project's .py files (a helper run after `model.eval()` here has a caller),
    # the methods it calls on objects it cannot place (under no_grad? after eval()?), and what it asks of
    # their classes; its own functions are no one's to import.
    for finding in result.foreign:  # reported in a .py helper: its notes here point into cells
        finding.related = tuple(_in_cells(related, path, line_map, joined.shifts) for related in finding.related)
    summary = result.summary
    if summary is not None:
        summary = FileSummary(path, unresolved=summary.unresolved, asked_classes=summary.asked_classes,
                              asked_submodules=summary.asked_submodules, method_calls=summary.method_calls,
                              method_calls_in_eval=summary.method_calls_in_eval,
                              inherited_calls=summary.inherited_calls,
                              grad_free_calls=summary.grad_free_calls,
                              object_orders=summary.object_orders, handed_methods=summary.handed_methods)
    return FileResult(path, findings, checked=not problems or bool(line_map), summary=summary,
                      foreign=result.foreign, asked=result.asked)


def _in_cells(related: Related, path: str, line_map: list[tuple[int, int]], shifts: list[int] | None = None) -> Related:
    """A note about the joined notebook, at its cell and row there."""
    row = related.location.row
    if related.path != path or related.call is not None or not 0 < row <= len(line_map):
        return related
    cell, cell_row = line_map[row - 1]
    column = related.location.column + (shifts[row - 1] if shifts else 0)
    return replace(related, location=Location(cell_row, column), cell=cell)
