"""The order a run first analyses its files in: a file after the files it imports from.

A file that calls a helper, builds a class or subclasses a base of another file of the run is
analysed with the project index of the files analysed before it (modelint.summary.ProjectIndex):
when its helpers' files came first, that one analysis is its last, where analysing every file
blind and then again with the index would analyse most files of a package twice. The order is
read from the import lines alone, before anything is parsed; it only decides what is known when,
never what is found: a file whose questions to the index get other answers once every file is
known is analysed again (modelint.asked).

The waves: files of one wave are analysed together, each with the index of the earlier waves.
Wave 0 holds the files that import nothing of the run, and the files naming no torch (checked for
syntax only, they need no index). A file naming no torch comes back in the wave of its depth: it is
analysed in full there if the index knows what it imports (a script building a project's model),
and one whose functions other files call is summarised as a helper before its callers
(modelint.runner).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from modelint import limits, source
from modelint.relevance import names_torch
from modelint.summary import FileSummary, ProjectIndex

# `from .a import (b, c as d)`, `import a.b, c`: the code of a file, strings and comments blanked (limits.code_only).
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([.\w]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n]*)", re.M)
_IMPORTED_NAME = re.compile(r"([A-Za-z_]\w*)(?:[ \t]+as[ \t]+([A-Za-z_]\w*))?")
# `if TYPE_CHECKING:` and the block under it: imports for annotations only, which often close a cycle (a base
# class's file naming the model class that builds it); the order leaves them out.
_TYPE_CHECKING_BLOCK = re.compile(r"^([ \t]*)if[ \t]+(?:typing\.)?TYPE_CHECKING[ \t]*:[^\n]*\n(?:\1[ \t]+[^\n]*\n|[ \t]*\n)*",
                                  re.M)
_TOP_LEVEL_FUNCTION = re.compile(r"^(?:async[ \t]+)?def[ \t]+(\w+)", re.M)
_MOST_HOPS = 4  # package `__init__`s followed from an import to the module that defines the name
SMALLEST_WAVE = 4  # a wave with fewer files is analysed with the next one (each wave ends with idle workers)


@dataclass
class Wave:
    files: list[int] = field(default_factory=list)  # positions in the run's paths: each file's own analysis
    helpers: list[int] = field(default_factory=list)  # files naming no torch, summarised for later waves
    # Files naming no torch (checked for syntax in wave 0) whose imports are all analysed by now: the ones the
    # index answers are analysed in full here, before the files importing them (modelint.runner).
    naming_no_torch: list[int] = field(default_factory=list)


@dataclass
class _Imports:
    """What one file's import lines say."""

    pairs: list[tuple[str, str | None]]  # (module, name imported from it, None for `import module`)
    for_annotations: list[tuple[str, str | None]]  # the same, under `if TYPE_CHECKING:`
    bound: dict[str, tuple[str, str]]  # name bound here -> (module, name): what a package's `__init__` re-exports
    functions: set[str]  # its top-level functions
    relevant: bool  # does its code name torch (modelint.engine's test: else it is checked for syntax only)?


