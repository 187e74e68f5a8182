"""ruff-style text: `path:line:col: CODE message`, with `note:` lines under a finding."""

from __future__ import annotations

from modelint.finding import Finding


def header(finding: Finding, show_unsafe: bool = False) -> str:
    cell = f"cell {finding.cell}:" if finding.cell is not None else ""
    where = f"{finding.path}:{cell}{finding.location.row}:{finding.location.column}"
    fixable = finding.fix is not None and (finding.fix.applicability == "safe" or show_unsafe)
    return f"{where}: {finding.code}{' [*]' if fixable else ''} {finding.message}"


def full(findings: list[Finding], show_unsafe: bool = False) -> str:
    lines: list[str] = []
    for finding in findings:
        lines.append(header(finding, show_unsafe))
        for related in finding.related:
            cell = f"cell {related.cell}:" if related.cell is not None else ""
            lines.append(f"    note: {related.path}:{cell}{related.location.row}:{related.location.column}: "
                         f"{related.message}")
        if finding.runtime:
            from modelint.runtime import summary_line

            lines.append(f"    {summary_line(finding.runtime)}")
    return "\n".join(lines)


def concise(findings: list[Finding], show_unsafe: bool = False) -> str:
    return "\n".join(header(finding, show_unsafe) for finding in findings)
