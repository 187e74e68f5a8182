"""Writing a file so that a reader sees the old bytes or the new ones, never half of each."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None, durable: bool = False) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`.

    `mode`: permission bits for the result (a fixed file keeps the original's);
    `durable`: fsync before the rename (user files; a cache entry can be rebuilt).
    """
    directory = Path(path).parent
    handle, temporary = tempfile.mkstemp(prefix=".modelint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