def waves(paths: list[str], smallest: int | None = None, map_files=map) -> list[Wave]:
    """The run's files (`paths`) in waves, notebooks by their code cells' imports. A file that cannot be read goes
    in wave 0: the engine says why. `map_files(function, paths)` reads the files (a pool's map: they are read
    and scanned on every core)."""
    absolute = [os.path.abspath(path) for path in paths]
    scans = dict(zip(absolute, map_files(scan_imports, absolute)))
    resolver = _Resolver(absolute, paths, scans)
    # A file naming no torch depends on nothing for its own analysis; one whose functions another file imports is
    # a helper, summarised with the index before that file.
    helpers = resolver.called_helpers()
    # (a package's `__init__` depends on nothing: it re-exports its modules, and the files importing through it
    # need its summary, to follow the names it binds, as much as the modules it names)
    ordered = [path for path in absolute if scans[path] is not None and os.path.basename(path) != "__init__.py"]
    edges = {path: set() for path in absolute}
    edges.update((path, resolver.dependencies(scans[path].pairs, path)) for path in ordered)
    # An import for annotations orders two files only where they do not import each other otherwise: it often
    # closes a cycle (a base class's file naming, for its annotations, the model file that subclasses it).
    for_annotations = {path: resolver.dependencies(scans[path].for_annotations, path) for path in ordered}
    component = _components(absolute, {path: edges[path] | for_annotations.get(path, set()) for path in absolute})
    for path in ordered:
        edges[path] |= {w for w in for_annotations[path] if component[w] != component[path]}
    level = _levels(absolute, edges, helpers)
    merged = _merge_small(level, absolute, SMALLEST_WAVE if smallest is None else smallest)
    out = [Wave() for _ in range(max(merged.values(), default=0) + 1)]
    for i, path in enumerate(absolute):
        scan = scans[path]
        if scan is None or not scan.relevant:
            out[0].files.append(i)
            if scan is not None and merged[path]:
                out[merged[path]].naming_no_torch.append(i)
            if path in helpers:
                out[max(1, merged[path])].helpers.append(i)
        else:
            out[merged[path]].files.append(i)
    return [wave for wave in out if wave.files or wave.helpers or wave.naming_no_torch]


def scan_imports(path: str) -> _Imports | None:
    """What the import lines of the file `path` say; None when it is not a Python file or cannot be read."""
    try:
        if path.endswith(".ipynb"):  # (its code cells: a notebook building a project's model comes after it)
            code = limits.code_only("\n".join(line for cell in _notebook_cells(path) if cell for line in cell))
        elif path.endswith(".py"):
            code = limits.code_only(source.read(path))
        else:
            return None
    except (source.UnreadableSource, ValueError, UnicodeDecodeError, AttributeError, TypeError, OSError):
        return None
    pairs: list[tuple[str, str | None]] = []
    bound: dict[str, tuple[str, str]] = {}
    _imports(code, pairs, bound)
    for_annotations: list[tuple[str, str | None]] = []
    if "TYPE_CHECKING" in code:
        # (what a package's `__init__` binds there, it re-exports all the same)
        for block in _TYPE_CHECKING_BLOCK.finditer(code):
            _imports(block.group(0), for_annotations, bound)
        annotation_only = set(for_annotations)
        pairs = [pair for pair in pairs if pair not in annotation_only]
    return _Imports(pairs, for_annotations, bound, set(_TOP_LEVEL_FUNCTION.findall(code)), names_torch(code))


def _notebook_cells(path: str) -> list:
    from modelint.notebook import code_cells

    with open(path, "rb") as handle:
        return code_cells(handle.read())


def _imports(code: str, pairs: list[tuple[str, str | None]], bound: dict[str, tuple[str, str]]) -> None:
    for found in _FROM_IMPORT.finditer(code):
        module = found.group(1)
        for name in _IMPORTED_NAME.finditer(found.group(2).strip("()")):
            if name.group(1) != "_":  # (a comment, blanked)
                pairs.append((module, name.group(1)))
                bound[name.group(2) or name.group(1)] = (module, name.group(1))
    for found in _IMPORT.finditer(code):
        for part in found.group(1).split(","):
            words = part.split()
            if words:
                pairs.append((words[0], None))


