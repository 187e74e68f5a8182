"""`# noqa`, `# noqa: MDL001` and file-level `# modelint: noqa`, read as ruff and flake8 read them.

Case does not matter (`# NOQA`, `# MODELINT: NOQA: mdl005`), as in both; codes are
compared upper-cased.
"""

from __future__ import annotations

import re

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)
# A line of its own; lines end at \n, \r\n or \r (re's MULTILINE `^`/`$` know only \n).
_FILE_NOQA = re.compile(r"(?:^|(?<=[\r\n]))[ \t\f]*#[ \t\f]*modelint[ \t\f]*:[ \t\f]*noqa"
                        r"(?::[ \t\f]*(?P<codes>[A-Z]+[0-9]+(?:[ \t\f,]+[A-Z]+[0-9]+)*))?[ \t\f]*(?=[\r\n]|\Z)",
                        re.IGNORECASE)
ALL = "all"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


def _comment_rows(text: str) -> set[int] | None:
    """Rows holding a real comment (not text inside a string); None if the text cannot be tokenized."""
    import io
    import tokenize

    try:  # newline=None: rows end at \r and \r\n too, as Python's lines do
        return {token.start[0] for token in tokenize.generate_tokens(io.StringIO(text, newline=None).readline)
                if token.type == tokenize.COMMENT}
    except Exception:  # a syntax error: the engine reports it; judge by the text alone
        return None


def file_noqa(text: str) -> set[str] | str | None:
    found: set[str] | str | None = None
    if _FILE_NOQA.search(text) is None:
        return None
    rows = _comment_rows(text)  # a `# modelint: noqa` line inside a docstring is no directive
    for match in _FILE_NOQA.finditer(text):
        if rows is not None and len(_LINE_BREAK.findall(text, 0, text.index("#", match.start()))) + 1 not in rows:
            continue
        codes = _codes(match.group("codes"))
        if codes == ALL:
            return ALL
        found = codes if found is None else found | codes
    return found


def covers(noqa: set[str] | str | None, code: str) -> bool:
    return noqa is not None and (noqa == ALL or code in noqa)
