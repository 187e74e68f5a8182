"""Which files to check: explicit paths, folders walked with excludes and .gitignore."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: with typing_extensions it costs ~50 ms, which one named file never needs
    import pathspec

from modelint.config import ConfigResolver, Settings

PYTHON_SUFFIXES = (".py", ".pyi", ".ipynb")


@dataclass
class Discovered:
    files: list[str]
    errors: list[tuple[str, str]]  # (path, why) for paths that do not exist / cannot be listed


def _exclude_spec(settings: Settings) -> pathspec.PathSpec:
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines((*settings.exclude, *settings.extend_exclude))


# By the patterns themselves, not by the settings' id: a long-lived process (the LSP server) may read a new
# configuration into an object at the address of an old one.
_SPEC_CACHE: dict[tuple[tuple[str, ...], tuple[str, ...]], pathspec.PathSpec] = {}


def is_excluded(path: Path, settings: Settings, below: Path | None = None) -> bool:
    """Does an exclude pattern match `path`?

    `below`: a folder given on the command line. As in ruff, naming an excluded
    folder explicitly checks it: only what lies below it is matched (against the
    path from that folder on), so `exclude = ["fixtures"]` does not hide
    `fixtures/a.py` from `modelint check fixtures/`.
    """
    patterns = (settings.exclude, settings.extend_exclude)
    spec = _SPEC_CACHE.get(patterns)
    if spec is None:
        spec = _SPEC_CACHE[patterns] = _exclude_spec(settings)
    absolute = Path(os.path.abspath(path))
    root = settings.root
    if below is not None and _excluded_folder(below, settings):
        root = below
    try:
        relative = absolute.relative_to(root).as_posix()
    except ValueError:
        relative = absolute.as_posix().lstrip("/")
    if os.path.isdir(absolute):
        relative += "/"
    return spec.match_file(relative) or spec.match_file(absolute.name + ("/" if relative.endswith("/") else ""))


_FOLDER_CACHE: dict[tuple[Settings, Path], bool] = {}


def _excluded_folder(folder: Path, settings: Settings) -> bool:
    """is_excluded for a folder named on the command line, asked once per file below it: kept."""
    key = (settings, folder)
    found = _FOLDER_CACHE.get(key)
    if found is None:
        found = _FOLDER_CACHE[key] = is_excluded(folder, settings)
    return found


def _gitignore(directory: Path) -> pathspec.PathSpec | None:
    path = directory / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _parent_gitignores(directory: Path) -> list[tuple[Path, pathspec.PathSpec]]:
    """.gitignore files above `directory` up to the repository root."""
    found: list[tuple[Path, pathspec.PathSpec]] = []
    current = directory
    while True:
        parent = current.parent
        if os.path.exists(current / ".git") or parent == current:
            break
        current = parent
        spec = _gitignore(current)
        if spec is not None:
            found.append((current, spec))
    found.reverse()
    return found


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, pathspec.PathSpec]]) -> bool:
    ignored = False
    for base, spec in specs:
        try:
            relative = path.relative_to(base).as_posix()
        except ValueError:
            continue
        result = spec.check_file(relative + ("/" if is_dir else ""))
        if result.include is not None:
            ignored = result.include
    return ignored


def _is_venv(directory: Path) -> bool:
    # os.path, not Path: Path.is_file() raises PermissionError in a folder we may not search.
    return os.path.isfile(directory / "pyvenv.cfg")


def discover(paths: list[str], resolver: ConfigResolver, force_exclude: bool = False) -> Discovered:
    files: list[str] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        # The real path: a file reached twice (named and walked, or through a folder link) is linted once.
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            files.append(path)

    def fail(path: str, why: str) -> None:
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            errors.append((path, why))

    for raw in paths:
        path = Path(raw)
        if not os.path.lexists(raw):
            fail(raw, "no such file or directory")
            continue
        if os.path.isdir(raw):
            settings = resolver.for_dir(path)
            if force_exclude and is_excluded(path, settings):
                continue
            _walk(path, raw, resolver, add, fail)
        elif os.path.exists(raw):
            if force_exclude:
                settings = resolver.for_file(path)
                if is_excluded(path, settings) or any(
                    is_excluded(parent, settings) for parent in Path(os.path.abspath(path)).parents
                    if _is_below(parent, settings.root)
                ):
                    continue
            add(raw)
        else:
            fail(raw, _dangling(raw))
    return Discovered(files, errors)


def _dangling(path: str) -> str:
    """Why a path that exists as a name cannot be followed: a broken link or a link loop."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno != errno.ENOENT:
            return f"cannot read file: {error.strerror or error}"
    return "broken symbolic link"


def _is_below(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return path != root


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk(start: Path, shown: str, resolver: ConfigResolver, add, fail) -> None:
    absolute_start = Path(os.path.abspath(start))
    real_start = os.path.realpath(absolute_start)
    base_specs = _parent_gitignores(absolute_start)
    visited: set[tuple[int, int]] = set()

    def walk(directory: Path, display: str, specs) -> None:
        try:
            stat = directory.stat()
        except OSError as error:
            fail(display, f"cannot read folder: {error.strerror or error}")
            return
        identity = (stat.st_dev, stat.st_ino)
        if identity in visited:  # a symlink loop
            return
        visited.add(identity)
        settings = resolver.for_dir(directory)
        own = _gitignore(directory) if settings.respect_gitignore else None
        if own is not None:
            specs = [*specs, (directory, own)]
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as error:
            fail(display, f"cannot read folder: {error.strerror or error}")
            return
        for entry in entries:
            child = directory / entry.name
            child_display = os.path.normpath(os.path.join(display, entry.name))
            try:
                is_dir = entry.is_dir()
            except OSError:  # a symbolic link loop: report it if it looks like a file to check
                is_dir = False
            if is_dir:
                if entry.name.startswith(".") or _is_venv(child) or is_excluded(child, settings, absolute_start):
                    continue
                if entry.is_symlink() and _inside(os.path.realpath(child), real_start):
                    continue  # (`probing/src -> ../src`: linted under its real name, where the walk finds it too)
                if settings.respect_gitignore and _ignored(child, True, specs):
                    continue
                walk(child, child_display, specs)
            elif entry.name.endswith(PYTHON_SUFFIXES):
                if is_excluded(child, settings, absolute_start):
                    continue
                if settings.respect_gitignore and _ignored(child, False, specs):
                    continue
                if entry.is_symlink() and not os.path.exists(child):
                    fail(child_display, _dangling(str(child)))
                    continue
                add(child_display)

    walk(absolute_start, shown.rstrip("/") or shown, base_specs)
