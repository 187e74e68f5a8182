"""`# noqa`, `# noqa: MDL001` and file-level `# modelint: noqa`, read as ruff reads them."""

from __future__ import annotations

import re

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)
_FILE_NOQA = re.compile(r"^\s*#\s*modelint\s*:\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?\s*$",
                        re.IGNORECASE | re.MULTILINE)
ALL = "all"


def _codes(text: str | None) -> set[str] | str:
    if not text:
        return ALL
    return {code.upper() for code in re.split(r"[\s,]+", text) if code}


def line_noqa(line: str) -> set[str] | str | None:
    """None: no noqa; ALL: blanket; else the codes it names."""
    if "#" not in line:
        return None
    match = _NOQA.search(line)
    return None if match is None else _codes(match.group("codes"))


def file_noqa(text: str) -> set[str] | str | None:
    found: set[str] | str | None = None
    for match in _FILE_NOQA.finditer(text):
        codes = _codes(match.group("codes"))
        if codes == ALL:
            return ALL
        found = codes if found is None else found | codes
    return found


def covers(noqa: set[str] | str | None, code: str) -> bool:
    return noqa is not None and (noqa == ALL or code in noqa)
