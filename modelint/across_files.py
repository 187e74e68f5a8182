"""A run across files: which file is analysed when, with which project index.

The first phase analyses every file once, in import order (modelint.import_order), each wave with
the summaries of the earlier ones. The second phase analyses a file again only where the finished
index answers otherwise what its analysis asked (modelint.asked), or, for a file analysed without
an index, where the index now knows what it calls; a few rounds at most, since an analysis again
may change what its own summary says. Helpers in files the run was not given, or that name no
torch, are summarised on the way. The runner (modelint.runner) calls `first_phase` and
`follow_calls_across_files`; everything else here is theirs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from modelint.asked import canonical, same_answers
from modelint.finding import FileResult
from modelint.import_order import Wave, waves
from modelint.registry import FLOW_RULES
from modelint.summary import FileSummary, ProjectIndex
from modelint.workers import Workers


@dataclass
class CacheStats:
    """What the cache saved in one run, counted over both phases and the helper files."""

    hits: int = 0  # results served from the cache
    analysed: int = 0  # results the engine computed in this run
    folder: str | None = None  # the fingerprint folder in use; None without a cache

    def count(self, results: list[FileResult]) -> None:
        for result in results:
            if result.cached:
                self.hits += 1
            else:
                self.analysed += 1

    @property
    def hit_rate(self) -> float:
        return self.hits / (self.hits + self.analysed) if self.hits + self.analysed else 1.0


def _dependencies_digest(result: FileResult, index: ProjectIndex) -> bytes:
    """What a file's second-phase result depends on besides its own text: the helpers it reaches."""
    import hashlib
    import pickle

    # (a file naming no torch has no summary of its own: the one it got as a helper says what it asks)
    summary = result.summary or index.files[os.path.abspath(result.path)]
    resolved = []
    for ref in sorted(summary.unresolved):
        resolved.append((ref, index.resolve(ref, result.path), index.resolve_class(ref, result.path),
                         index.names_function(ref, result.path), index.resolve_shape(ref, result.path)))
    for ref in sorted(summary.asked_classes):
        # (and how mode-dependent it is: a base in another file that the index settles in a later round)
        resolved.append((ref, index.resolve_shape(ref, result.path), index.resolve_class(ref, result.path)))
    for ref in sorted(summary.unresolved | summary.asked_classes):
        if index.resolve_shape(ref, result.path) is not None:
            # (and the bases of a base, which may live in a third file a later batch summarises)
            resolved.append((ref, list(index.bases_of([(ref, result.path)]))))
        # (a model class, or a factory, that needs input gradients through a layer of a third file)
        resolved.append((ref, index.needs_input_gradients(ref, result.path)))
    for name in sorted(summary.asked_submodules):
        resolved.append((name, index.submodule_dependence(name)))
    for asked in sorted(summary.asked_handed):  # (`evaluate|model|0|predict`: the class handed, its method)
        function, param, position, method = asked.split("|")
        handed = index.class_handed(result.path, function, param, int(position))
        resolved.append((asked, handed, index.resolve(f"{handed[0]}.{method}", handed[1]) if handed else None))
    # Sets are pickled in hash order, which changes with every process's hash seed: sort them first.
    return hashlib.sha256(pickle.dumps(canonical(resolved))).hexdigest().encode()


_MOST_ROUNDS = 3  # analyses of a file with what other files' helpers do


def _lint_all(work, workers: Workers, index=None, cache_dir: str | None = None) -> list[FileResult]:
    return workers.lint(work, index, cache_dir)


_WITH_EARLIER_WAVES = b"analysed with the index of the earlier waves"


