"""A whole run: discover files, pick each file's rules from its config, lint, collect.

Front ends (CLI, pre-commit, LSP) call `run_paths` / `run_text`; they never touch
the engine's internals. Which file is analysed when, and with which project index,
is modelint.across_files'; what is done with the findings once every file is known
(guesses about callers dropped, findings proven about another file moved there,
positions looked up) is here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from modelint import source
from modelint.config import ConfigResolver, Settings
from modelint.discovery import discover, is_excluded
from modelint.finding import INTERNAL_ERROR, IO_ERROR, FileResult, Finding, Location, not_checked
from modelint.across_files import CacheStats, first_phase, follow_calls_across_files
from modelint.registry import select_codes
from modelint.summary import ProjectIndex
from modelint.workers import Workers, guarded


@dataclass
class Overrides:
    """Rule selection given on the command line; it overrides the config's, as in ruff."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()


@dataclass
class RunResult:
    results: list[FileResult] = field(default_factory=list)
    fixed: int = 0  # findings fixed by --fix before this result was taken
    cache: CacheStats = field(default_factory=CacheStats)
    # Every function summary of the run (helper files included): the runtime checker reads the
    # static facts of a flagged file again, and needs what its calls into other files do.
    index: ProjectIndex | None = None

    @property
    def findings(self) -> list[Finding]:
        out = [f for result in self.results for f in result.findings]
        out.sort(key=lambda f: f.sort_key)
        return out

    @property
    def files_checked(self) -> int:
        return sum(1 for r in self.results if r.checked)

    @property
    def files_failed(self) -> int:
        return sum(1 for r in self.results if not r.checked)

    @property
    def internal_errors(self) -> int:
        return sum(1 for f in self.findings if f.code == INTERNAL_ERROR)


def codes_for(path: str, settings: Settings, overrides: Overrides) -> frozenset[str]:
    select = overrides.select if overrides.select is not None else settings.select
    return select_codes(
        select,
        (*settings.ignore, *overrides.ignore),
        (*settings.extend_select, *overrides.extend_select),
        settings.per_file_ignores,
        path,
        settings.root,
    )


def _drop_guesses_about_callers(results: list[FileResult], index: ProjectIndex) -> None:
    """A finding that guessed a helper's callers (none could be seen in its file) goes when another
    file of the run calls that helper: that caller is judged with the helper's summary instead."""
    if not any(f.unless_called or f.method_callers_unseen or f.method_callers_switch or f.function_callers_unseen
               for r in results for f in (*r.findings, *r.foreign)):
        return
    called = index.called_from_other_files()
    # (a method another file calls on an object of its class: `self.actor = Actor()`, `self.actor.act(s)`)
    methods_called = {(path, qualname.rpartition(".")[2]) for path, qualname in called if "." in qualname}

    def kept(f: Finding, path: str) -> bool:
        return (f.unless_called is None or (path, f.unless_called) not in called) \
            and (f.method_callers_unseen is None
                 or not (index.method_called_only_without_grad(f.method_callers_unseen)
                         or index.called_by_subclasses_only_without_grad(f.path, f.method_callers_unseen)
                         or any((path, name.partition("(")[0]) in methods_called
                                for name in f.method_callers_unseen.split(",")))) \
            and (f.method_callers_switch is None or not index.method_called_only_in_eval(f.method_callers_switch, f.path)) \
            and not (f.function_callers_unseen and all(index.function_called_only_without_grad(f.path, name)
                                                       for name in f.function_callers_unseen))

    for result in results:
        path = os.path.abspath(result.path)
        result.findings = [f for f in result.findings if kept(f, path)]
        # (and what it proves about a helper of another file: `gather(model, ...)` called with autograd on by a
        # function of this file whose own callers, elsewhere, may run it under no_grad)
        result.foreign = [f for f in result.foreign if kept(f, path)]