class _Resolver:
    """The files of the run an import may mean, as the project index would find them."""

    def __init__(self, absolute: list[str], paths: list[str], scans: dict[str, _Imports | None]) -> None:
        self.index = ProjectIndex([FileSummary(path) for path in paths])
        self.scans = scans
        self.absolute = absolute
        self._targets: dict[tuple, set[str]] = {}

    def targets(self, module: str, name: str | None, from_path: str, hops: int = 0) -> set[str]:
        """The files defining `name` of `module`: a submodule of that name, else the module's files and, where one
        is a package's `__init__` that re-exports the name, the module it comes from."""
        # (the same for every file of a folder: many import the same names)
        key = (module, name, os.path.dirname(from_path), hops)
        found = self._targets.get(key)
        if found is None:
            found = self._targets[key] = self._find_targets(module, name, from_path, hops)
        return found

    def _find_targets(self, module: str, name: str | None, from_path: str, hops: int) -> set[str]:
        if name is not None:
            submodule = f"{module}{name}" if not module.strip(".") else f"{module}.{name}"
            found = self._files(submodule, from_path)
            if found:
                return found
        out: set[str] = set()
        for path in self._files(module, from_path):
            scan = self.scans.get(path)
            onward = scan.bound.get(name) if scan is not None and name is not None else None
            out.add(path)
            if onward is not None and path.endswith("__init__.py") and hops < _MOST_HOPS:
                out |= self.targets(*onward, path, hops + 1)
        return out

    def _files(self, module: str, from_path: str) -> set[str]:
        return {os.path.abspath(summary.path) for summary in self.index._candidates(module, from_path)}

    def dependencies(self, pairs: list[tuple[str, str | None]], path: str) -> set[str]:
        out: set[str] = set()
        for module, name in pairs:
            out |= self.targets(module, name, path)
        out.discard(path)
        return out

    def called_helpers(self) -> set[str]:
        """Files naming no torch, one of whose top-level functions another file of the run imports."""
        out: set[str] = set()
        for path in self.absolute:
            scan = self.scans[path]
            for module, name in scan.pairs if scan is not None else ():
                if name is None:
                    continue
                for found in self.targets(module, name, path):
                    defining = self.scans.get(found)
                    if found != path and defining is not None and not defining.relevant \
                            and name in defining.functions:
                        out.add(found)
        return out


def _levels(paths: list[str], edges: dict[str, set[str]], helpers: set[str]) -> dict[str, int]:
    """Each file's depth: one more than the deepest file it imports, files importing one another (a cycle) at the
    same depth; a helper at depth 1 at least (it is summarised with an index, after wave 0)."""
    component = _components(paths, edges)
    members: dict[int, list[str]] = {}
    for path in paths:
        members.setdefault(component[path], []).append(path)
    depth: dict[int, int] = {}
    for number in range(len(members)):  # (numbered dependencies first, see _components)
        group = members[number]
        below = [depth[component[w]] + 1 for v in group for w in edges[v] if component[w] != number]
        depth[number] = max(below, default=0)
        if any(v in helpers for v in group):
            depth[number] = max(depth[number], 1)
    return {path: depth[component[path]] for path in paths}


def _components(paths: list[str], edges: dict[str, set[str]]) -> dict[str, int]:
    """Strongly connected components (Tarjan's, without recursion), numbered so that a component comes after
    every component it has an edge to."""
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    component: dict[str, int] = {}
    count = 0
    for root in paths:
        if root in number:
            continue
        work = [(root, iter(sorted(edges[root])))]
        number[root] = low[root] = len(number)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in number:
                    number[child] = low[child] = len(number)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], number[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == number[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = count
                    if member == node:
                        break
                count += 1
    return component


def _merge_small(level: dict[str, int], paths: list[str], smallest: int) -> dict[str, int]:
    """Depths renumbered as waves: a depth with fewer than `smallest` files joins the next one (the last
    joins the one before); depth 0 stays apart, analysed without an index."""
    counts: dict[int, int] = {}
    for path in paths:
        counts[level[path]] = counts.get(level[path], 0) + 1
    wave_of: dict[int, int] = {0: 0}
    wave, gathered = 1, 0
    depths = sorted(d for d in counts if d > 0)
    for depth in depths:
        wave_of[depth] = wave
        gathered += counts[depth]
        if gathered >= smallest:
            wave, gathered = wave + 1, 0
    if depths and 0 < gathered < smallest and wave > 1:
        for depth in depths:
            if wave_of[depth] == wave:
                wave_of[depth] = wave - 1
    return {path: wave_of[level[path]] for path in paths}
