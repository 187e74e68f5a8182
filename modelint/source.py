"""Reading a file into text, with a clear reason when it cannot be checked."""

from __future__ import annotations

import io
import re
import tokenize

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def physical_lines(text: str, keepends: bool = False) -> list[str]:
    """The lines of `text` as Python numbers them: broken at \\r\\n, \\r and \\n only.

    str.splitlines() also breaks at \\x0b, \\x0c, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029,
    which Python takes for ordinary characters: after one of them, line numbers
    from splitlines() are off by one. A text ending with a line break has no empty
    last line here (as with splitlines()); "" has no lines.
    """
    if keepends:
        lines = [match.group() for match in _LINE_KEEP.finditer(text)]
    else:
        lines = _LINE_BREAK.split(text)
        if lines[-1] == "":
            lines.pop()
    return lines


_LINE_KEEP = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


class UnreadableSource(Exception):
    """The file cannot be checked; `str(self)` says why in one line."""


def decode(data: bytes) -> str:
    if b"\x00" in data:
        raise UnreadableSource("file contains NUL bytes (binary file?)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        if error.msg.startswith("invalid or missing encoding declaration"):
            # No cookie, and the first lines are not UTF-8: say so, not "bad declaration".
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise UnreadableSource(f"file is not valid utf-8: {bad.reason}") from None
        if error.msg.startswith("unknown encoding"):
            # A codec this Python does not have, usually a source transformer such as
            # `# -*- coding: future_fstrings -*-` over plain modern Python: read it as UTF-8 if it is.
            try:
                return data.decode("utf-8").lstrip("\ufeff")
            except UnicodeDecodeError:
                pass
        raise UnreadableSource(f"bad encoding declaration: {error.msg}") from None
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as error:
        reason = error.reason if isinstance(error, UnicodeDecodeError) else str(error)
        raise UnreadableSource(f"file is not valid {encoding}: {reason}") from None
    return text.lstrip("\ufeff")


def read(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise UnreadableSource(f"cannot read file: {error.strerror or error}") from None
    return decode(data)