def _drop_when_creators_hand_harmless_models(results: list[FileResult], index: ProjectIndex) -> None:
    """A finding about the model a class's creators hand to its constructor goes when the run's other files
    build that class, and every one of them hands there a model whose mode changes nothing (no Dropout, no
    BatchNorm) or a model already in eval mode: what this file could not see."""
    marked = [f for r in results for f in r.findings if f.held_from_creators is not None]
    if not marked:
        return
    # (defining file, class) -> (the slots of each construction, whether each slot was handed in eval mode)
    handed: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for path, summary in index.files.items():
        for reference, slots in summary.handed_models.items():
            found = index.resolve_shape(reference, path)
            if found is not None and os.path.abspath(found[1]) != path:
                handed.setdefault((os.path.abspath(found[1]), reference.rpartition(".")[2]), []).append(
                    (slots, summary.handed_in_eval.get(reference, {})))
    if not handed:
        return

    def harmless(finding: Finding) -> bool:
        classes, param, position = finding.held_from_creators
        constructions = [slots for cls in classes for slots in handed.get((os.path.abspath(finding.path), cls), ())]
        passed = [(slots.get(param, slots.get(str(position))), modes.get(param, modes.get(str(position))))
                  for slots, modes in constructions]
        # (0: Dependence.INDEPENDENT)
        return bool(passed) and all(dependence == 0 or in_eval is True for dependence, in_eval in passed)

    for result in results:
        result.findings = [f for f in result.findings if f.held_from_creators is None or not harmless(f)]


def _drop_when_models_take_input_gradients(results: list[FileResult], index: ProjectIndex) -> None:
    """A model of a class the file cannot see, run with autograd on, in a file importing one whose module class
    takes gradients with respect to its inputs in its `forward` (an interatomic potential's forces): the model
    may be one of those, or hold one, and need autograd to run at all (see
    modelint.facts.input_gradients.needs_input_gradients)."""
    if not any(f.model_class_unseen for r in results for f in r.findings):
        return
    defining = {path for path, summary in index.files.items() if summary.input_gradient_classes}
    if not defining:
        return
    for result in results:
        if not any(f.model_class_unseen for f in result.findings):
            continue
        path = os.path.abspath(result.path)
        refs = result.summary.imported | result.summary.unresolved if result.summary is not None else ()
        if any(os.path.abspath(found.path) in defining for ref in refs for module in (ref, ref.rpartition(".")[0])
               if module for found in index._candidates(module, path)):
            result.findings = [f for f in result.findings if not f.model_class_unseen]


def _drop_when_built_needing_input_gradients(results: list[FileResult], index: ProjectIndex) -> None:
    """A model evaluated with autograd on, built by classes or factories of other files that the finished index
    says need input gradients (Report.built_by): it cannot run under no_grad."""
    for result in results:
        if any(f.built_by for f in result.findings):
            result.findings = [f for f in result.findings if not f.built_by or not all(
                index.needs_input_gradients(ref, f.path) for ref in f.built_by)]


def _drop_when_users_keep_the_order(results: list[FileResult], index: ProjectIndex) -> None:
    """A guess that an object's users may run one of its methods after another (`evaluate()` leaving the model in
    eval mode, then `train()`) goes when the run's other files build the objects and never do (see
    Report.users_elsewhere)."""
    for result in results:
        if any(f.users_elsewhere for f in result.findings):
            result.findings = [f for f in result.findings
                               if f.users_elsewhere is None or index.run_after(f.path, *f.users_elsewhere)]


def _drop_repeats(results: list[FileResult]) -> None:
    """One finding per code and position: several callers in other files may prove the same one. And one per
    line for the same message: a caller's model evaluated through a method that runs two of its parts on
    one line (`self.head(self.encoder(x))`) is one mistake."""
    for result in results:
        seen: set[tuple] = set()
        kept = []
        for finding in result.findings:
            key = (finding.code, finding.cell, finding.location.row, finding.location.column)
            said = (finding.code, finding.cell, finding.location.row, finding.message)
            if key not in seen and said not in seen:
                seen.update((key, said))
                kept.append(finding)
        result.findings = kept


