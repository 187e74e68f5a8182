"""Applying fixes: edits to text, repeated until stable, checked, written atomically.

The engine attaches positioned edits to findings; this module is the only place
that changes a user's file. Each round re-lints the new text, so fixes that
uncover other fixable findings converge; a round whose result does not parse is
dropped and reported; files are written through a temporary file in the same
folder and renamed over the original, keeping mode bits, BOM, encoding and line
endings.
"""

from __future__ import annotations

import codecs
import io
import os
import stat
import tokenize
from dataclasses import dataclass, field

from modelint import atomic, engine, limits
from modelint.finding import Edit, Finding, Location
from modelint.source import physical_lines

MAX_ROUNDS = 10


@dataclass
class FixOutcome:
    path: str
    original: str
    fixed: str
    applied: int = 0
    dropped: list[str] = field(default_factory=list)  # why a round of edits was not applied

    @property
    def changed(self) -> bool:
        return self.fixed != self.original


def _offsets(text: str) -> list[int]:
    """Where each line starts (Python's lines: \\n, \\r\\n, \\r), and the end of the text."""
    starts = [0]
    for line in physical_lines(text, keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _offset(starts: list[int], location: Location, text: str) -> int:
    if location.row - 1 >= len(starts) - 1:
        return len(text)  # just past the last line
    return min(starts[location.row - 1] + location.column - 1, len(text))


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits (later ones that overlap an earlier one are skipped)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    starts = _offsets(text)
    spans = []
    for edit in edits:
        begin, end = _offset(starts, edit.start, text), _offset(starts, edit.end, text)
        content = edit.content.replace("\n", newline) if newline != "\n" else edit.content
        if begin == len(text) and content and text and not text.endswith(("\n", "\r")):
            content = newline + content
        spans.append((begin, end, content))
    taken: list[tuple[int, int]] = []
    chosen = []
    for begin, end, content in spans:
        if any(begin < t_end and t_begin < end or (begin == end == t_begin == t_end) for t_begin, t_end in taken):
            continue
        taken.append((begin, end))
        chosen.append((begin, end, content))
    for begin, end, content in sorted(chosen, reverse=True):
        text = text[:begin] + content + text[end:]
    return text


def wanted(finding: Finding, unsafe: bool) -> bool:
    return finding.fix is not None and (finding.fix.applicability == "safe" or unsafe)


def fix_text(text: str, path: str, codes: frozenset[str], unsafe: bool,
             first: list[Finding] | None = None) -> FixOutcome:
    """Fix until stable. `first`: findings of this very text from a whole-project run, whose
    cross-file fixes a lint of the file alone would not see."""
    outcome = FixOutcome(path, text, text)
    for round_number in range(MAX_ROUNDS):
        if round_number == 0 and first is not None:
            fixes = [f for f in first if wanted(f, unsafe)]
        else:
            result = engine.lint_source(outcome.fixed, path, codes)
            fixes = [f for f in result.findings if wanted(f, unsafe)]
        if not fixes:
            break
        # One fix per finding, each finding's edits together, never overlapping another's.
        edits: list[Edit] = []
        for finding in fixes:
            edits.extend(finding.fix.edits)
        candidate = apply_edits(outcome.fixed, edits)
        if candidate == outcome.fixed:
            break
        try:
            engine.parse(candidate)
        except Exception as error:  # the fix would break the file: keep what we had
            codes_tried = ", ".join(sorted({f.code for f in fixes}))
            why = error.message if isinstance(error, limits.Verdict) else type(error).__name__
            outcome.dropped.append(f"fixes for {codes_tried} would leave invalid code ({why}); "
                                   f"not applied")
            break
        outcome.applied += len(fixes)
        outcome.fixed = candidate
    return outcome


@dataclass
class SourceFile:
    text: str
    encoding: str
    bom: bool


def read_for_fix(path: str) -> SourceFile:
    with open(path, "rb") as handle:
        data = handle.read()
    bom = data.startswith(codecs.BOM_UTF8)
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    return SourceFile(text, "utf-8" if encoding == "utf-8-sig" else encoding, bom)


def write_atomically(path: str, source: SourceFile, text: str) -> None:
    """Write fixed text back with the original encoding, BOM and permission bits."""
    data = text.encode(source.encoding)
    if source.bom:
        data = codecs.BOM_UTF8 + data
    atomic.write_bytes(path, data, mode=stat.S_IMODE(os.stat(path).st_mode), durable=True)
