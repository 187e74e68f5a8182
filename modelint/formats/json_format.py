"""JSON in ruff's shape: a list of objects with code, message, filename, location..."""

from __future__ import annotations

import json
import os

from modelint.finding import Finding, Location


def _location(location: Location) -> dict:
    return {"row": location.row, "column": location.column}


def as_dict(finding: Finding) -> dict:
    from modelint.registry import rule_codes, rule_url

    fix = None
    if finding.fix is not None:
        fix = {
            "applicability": finding.fix.applicability,
            "message": finding.fix.message,
            "edits": [
                {"content": e.content, "location": _location(e.start), "end_location": _location(e.end)}
                for e in finding.fix.edits
            ],
        }
    data = {
        "code": finding.code,
        "name": finding.name,
        "message": finding.message,
        "severity": finding.severity,
        "filename": os.path.abspath(finding.path),
        "location": _location(finding.location),
        "end_location": _location(finding.end_location),
        "url": rule_url(finding.code) if finding.code in rule_codes() else None,
        "fix": fix,
        "noqa_row": finding.location.row,
        "related": [
            {"filename": os.path.abspath(r.path), "location": _location(r.location), "message": r.message,
             **({"cell": r.cell} if r.cell is not None else {})}
            for r in finding.related
        ],
    }
    if finding.cell is not None:
        data["cell"] = finding.cell
    if finding.runtime is not None:
        data["runtime"] = finding.runtime
    return data


def render(findings: list[Finding]) -> str:
    return json.dumps([as_dict(f) for f in findings], indent=2, ensure_ascii=False)