def first_phase(work, workers: Workers, cache_dir: str | None) -> tuple[list[FileResult], list[FileResult]]:
    """Every file analysed once, in import order (modelint.import_order): the files of each wave with the index
    of the earlier waves' summaries. Returns each file's result, and the results of the files naming no torch
    that were summarised as helpers on the way."""
    plan = waves([path for path, _ in work], map_files=workers.map) if len(work) > 1 else [Wave(list(range(len(work))))]
    results: list[FileResult | None] = [None] * len(work)
    helpers: dict[int, FileResult] = {}
    for number, wave in enumerate(plan):
        index = ProjectIndex(_summaries_so_far(results, helpers)) if number else None
        # (a result analysed with an index is kept in the cache apart from one analysed without, and served
        # again only if its questions get the same answers: modelint.workers.cached_results)
        salt = (_WITH_EARLIER_WAVES,) if number else ()
        # (a file naming no torch that imports what the index knows, as the second phase would find it: analysed
        # in full now, its summary standing for the helper's, before the files importing it)
        full = [i for i in wave.naming_no_torch if _index_answers(results[i], index)] if number else []
        summarised = [i for i in wave.helpers if i not in full]
        jobs = [(*work[i], *salt) for i in (*wave.files, *full)] \
            + [(work[i][0], FLOW_RULES, _WITH_EARLIER_WAVES) for i in summarised]
        analysed = _lint_all(jobs, workers, index, cache_dir)
        for i, result in zip((*wave.files, *full), analysed):
            if results[i] is not None and result.summary is not None:
                result.summary = _with_first_references(result.summary, results[i].summary)
            results[i] = result
        for i, result in zip(summarised, analysed[len(wave.files) + len(full):]):
            helpers[i] = result
    return results, [helpers[i] for i in sorted(helpers)]


def _summaries_so_far(results: list[FileResult | None], helpers: dict[int, FileResult]) -> list[FileSummary]:
    """The summaries of the files analysed so far: a file summarised as a helper by its helper summary, which
    still records what the file imports."""
    out = []
    for i, result in enumerate(results):
        if i in helpers:
            if helpers[i].summary is not None:
                out.append(_with_first_references(helpers[i].summary, result.summary if result else None))
        elif result is not None and result.summary is not None:
            out.append(result.summary)
    return out


def follow_calls_across_files(results: list[FileResult], work, workers: Workers,
                               cache_dir: str | None = None, stats: CacheStats | None = None,
                               helpers: list[FileResult] = ()) -> tuple[list[FileResult], ProjectIndex]:
    """Second phase: re-lint the files that call helpers of other files with what those helpers do.

    The first phase gave every file's function summaries, most of them analysed with the
    summaries of the files they import from; only the files whose questions to the index
    now get other answers, and the files analysed without an index that call what the
    index now resolves, are analysed again.
    """
    summaries = [r.summary for r in results if r.summary is not None]
    if not helpers and not any(s.unresolved or s.asked_classes or s.asked_submodules or s.asked_handed
                               for s in summaries):
        return results, ProjectIndex(summaries)
    stats = stats if stats is not None else CacheStats()
    rounds = _Rounds(results, work, workers, cache_dir, stats)
    first = {os.path.abspath(summary.path): summary for summary in summaries}
    rounds.helper_summaries = [_with_first_references(r.summary, first.get(os.path.abspath(r.path)))
                               for r in helpers if r.summary is not None]
    summaries = [s for s in summaries if os.path.abspath(s.path) not in rounds.redone] + rounds.helper_summaries
    index = ProjectIndex(summaries)
    extra = _helper_files(summaries, index)
    if extra:
        # Helpers in files that were not asked for (pre-commit passes only changed files, and a file naming no
        # torch is read for its imports only) are summarised first, without reporting on them: the files that
        # call them are analysed once, with what they do (a logger factory every model file calls, in a
        # utility module naming no torch), instead of once without and again with it.
        # (with the index: a helper file that never names torch, `class IModel(ABC)`, is analysed all the
        # same, for the class shapes other files asked about)
        _, more = rounds.run(set(), index, extra)
        # (what a file read only for its imports imports stays recorded: a package's `__init__` re-exports it)
        rounds.helper_summaries += [_with_first_references(r.summary, first.get(os.path.abspath(r.path)))
                                    for r in more if r.summary is not None]
        index = rounds.index()
    if not _usable(list(index.files.values())):
        return results, index  # nothing anywhere that another file could use
    again = _analysed_again(results, index)
    if not again:
        return results, index
    first = _definers_first(again, rounds.results, index)
    if first and len(first) < len(again):
        rounds.run(first, index)
        index = rounds.index()
    for _round in range(_MOST_ROUNDS):
        # A file analysed again may say more of its helpers (a factory returning a class of a third file, which
        # it now sees): the files whose helpers' summaries changed are analysed once more, a few rounds at most.
        analysed, _ = rounds.run(again, index)
        if not analysed:
            break
        index = rounds.index()
        # (and the files its new summary answers: a class of a file that names no torch, first read for its
        # imports only, whose inherited `predict()` another file calls)
        again |= _analysed_again(rounds.results, index)
    return rounds.results, index


