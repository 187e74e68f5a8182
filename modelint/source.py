"""Reading a file into text, with a clear reason when it cannot be checked."""

from __future__ import annotations

import io
import tokenize


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
