"""LSP `Diagnostic` objects per file (0-based lines, UTF-16 columns), for editors that run the CLI."""

from __future__ import annotations

import json
import os
from collections import defaultdict

from modelint.finding import Finding
from modelint.source import physical_lines

SEVERITY = {"error": 1, "warning": 2}


def utf16_column(line: str, column: int) -> int:
    """A 1-based code-point column of `line` -> the 0-based UTF-16 offset LSP speaks."""
    prefix = line[: max(column - 1, 0)]
    return len(prefix.encode("utf-16-le")) // 2


def _lines(path: str, cache: dict) -> list[str]:
    if path not in cache:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                cache[path] = physical_lines(handle.read().lstrip("\ufeff"))
        except OSError:
            cache[path] = []
    return cache[path]


def _position(path: str, row: int, column: int, cache: dict) -> dict:
    lines = _lines(path, cache)
    line = lines[row - 1] if 0 < row <= len(lines) else ""
    return {"line": max(row - 1, 0), "character": utf16_column(line, column)}


def diagnostic(finding: Finding, cache: dict | None = None) -> dict:
    from modelint.registry import rule_codes, rule_url

    cache = {} if cache is None else cache
    data = {
        "range": {"start": _position(finding.path, finding.location.row, finding.location.column, cache),
                  "end": _position(finding.path, finding.end_location.row, finding.end_location.column, cache)},
        "severity": SEVERITY.get(finding.severity, 2),
        "code": finding.code,
        "source": "modelint",
        "message": finding.message,
    }
    if finding.code in rule_codes():
        data["codeDescription"] = {"href": rule_url(finding.code)}
    if finding.related:
        data["relatedInformation"] = [
            {"location": {"uri": "file://" + os.path.abspath(r.path),
                          "range": {"start": _position(r.path, r.location.row, r.location.column, cache),
                                    "end": _position(r.path, r.location.row, r.location.column, cache)}},
             "message": r.message}
            for r in finding.related
        ]
    return data


def render(findings: list[Finding]) -> str:
    cache: dict = {}
    by_file: dict[str, list[dict]] = defaultdict(list)
    for finding in findings:
        by_file[finding.path].append(diagnostic(finding, cache))
    return json.dumps([{"uri": "file://" + os.path.abspath(path), "diagnostics": diagnostics}
                       for path, diagnostics in by_file.items()], indent=2, ensure_ascii=False)
