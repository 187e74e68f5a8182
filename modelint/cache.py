"""A per-file result cache, safe for two modelint processes at once.

An entry is the first-phase result of one file (findings + function summaries),
keyed by the file's path and content, the selected rules and a fingerprint of
modelint itself. Cross-file findings are always recomputed from the cached
summaries, so a changed helper is seen by every caller. Entries are written to a
temporary file and renamed into place; an entry that cannot be read is ignored
and rebuilt; a cache folder that cannot be written is simply not used.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from functools import lru_cache
from pathlib import Path

from modelint import __version__, atomic

ENV_VAR = "MODELINT_CACHE_DIR"
DEFAULT_DIR = ".modelint_cache"
_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by modelint.\n"


@lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """modelint's version and the state of its own source files (a rule edited in place counts)."""
    digest = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    import modelint.rules as rules

    for folder in {package, Path(rules.__file__).resolve().parent}:
        for path in sorted(folder.rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class Cache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.folder = self.root / engine_fingerprint()
        self.writable = True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                self._write(tag, _TAG.encode())
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                self._write(ignore, b"# Created by modelint automatically.\n*\n")
        except OSError:
            self.writable = False

    @staticmethod
    def key(path: str, data: bytes, codes: frozenset[str]) -> str:
        digest = hashlib.sha256()
        digest.update(os.path.abspath(path).encode())
        digest.update(b"\0" + ",".join(sorted(codes)).encode() + b"\0")
        digest.update(data)
        return digest.hexdigest()

    def _entry(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.pickle"

    def get(self, key: str):
        try:
            with open(self._entry(key), "rb") as handle:
                return pickle.load(handle)
        except Exception:  # missing, truncated, from another Python: rebuild it
            return None

    def put(self, key: str, value) -> None:
        if not self.writable:
            return
        entry = self._entry(key)
        try:
            entry.parent.mkdir(exist_ok=True)
            self._write(entry, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            self.writable = False

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        atomic.write_bytes(path, data)
