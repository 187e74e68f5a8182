"""`check --fix` / `--diff` over the files of a run."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from modelint import fixer
from modelint.runner import Overrides, RunResult, codes_for
from modelint.source import physical_lines


@dataclass
class FixReport:
    applied: int = 0
    changed: int = 0
    diff: str = ""
    problems: list[str] = field(default_factory=list)


def fix_files(run: RunResult, resolver, overrides: Overrides, unsafe: bool, write: bool) -> FixReport:
    report = FixReport()
    diffs: list[str] = []
    for result in run.results:
        if not result.checked or not any(fixer.wanted(f, unsafe) for f in result.findings):
            continue
        path = result.path
        try:
            source = fixer.read_for_fix(path)
        except (OSError, UnicodeDecodeError, SyntaxError) as error:
            report.problems.append(f"{path}: cannot read for fixing: {error}")
            continue
        codes = codes_for(path, resolver.for_file(Path(path)), overrides)
        outcome = fixer.fix_text(source.text, path, codes, unsafe, first=result.findings)
        report.problems.extend(f"{path}: {why}" for why in outcome.dropped)
        if not outcome.changed:
            continue
        report.applied += outcome.applied
        report.changed += 1
        if write:
            try:
                fixer.write_atomically(path, source, outcome.fixed)
            except OSError as error:
                report.problems.append(f"{path}: cannot write the fixes: {error.strerror or error}")
        else:
            diffs.append("".join(difflib.unified_diff(
                physical_lines(source.text, keepends=True), physical_lines(outcome.fixed, keepends=True), f"a/{path}", f"b/{path}")))
    report.diff = "".join(diffs)
    return report
