"""The project around a flagged file, read as a person reading it would: with `ast`, never imported.

The runtime planner asks where a class is built, where a function is called and what a
module-level constant or an `argparse` default is. It reads the project's files for that
(only files that mention the name it looks for are parsed) and follows imports to tell
which file a name comes from, so that two unrelated scripts that both define a `Net` are
never mixed up. No torch, no user code: this runs in the linting process.
"""

from __future__ import annotations

import ast
import os
import threading
from dataclasses import dataclass, field

_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
_SKIP = frozenset({".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "env", "__pycache__", "node_modules",
                   "build", "dist", ".eggs", "site-packages", ".mypy_cache", ".pytest_cache", ".modelint_cache"})
MAX_FILES = 3000
MAX_BYTES = 2_000_000


def project_root(path: str) -> str:
    """The top package's parent for a file inside packages; else the nearest folder (at most three
    levels up) with a project marker; else the file's own folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(folder, "__init__.py")):
        while os.path.isfile(os.path.join(folder, "__init__.py")):
            folder = os.path.dirname(folder)
        return folder
    probe = folder
    for _ in range(4):
        if any(os.path.exists(os.path.join(probe, marker)) for marker in _MARKERS):
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return folder


@dataclass
class FileIndex:
    """One file's names: imports, module-level definitions and assignments, argparse defaults."""

    path: str
    tree: ast.Module
    imports: dict[str, tuple[str, str | None, int]] = field(default_factory=dict)  # alias -> (module, name, level)
    defs: dict[str, ast.AST] = field(default_factory=dict)  # module-level class/function definitions
    constants: dict[str, ast.expr] = field(default_factory=dict)  # module-level `NAME = value` (last one)
    argparse: dict[str, ast.expr] = field(default_factory=dict)  # dest -> default
    parents: dict[int, ast.AST] = field(default_factory=dict)  # id(node) -> its function or class

    @classmethod
    def build(cls, path: str, tree: ast.Module) -> "FileIndex":
        index = cls(path, tree)
        for node in tree.body:
            index._top(node)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for child in ast.walk(node):
                    if child is not node:
                        index.parents.setdefault(id(child), node)  # ast.walk is breadth-first: the nearest wins
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                index._argparse(node)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
                index._import(node)  # imports inside functions (`def main(): from models import Net`)
        return index

    def _top(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self._import(node)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            self.defs[node.name] = node
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.constants[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
            self.constants[node.target.id] = node.value
        elif isinstance(node, (ast.If, ast.Try)):
            for child in node.body:
                self._top(child)

    def _import(self, node) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.imports.setdefault(alias.asname or alias.name.split(".")[0],
                                        (alias.name if alias.asname else alias.name.split(".")[0], None, 0))
        else:
            for alias in node.names:
                if alias.name != "*":
                    self.imports.setdefault(alias.asname or alias.name, (node.module or "", alias.name, node.level))

    def _argparse(self, call: ast.Call) -> None:
        if call.func.attr == "set_defaults":
            for keyword in call.keywords:
                if keyword.arg:
                    self.argparse[keyword.arg] = keyword.value
            return
        if call.func.attr != "add_argument" or not call.args:
            return
        options = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        keywords = {k.arg: k.value for k in call.keywords if k.arg}
        dest = keywords.get("dest")
        if isinstance(dest, ast.Constant) and isinstance(dest.value, str):
            name = dest.value
        else:
            longs = [o for o in options if o.startswith("--")]
            name = (longs[0] if longs else options[0] if options else "").lstrip("-").replace("-", "_")
        if name.isidentifier() and "default" in keywords:
            self.argparse[name] = keywords["default"]

    def enclosing(self, node: ast.AST) -> ast.AST | None:
        """The innermost function or class around `node`."""
        return self.parents.get(id(node))


# The project's texts and indexes, shared by the planners of one run (one per flagged file).
_SHARED: dict[str, tuple[dict, dict]] = {}
_LOCK = threading.Lock()  # planners run in a thread pool


class Project:
    """The files around one flagged file; parsed on demand, each at most once per run."""

    def __init__(self, flagged_path: str, flagged_tree: ast.Module | None = None) -> None:
        self.flagged = os.path.abspath(flagged_path)
        self.root = project_root(self.flagged)
        # A package's own folder is what is read (not all of site-packages around an installed one).
        self.scanned = self._top_package() or self.root
        with _LOCK:
            if len(_SHARED) > 8:
                _SHARED.clear()
            texts, self._indexes = _SHARED.setdefault(self.scanned, ({}, {}))
        self._texts: dict[str, str] | None = None
        self._shared_texts = texts
        if flagged_tree is not None:
            self._indexes[self.flagged] = FileIndex.build(self.flagged, flagged_tree)

    def _files(self) -> dict[str, str]:
        if self._texts is None:
            with _LOCK:
                if not self._shared_texts:
                    self._walk(self._shared_texts)
            self._texts = self._shared_texts
        if self.flagged not in self._texts:
            self._texts[self.flagged] = ""
        return self._texts

    def _top_package(self) -> str | None:
        folder, top = os.path.dirname(self.flagged), None
        while os.path.isfile(os.path.join(folder, "__init__.py")):
            folder, top = os.path.dirname(folder), folder
        return top

    def _walk(self, texts: dict[str, str]) -> None:
        for folder, dirs, names in os.walk(self.scanned):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
            for name in sorted(names):
                if not name.endswith(".py") or len(texts) >= MAX_FILES:
                    continue
                path = os.path.join(folder, name)
                try:
                    if os.path.getsize(path) > MAX_BYTES:
                        continue
                    with open(path, encoding="utf-8", errors="replace") as handle:
                        texts[path] = handle.read()
                except OSError:
                    continue

    def index(self, path: str) -> FileIndex | None:
        path = os.path.abspath(path)
        if path not in self._indexes:
            text = self._files().get(path)
            if text is None:
                try:
                    with open(path, encoding="utf-8", errors="replace") as handle:
                        text = handle.read()
                except OSError:
                    text = None
            try:
                self._indexes[path] = FileIndex.build(path, ast.parse(text)) if text is not None else None
            except (SyntaxError, ValueError, RecursionError):
                self._indexes[path] = None
        return self._indexes[path]

    def mentioning(self, name: str) -> list[FileIndex]:
        """Indexes of the project's files whose text mentions `name`, the flagged file first."""
        found = [self.index(self.flagged)]
        for path, text in self._files().items():
            if path != self.flagged and name in text:
                found.append(self.index(path))
        return [index for index in found if index is not None]

    # --- which file a name comes from --------------------------------------------------------

    def module_file(self, importer: str, module: str, level: int) -> str | None:
        """The project file that `from <module> import ...` in `importer` reads, if it is one."""
        folder = os.path.dirname(importer)
        if level:
            for _ in range(level - 1):
                folder = os.path.dirname(folder)
            bases = [folder]
        else:
            # A script's own folder first, as Python's sys.path[0]; then the project root and the folders
            # above the importer (namespace packages and `src/` layouts have no __init__.py to follow).
            bases = [folder, self.root]
            for _ in range(4):
                folder = os.path.dirname(folder)
                bases.append(folder)
        parts = [p for p in module.split(".") if p]
        for base in bases:
            stem = os.path.join(base, *parts) if parts else base
            for candidate in (stem + ".py", os.path.join(stem, "__init__.py")):
                if os.path.isfile(candidate):
                    return os.path.abspath(candidate)
        return None

    def definition(self, index: FileIndex, name: str, depth: int = 0) -> tuple[FileIndex, ast.AST] | None:
        """Where `name`, as `index`'s file sees it, is defined in the project: (file, def or value)."""
        if name in index.defs:
            return index, index.defs[name]
        if name in index.constants:
            return index, index.constants[name]
        if name in index.imports and depth < 6:
            module, original, level = index.imports[name]
            if original is None:
                return None
            target = self.module_file(index.path, module, level)
            other = self.index(target) if target else None
            return None if other is None else self.definition(other, original, depth + 1)
        return None

    def refers_to(self, index: FileIndex, expr: ast.expr, home: str, name: str) -> bool:
        """Does `expr` (a callee in `index`'s file) name the definition `name` of file `home`?"""
        if isinstance(expr, ast.Name):
            found = self.definition(index, expr.id)
            return found is not None and found[0].path == home and getattr(found[1], "name", None) == name
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.attr == name:
            imported = index.imports.get(expr.value.id)
            if imported is None:
                return False
            module, original, level = imported
            target = self.module_file(index.path, f"{module}.{original}" if original else module, level)
            return target == home
        return False

    def calls_of(self, home: str, name: str) -> list[tuple[FileIndex, ast.Call]]:
        """Calls, anywhere in the project, of the function or class `name` defined in file `home`."""
        found = []
        for index in self.mentioning(name):
            for node in ast.walk(index.tree):
                if isinstance(node, ast.Call) and self.refers_to(index, node.func, home, name):
                    found.append((index, node))
        return found
