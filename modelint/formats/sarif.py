"""SARIF 2.1.0 for code-scanning services (GitHub, GitLab, Azure DevOps)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from modelint import __version__
from modelint.finding import Finding

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"error": "error", "warning": "warning"}


def _uri(path: str, root: str) -> str:
    absolute = os.path.abspath(path)
    try:
        return Path(os.path.relpath(absolute, root)).as_posix() if not os.path.relpath(absolute, root).startswith("..") \
            else Path(absolute).as_uri()
    except ValueError:  # another drive on Windows
        return Path(absolute).as_uri()


def _region(row: int, column: int, end_row: int | None = None, end_column: int | None = None) -> dict:
    region = {"startLine": max(row, 1), "startColumn": max(column, 1)}
    if end_row is not None and end_column is not None and (end_row, end_column) >= (row, column):
        region.update(endLine=end_row, endColumn=max(end_column, 1))
    return region


def _location(path: str, root: str, region: dict, message: str | None = None) -> dict:
    location = {"physicalLocation": {"artifactLocation": {"uri": _uri(path, root), "uriBaseId": "%SRCROOT%"},
                                     "region": region}}
    if message:
        location["message"] = {"text": message}
    return location


def render(findings: list[Finding]) -> str:
    from modelint.registry import all_rules, rule_url

    root = os.getcwd()
    rules = all_rules()
    descriptors = [
        {
            "id": code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": rule.docs(), "markdown": rule.docs()},
            "helpUri": rule_url(code),
            "defaultConfiguration": {"level": LEVELS.get(rule.severity, "warning")},
            "properties": {"fix": rule.fix_safety},
        }
        for code, rule in rules.items()
    ]
    index = {code: i for i, code in enumerate(rules)}
    results = []
    for finding in findings:
        line_fingerprint = hashlib.sha256(
            f"{finding.code}:{_uri(finding.path, root)}:{finding.message}".encode()).hexdigest()[:32]
        result = {
            "ruleId": finding.code,
            "level": LEVELS.get(finding.severity, "warning"),
            "message": {"text": finding.message},
            "locations": [_location(finding.path, root, _region(finding.location.row, finding.location.column,
                                                                finding.end_location.row,
                                                                finding.end_location.column))],
            "partialFingerprints": {"primaryLocationLineHash": line_fingerprint},
        }
        if finding.code in index:
            result["ruleIndex"] = index[finding.code]
        if finding.cell is not None:
            result["properties"] = {"cell": finding.cell}  # notebooks: the region is within this cell
        if finding.runtime is not None:  # `check --runtime`: the verdict travels with the result
            result.setdefault("properties", {})["runtime"] = finding.runtime
        if finding.related:
            result["relatedLocations"] = [
                {"id": i, **_location(r.path, root, _region(r.location.row, r.location.column), r.message),
                 **({"properties": {"cell": r.cell}} if r.cell is not None else {})}
                for i, r in enumerate(finding.related)
            ]
        results.append(result)
    document = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "modelint", "version": __version__, "semanticVersion": __version__,
                                "informationUri": "https://github.com/modelint/modelint", "rules": descriptors}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(root).as_uri() + "/"}},
            "results": results,
        }],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