def _definers_first(again: set[str], results: list[FileResult], index: ProjectIndex) -> set[str]:
    """The files of `again` that other files of `again` call or subclass from (a package's base classes and
    utilities): analysed first, the files that use them then see their new summaries, and are analysed
    once instead of twice."""
    by_path = {os.path.abspath(r.path): r for r in results}
    return {defining for path in again if by_path[path].summary is not None
            for defining in _definers(by_path[path], again, index)}


def _definers(result: FileResult, again: set[str], index: ProjectIndex) -> set[str]:
    """The files of `again` that what `result`'s file calls or subclasses may be defined in."""
    path = os.path.abspath(result.path)
    out: set[str] = set()
    for ref in result.summary.unresolved | result.summary.asked_classes:
        module = ref.rpartition(".")[0]
        # (`base.Base.predict`, a method: the module is the one before the class)
        for named in (module, _enclosing_module(module)):
            if named:
                out.update(os.path.abspath(s.path) for s in index._candidates(named, result.path))
    out.discard(path)
    return out & again


def _enclosing_module(module: str) -> str:
    """The module one level up, as imported: `a.b` -> `a`, `..a.b` -> `..a`, `..a` -> `..`; `a` -> ``."""
    dots = len(module) - len(module.lstrip("."))
    rest = module[dots:]
    if not rest:
        return ""
    return module[:dots] + rest.rpartition(".")[0] if "." in rest else module[:dots]


def _usable(summaries: list[FileSummary]) -> bool:
    """Is there anything in these summaries that another file could use?"""
    return any(s.functions or s.classes or s.shapes for s in summaries)


def _helper_files(summaries: list[FileSummary], index: ProjectIndex) -> list[tuple[str, frozenset[str]]]:
    """The files, not analysed yet, that hold helpers some file asked about (with the rules that summarise)."""
    known = {path for path, summary in index.files.items() if not summary.syntax_only}
    extra: list[tuple[str, frozenset[str]]] = []
    # The files a module name may mean depend on the module and the asking file's folder only (many files of
    # a folder import the same modules): each is looked up on disk once.
    looked_up: dict[tuple[str, str], list[str]] = {}
    for summary in summaries:
        for ref in summary.unresolved | summary.asked_classes:
            if index.imports_a_nested_namesake(ref, summary.path) or (
                    index.resolve(ref, summary.path) is None and index.resolve_class(ref, summary.path) is None
                    and _shape_unread(index, ref, summary.path)):
                place = (ref.rpartition(".")[0], os.path.dirname(os.path.abspath(summary.path)))
                candidates = looked_up.get(place)
                if candidates is None:
                    candidates = looked_up[place] = _module_files(ref, summary.path)
                for candidate in candidates:
                    read = index.files.get(os.path.abspath(candidate))
                    owner, _, name = ref.rpartition(".")
                    if read is not None and name not in read.plain_functions and name not in read.shapes \
                            and owner.rpartition(".")[2] not in read.shapes:
                        # (read for its imports only, and no function, class or method of a class of it
                        # (`Reporter.attach(model, sink)`) is asked for)
                        continue
                    # (a file of the run keeps the run's spelling of its path: its summaries, which name it, are
                    # the same when it is analysed again with the run's files, and no caller is sent back for it)
                    candidate = read.path if read is not None else candidate
                    if os.path.abspath(candidate) not in known:
                        known.add(os.path.abspath(candidate))
                        extra.append((candidate, FLOW_RULES))
    return extra