def _resolve_pending_positions(results: list[FileResult]) -> None:
    """Give cross-file findings and notes their positions (and honour `# noqa` there)."""
    from modelint import suppression

    cache: dict[str, tuple | None] = {}
    if not any(f.call is not None or any(r.call is not None for r in f.related) for res in results
               for f in res.findings):
        return

    def lookup(path: str, ordinal: int):
        key = os.path.abspath(path)
        if key not in cache:
            from modelint import engine

            cache[key] = engine.call_positions(path)
        found = cache[key]
        if found is None or not 0 <= ordinal < len(found[0]):
            return None, None
        return found[0][ordinal], found[1]

    for result in results:
        kept = []
        for finding in result.findings:
            if finding.call is not None:
                span, lines = lookup(finding.path, finding.call)
                if span is None:
                    continue
                finding.location, finding.end_location = span
                finding.call = None
                row = finding.location.row
                if row <= len(lines) and suppression.covers(suppression.line_noqa(lines[row - 1]), finding.code):
                    continue
            for i, related in enumerate(finding.related):
                if related.call is not None:
                    span, _ = lookup(related.path, related.call)
                    location = span[0] if span else Location(1, 1)
                    finding.related = (*finding.related[:i], replace(related, location=location, call=None),
                                       *finding.related[i + 1:])
            kept.append(finding)
        kept.sort(key=lambda f: f.sort_key)
        result.findings = _merge_duplicates(kept)


def _merge_duplicates(findings: list[Finding]) -> list[Finding]:
    """One finding per code and position: the file's own report and the one a caller in another file
    proved about it (attached before its position was known) become one, with the fix and both notes."""
    merged: dict[tuple, Finding] = {}
    for finding in findings:
        key = (finding.code, finding.cell, finding.location)
        first = merged.get(key)
        if first is None:
            merged[key] = finding
            continue
        first.fix = first.fix or finding.fix
        first.related = (*first.related, *(r for r in finding.related if r not in first.related))
    return list(merged.values())


def _attach_foreign(results: list[FileResult]) -> None:
    """Findings one file proves about another (a helper it calls) go to that file."""
    by_path = {os.path.abspath(r.path): r for r in results}
    for result in results:
        for finding in result.foreign:
            target = by_path.get(os.path.abspath(finding.path))
            if target is None:
                continue
            finding.path = target.path
            # (a finding whose position is still to be looked up is told apart by the call it stands at)
            if all((f.code, f.location, f.call) != (finding.code, finding.location, finding.call)
                   for f in target.findings):
                target.findings.append(finding)
                target.findings.sort(key=lambda f: f.sort_key)
        result.foreign = []


def run_paths(paths: list[str], resolver: ConfigResolver, overrides: Overrides, force_exclude: bool = False,
              jobs: int | None = None, cache_dir: str | None = None) -> RunResult:
    found = discover(paths, resolver, force_exclude=force_exclude)
    run = RunResult()
    for path, why in found.errors:
        run.results.append(not_checked(path, IO_ERROR, why))
    work = [(path, codes_for(path, resolver.for_file(Path(path)), overrides)) for path in found.files]
    with Workers(jobs if jobs is not None else (os.cpu_count() or 1)) as workers:
        results, helpers = first_phase(work, workers, cache_dir)
        run.cache.count(results)
        run.cache.count(helpers)
        if cache_dir is not None:
            from modelint.cache import engine_fingerprint

            run.cache.folder = os.path.join(cache_dir, engine_fingerprint())
        results, run.index = follow_calls_across_files(results, work, workers, cache_dir, run.cache, helpers)
    _drop_guesses_about_callers(results, run.index)
    _drop_when_creators_hand_harmless_models(results, run.index)
    _drop_when_models_take_input_gradients(results, run.index)
    _drop_when_built_needing_input_gradients(results, run.index)
    _drop_when_users_keep_the_order(results, run.index)
    _attach_foreign(results)
    _resolve_pending_positions(results)
    _drop_repeats(results)
    run.results.extend(results)
    return run


def run_text(text_or_bytes: str | bytes, filename: str, resolver: ConfigResolver, overrides: Overrides,
             force_exclude: bool = False) -> RunResult:
    """Lint one buffer (stdin, an editor) as if it were the file `filename`."""
    settings = resolver.for_file(Path(filename))
    run = RunResult()
    if force_exclude and is_excluded(Path(filename), settings):
        return run
    if isinstance(text_or_bytes, bytes):
        try:
            text = source.decode(text_or_bytes)
        except source.UnreadableSource as error:
            run.results.append(not_checked(filename, IO_ERROR, str(error)))
            return run
    else:
        text = text_or_bytes
    from modelint import engine

    run.results.append(guarded(filename, engine.lint_source, text, filename, codes_for(filename, settings, overrides)))
    run.cache.count(run.results)
    return run
