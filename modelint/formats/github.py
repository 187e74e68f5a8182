"""GitHub Actions workflow commands: findings become annotations on the pull request."""

from __future__ import annotations

from modelint.finding import Finding


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        command = "error" if f.severity == "error" else "warning"
        properties = (f"file={_escape_property(f.path)},line={f.location.row},col={f.location.column},"
                      f"endLine={f.end_location.row},endColumn={f.end_location.column},"
                      f"title={_escape_property(f'{f.code} ({f.name})')}")
        message = f"{f.code} {f.message}"
        if f.runtime:  # an annotation has room for a second line: the runtime verdict
            from modelint.runtime import summary_line

            message += "\n" + summary_line(f.runtime)
        lines.append(f"::{command} {properties}::{_escape_data(message)}")
    return "\n".join(lines)
