"""A whole run: discover files, pick each file's rules from its config, lint, collect.

Front ends (CLI, pre-commit, LSP) call `run_paths` / `run_text`; they never touch
the engine's internals.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modelint import engine, source
from modelint.config import ConfigResolver, Settings
from modelint.discovery import discover, is_excluded
from modelint.finding import IO_ERROR, FileResult, Finding

# Below this many files a process pool costs more to start than it saves.
PARALLEL_THRESHOLD = 24


@dataclass
class Overrides:
    """Rule selection given on the command line; it overrides the config's, as in ruff."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()


@dataclass
class RunResult:
    results: list[FileResult] = field(default_factory=list)

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
        return sum(1 for f in self.findings if f.code == engine.INTERNAL_ERROR)


def codes_for(path: str, settings: Settings, overrides: Overrides) -> frozenset[str]:
    select = overrides.select if overrides.select is not None else settings.select
    return engine.select_codes(
        select,
        (*settings.ignore, *overrides.ignore),
        (*settings.extend_select, *overrides.extend_select),
        settings.per_file_ignores,
        path,
        settings.root,
    )


def _lint_many(jobs: list[tuple[str, frozenset[str]]]) -> list[FileResult]:
    return [engine.lint_path(path, codes) for path, codes in jobs]


def run_paths(paths: list[str], resolver: ConfigResolver, overrides: Overrides, force_exclude: bool = False,
              jobs: int | None = None) -> RunResult:
    found = discover(paths, resolver, force_exclude=force_exclude)
    run = RunResult()
    for path, why in found.errors:
        run.results.append(engine._not_checked(path, IO_ERROR, why))
    work = [(path, codes_for(path, resolver.for_file(Path(path)), overrides)) for path in found.files]
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    if workers > 1 and len(work) >= PARALLEL_THRESHOLD:
        chunk = max(1, min(64, len(work) // (workers * 4)))
        batches = [work[i:i + chunk] for i in range(0, len(work), chunk)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for batch in pool.map(_lint_many, batches):
                run.results.extend(batch)
    else:
        run.results.extend(_lint_many(work))
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
            run.results.append(engine._not_checked(filename, IO_ERROR, str(error)))
            return run
    else:
        text = text_or_bytes
    run.results.append(engine.lint_source(text, filename, codes_for(filename, settings, overrides)))
    return run
