"""ruff-style text: `path:line:col: CODE message`, with `note:` lines under a finding."""

from __future__ import annotations

from modelint.finding import Finding


def header(finding: Finding) -> str:
    where = f"{finding.path}:{finding.location.row}:{finding.location.column}"
    return f"{where}: {finding.code} {finding.message}"


def full(findings: list[Finding]) -> str:
    lines: list[str] = []
    for finding in findings:
        lines.append(header(finding))
        for related in finding.related:
            lines.append(f"    note: {related.path}:{related.location.row}:{related.location.column}: {related.message}")
    return "\n".join(lines)


def concise(findings: list[Finding]) -> str:
    return "\n".join(header(finding) for finding in findings)