def _shape_unread(index: ProjectIndex, ref: str, path: str) -> bool:
    """Does the index know no shape for the class `ref` names, or only the bare one a file naming no torch
    gives (its plain classes, read for syntax: `class Predictor:` whose `predict()` runs the network it holds)?"""
    found = index.resolve_shape(ref, path)
    return found is None or index.files[os.path.abspath(found[1])].syntax_only


def _analysed_again(results: list[FileResult], index: ProjectIndex) -> set[str]:
    """The files (absolute paths) analysed with an index whose questions now get other answers, and the files
    analysed without one that call or ask about what the index knows of other files."""
    return {os.path.abspath(r.path) for r in results
            if (not same_answers(r.asked, index) if r.asked is not None else _index_answers(r, index))}


def _index_answers(r: FileResult, index: ProjectIndex) -> bool:
    """Does the index know something a file analysed without it referred to?"""
    return r.summary is not None and (any(
        index.resolve(ref, r.path) is not None or index.resolve_class(ref, r.path) is not None
        or (not r.summary.syntax_only and (index.names_function(ref, r.path)
                                           or index.resolve_shape(ref, r.path) is not None))
        for ref in r.summary.unresolved
    ) or any(_base_may_matter(index, ref, r.path) if r.summary.syntax_only else index.resolve_shape(ref, r.path)
             is not None for ref in r.summary.asked_classes)
        or any(index.submodule_dependence(name) is not None for name in r.summary.asked_submodules)) \
        or _handed_classes_answer(r.path, index)


def _base_may_matter(index: ProjectIndex, reference: str, path: str) -> bool:
    """Is the project class that a class of a file naming no torch subclasses (`reference`) a module, or a
    template whose methods switch a model's mode (`self.model.eval()`, then a hook the subclass writes)? Only
    then may that file's own code matter (a configuration's or a tokenizer's base does not)."""
    if index.resolve_class(reference, path) is not None:
        return True
    found = index.resolve_shape(reference, path)
    return found is not None and bool(found[0].switches)


