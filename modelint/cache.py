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
import sys
from functools import lru_cache
from pathlib import Path

from modelint import __version__

ENV_VAR = "MODELINT_CACHE_DIR"
DEFAULT_DIR = ".modelint_cache"
_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by modelint.\n"


@lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """The same string in every process that runs the same modelint on the same Python and libcst.

    It hashes modelint's version, the Python version, libcst's version file and the
    *contents* of modelint's own source files (a rule edited in place counts), taken in
    the sorted order of their names inside the package. Neither the order of a `set`
    (which changes with each process's hash seed) nor mtimes take part, so every run
    finds the entries of the previous one and a reinstall of the same code keeps them.
    """
    digest = hashlib.sha256(f"modelint {__version__}\0python {sys.implementation.cache_tag} "
                            f"{'.'.join(map(str, sys.version_info[:3]))}\0".encode())
    for name, path in _source_files():
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    digest.update(_libcst_version())
    return digest.hexdigest()[:16]


def _source_files() -> list[tuple[str, Path]]:
    """(name inside the installed package, file) for every module of modelint, sorted by name.

    `modelint.rules` lives in `rules/` in a checkout and in `modelint/rules/` once
    installed: either way a file is named as the installed package names it, once.
    """
    import modelint.rules as rules

    package = Path(__file__).resolve().parent
    rules_folder = Path(rules.__file__).resolve().parent
    found: dict[str, Path] = {}
    for folder, prefix in ((package, "modelint"), (rules_folder, "modelint/rules")):
        for path in folder.rglob("*.py"):
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            if not name.startswith("modelint/rules/") or folder == rules_folder:
                found[name] = path
    return sorted(found.items())


def _libcst_version() -> bytes:
    """libcst's own version file, read without importing libcst (a cached run never needs it)."""
    from importlib.util import find_spec

    try:
        spec = find_spec("libcst")
        origin = spec.origin if spec is not None else None
        return Path(origin).with_name("_version.py").read_bytes() if origin else b"libcst: none"
    except (OSError, ImportError, ValueError):
        return b"libcst: unknown"


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
        from modelint import atomic  # tempfile comes with it: a run served from the cache writes nothing

        atomic.write_bytes(path, data)