class _Rounds:
    """The analyses of files again with the index: each file's latest result, and the salt (its dependencies'
    digest) it was analysed with, so that a file is analysed again only when what it depends on changed."""

    def __init__(self, results: list[FileResult], work, workers: Workers, cache_dir: str | None,
                 stats: CacheStats) -> None:
        self.results = results
        self.work, self.workers, self.cache_dir, self.stats = work, workers, cache_dir, stats
        self.salts: dict[str, bytes] = {}
        self.relinted: set[str] = set()  # files analysed again here, with a summary
        self.helper_summaries: list[FileSummary] = []  # of the files summarised again as helpers

    def run(self, again: set[str], index: ProjectIndex, helpers: list[tuple] = ()) -> tuple[bool, list[FileResult]]:
        """Analyse the files of `again` whose dependencies changed since their last analysis, and the `helpers`
        jobs in the same batch: (was anything analysed, the helpers' results)."""
        current = {os.path.abspath(r.path): r for r in self.results}
        # (a file analysed with an index already is analysed again only if a question it asked there gets
        # another answer now: its helpers' summaries may have changed where it never looks)
        changed = {path: digest for path in sorted(again)
                   if (current[path].summary is not None or path in index.files)
                   and (digest := _dependencies_digest(current[path], index)) != self.salts.get(path)
                   and not same_answers(current[path].asked, index)}
        if not changed and not helpers:
            return False, []
        self.salts.update(changed)
        redo = [(path, codes, changed[os.path.abspath(path)]) for path, codes in self.work
                if os.path.abspath(path) in changed]
        analysed = _lint_all([*helpers, *redo], self.workers, index, self.cache_dir)
        self.stats.count(analysed)
        helper_results, again_results = analysed[:len(helpers)], analysed[len(helpers):]
        for result in again_results:
            # (what the first phase could not resolve stays recorded: what the file calls in other files)
            if result.summary is not None:
                result.summary = _with_first_references(result.summary, current[os.path.abspath(result.path)].summary)
        fresh = {os.path.abspath(r.path): r for r in again_results}
        self.results = [fresh.get(os.path.abspath(r.path), r) for r in self.results]
        # (a file summarised as a helper first, analysed again here with the index: this summary knows more)
        self.relinted.update(path for path, result in fresh.items() if result.summary is not None)
        return True, helper_results

    @property
    def redone(self) -> set[str]:
        """The files summarised again as helpers (absolute paths)."""
        return {os.path.abspath(summary.path) for summary in self.helper_summaries}

    def index(self) -> ProjectIndex:
        """The index of the latest summaries: a helper's summary stands until its file is analysed again."""
        redone = self.redone
        return ProjectIndex([r.summary for r in self.results if r.summary is not None
                             and (os.path.abspath(r.path) not in redone or os.path.abspath(r.path) in self.relinted)]
                            + [s for s in self.helper_summaries if os.path.abspath(s.path) not in self.relinted])


def _handed_classes_answer(path: str, index: ProjectIndex) -> bool:
    """Does a file call methods on a parameter that other files' calls hand models of one class? (As its
    latest summary says: a file naming no torch is summarised as a helper first, `model.predict(x)` in a
    `utils.py` importing only numpy.)"""
    summary = index.files.get(os.path.abspath(path))
    return summary is not None and any(index.hands_classes_to(path, asked.split("|")[0])
                                       for asked in summary.asked_handed)


def _with_first_references(summary: FileSummary, first: FileSummary | None) -> FileSummary:
    """A file's summary from a later analysis, still recording what its first analysis referred to."""
    if first is None:
        return summary
    return replace(summary, unresolved=first.unresolved | summary.unresolved,
                   asked_classes=first.asked_classes | summary.asked_classes,
                   asked_submodules=first.asked_submodules | summary.asked_submodules)


def _module_files(reference: str, from_path: str, max_up: int = 3) -> list[str]:
    """Files that `reference` (`.helpers.evaluate`, `utils.metrics.evaluate`) may live in."""
    module = reference.rpartition(".")[0]
    base = os.path.dirname(os.path.abspath(from_path))
    if module.startswith("."):
        level = len(module) - len(module.lstrip("."))
        for _ in range(level - 1):
            base = os.path.dirname(base)
        roots, parts = [base], module.lstrip(".").split(".") if module.lstrip(".") else []
    else:
        roots, parts = [], module.split(".")
        current = base
        # Up a few folders, and always up to the folder that holds the file's top-level package
        # (`cvu/detector/yolov5/backends/x.py` imports `cvu.interface.model`).
        for step in range(12):
            roots.append(current)
            if os.path.isdir(os.path.join(current, ".git")) or os.path.dirname(current) == current:
                break
            if step >= max_up and not os.path.isfile(os.path.join(current, "__init__.py")):
                break
            current = os.path.dirname(current)
    found: list[str] = []
    for root in roots:
        # The reference may name a function of a module or a method of a class in it.
        for cut in range(len(parts), 0, -1):
            target = os.path.join(root, *parts[:cut])
            for path in (target + ".py", os.path.join(target, "__init__.py")):
                if os.path.isfile(path):
                    relative = os.path.relpath(path)
                    found.append(path if relative.startswith("..") else relative)
            if found:
                return found
        if not parts:
            init = os.path.join(root, "__init__.py")
            if os.path.isfile(init):
                return [init]
    return found
