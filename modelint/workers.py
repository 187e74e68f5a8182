"""Where a run's files are linted: in this process, or in a pool of processes kept for the whole run.

A run lints in phases (every file; then the helper files other files call; then the files whose
helpers' summaries changed). The pool starts for the first batch big enough to pay for starting
it and then serves every later phase, however small: its processes have libcst and the engine
imported already, while this process would have to import them (a fifth of a second) to lint a
handful of files alone on one core.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager

from modelint.finding import INTERNAL_ERROR, NOT_ANALYSED, TIMED_OUT, FileResult, Finding, Location

# Below this many files a process pool costs more to start than it saves.
PARALLEL_THRESHOLD = 24


class Workers:
    """`count` processes at most, started on first need; use as a context manager (it closes the pool)."""

    def __init__(self, count: int) -> None:
        self.count = max(1, count)
        self._pool = None
        self._shared: SharedIndex | None = None  # the index last sent to the pool
        self._folder: str | None = None  # where the bases of the indexes sent are written (see SharedIndex)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._folder is not None:
            import shutil

            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def map(self, function, items: list) -> list:
        """`[function(item) for item in items]`, on every process of the pool when there are enough items (the
        pool then starts here, and serves the batches that follow). `function` is a module's top-level
        function: the pool's processes import it by name."""
        if self.count == 1 or (self._pool is None and len(items) < PARALLEL_THRESHOLD):
            return [function(item) for item in items]
        from concurrent.futures.process import BrokenProcessPool

        try:
            return list(self._started().map(function, items, chunksize=max(1, len(items) // (8 * self.count))))
        except BrokenProcessPool:  # (a process killed, for memory say: the pool starts again for the analyses)
            self._pool.shutdown(wait=False)
            self._pool = None
            return [function(item) for item in items]

    def _started(self):
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor  # (~20 ms a one-file run does not need)

            self._pool = ProcessPoolExecutor(max_workers=self.count)
        return self._pool

    def lint(self, work: list[tuple], index=None, cache_dir: str | None = None) -> list[FileResult]:
        """A FileResult for every (path, codes[, salt]) job of `work`, in order.

        Results the cache holds are read here: only the files it lacks go to the pool."""
        results = cached_results(work, cache_dir, index) if cache_dir is not None else {}
        missing = [i for i in range(len(work)) if i not in results]
        for i, result in zip(missing, self._analyse([work[i] for i in missing], index, cache_dir)):
            results[i] = result
        return [results[i] for i in range(len(work))]

    def _analyse(self, work: list[tuple], index, cache_dir: str | None) -> list[FileResult]:
        if not work:
            return []  # (the engine, and libcst with it, is imported only to analyse a file)
        if self.count == 1 or (self._pool is None and len(work) < PARALLEL_THRESHOLD):
            return lint_many(work, index, cache_dir)
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        pool = self._started()
        results: dict[int, FileResult] = {}
        if index is not None and self._folder is None:
            import tempfile

            try:
                self._folder = tempfile.mkdtemp(prefix="modelint-index-")
            except OSError:
                pass  # (no folder: the base then travels with each batch)
        shared = self._shared = SharedIndex(index, self._shared, self._folder) if index is not None else None
        pending = {pool.submit(_lint_batch, [work[i] for i in batch], shared, cache_dir): batch
                   for batch in balanced_batches(work, self.count)}
        broken = False
        for future in as_completed(pending):
            try:
                results.update(zip(pending[future], future.result()))
            except BrokenProcessPool:
                broken = True  # (every batch still running or waiting fails with it)
        if broken:
            # A process died (the native parser crashed on a file, the kernel killed it for memory): the files
            # it left are analysed again, each in a process of its own, so that only the culprit is lost.
            self._pool.shutdown(wait=False)
            self._pool = None
            left = [i for i in range(len(work)) if i not in results]
            results.update(zip(left, _one_process_each([work[i] for i in left], index, cache_dir, self.count)))
        return [results[i] for i in range(len(work))]


class SharedIndex:
    """The project index of one phase, pickled once for all its batches: each process unpickles it for the
    first batch it draws and keeps it for the others (the index of a large project takes a megabyte and some
    tens of milliseconds each way, a phase sends it with each of a few dozen batches).

    The phases of a run (the first phase's waves, then its rounds) share most of their summaries: a phase's
    index travels as the summaries that differ from those of a base, an earlier index pickled once, which
    each process unpickles once and keeps. A new base is taken when a third of the summaries differ. The base
    is written to a file of `folder` and read from there (a few megabytes that would otherwise travel with
    every batch)."""

    def __init__(self, index, previous: SharedIndex | None = None, folder: str | None = None) -> None:
        import pickle
        import uuid

        self.token = uuid.uuid4().hex
        files = index.files
        base = previous.base if previous is not None else None
        # (a base whose files are all still there; the summaries of the others, or other summaries of theirs)
        usable = base is not None and all(path in files for path in base.files)
        changed = {path: summary for path, summary in files.items()
                   if base.files.get(path) is not summary} if usable else {}
        if not usable or 3 * len(changed) > len(files):
            base, changed = _Base(files, folder), {}
        self.base = base
        self.order = list(files)  # (the index's own order: the same candidates in the same order everywhere)
        self.changed = pickle.dumps(changed, protocol=pickle.HIGHEST_PROTOCOL)

    def index(self):
        """This phase's index, in a pool's process (kept for the phase's other batches)."""
        global _received, _base
        if _received is not None and _received[0] == self.token:
            return _received[1]
        import pickle

        from modelint.summary import ProjectIndex

        if _base is None or _base[0] != self.base.token:
            _base = (self.base.token, pickle.loads(self.base.read()))
        files = {**_base[1], **pickle.loads(self.changed)}
        _received = (self.token, ProjectIndex([files[path] for path in self.order]))
        return _received[1]


class _Base:
    """The summaries of an index, pickled once: a SharedIndex sends what differs from them."""

    def __init__(self, files: dict, folder: str | None) -> None:
        import pickle
        import uuid

        self.token = uuid.uuid4().hex
        self.files = files  # (kept here, to compare the next phases' summaries with: not sent)
        self.data: bytes | None = pickle.dumps(files, protocol=pickle.HIGHEST_PROTOCOL)
        self.path: str | None = None
        if folder is not None:
            try:
                self.path = os.path.join(folder, f"{self.token}.pickle")
                with open(self.path, "wb") as handle:
                    handle.write(self.data)
                self.data = None
            except OSError:
                self.path = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as handle:
            return handle.read()

    def __getstate__(self) -> dict:
        return {"token": self.token, "data": self.data, "path": self.path, "files": {}}


_received: tuple[str, object] | None = None  # (token, index): the index of the last SharedIndex this process read
_base: tuple[str, dict] | None = None  # (token, summaries by path): the last base this process unpickled


def _lint_batch(jobs: list[tuple], shared: SharedIndex | None, cache_dir: str | None) -> list[FileResult]:
    """lint_many in a pool's process, with the phase's index."""
    return lint_many(jobs, shared.index() if shared is not None else None, cache_dir)


def _one_process_each(work: list[tuple], index, cache_dir: str | None, at_once: int) -> list[FileResult]:
    """Lint each job in a process of its own, `at_once` at a time; a job whose process dies gets an MDL000 line."""
    import multiprocessing
    from multiprocessing.connection import wait

    results: dict[int, FileResult] = {}
    waiting = list(range(len(work)))[::-1]
    running: dict = {}  # reading end of its pipe -> (job index, process)
    while waiting or running:
        while waiting and len(running) < at_once:
            i = waiting.pop()
            reader, writer = multiprocessing.Pipe(duplex=False)
            process = multiprocessing.Process(target=_lint_and_send, args=(work[i], index, cache_dir, writer),
                                              daemon=True)
            process.start()
            writer.close()
            running[reader] = (i, process)
        for reader in wait(list(running)):
            i, process = running.pop(reader)
            try:
                results[i] = reader.recv()
            except (EOFError, OSError):
                process.join()
                results[i] = _died(work[i][0], process.exitcode)
            reader.close()
            process.join()
    return [results[i] for i in range(len(work))]


def _lint_and_send(job: tuple, index, cache_dir: str | None, writer) -> None:
    [result] = lint_many([job], index, cache_dir)
    writer.send(result)
    writer.close()


def _died(path: str, exitcode: int | None) -> FileResult:
    how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit status {exitcode}"
    return _internal_error(path, f"the process analysing this file died ({how})")


def balanced_batches(work, workers: int) -> list[list[int]]:
    """Indexes of `work` in batches, largest files first, each batch about an eighth of a worker's share
    of the bytes (a big file alone): a worker that draws the last batches is not left alone with a
    2,000-line file while the others wait."""
    sizes = []
    for job in work:
        try:
            sizes.append(os.path.getsize(job[0]))
        except OSError:
            sizes.append(0)
    order = sorted(range(len(work)), key=lambda i: -sizes[i])
    target = max(1, sum(sizes) // (workers * 8))
    batches: list[list[int]] = []
    current: list[int] = []
    weight = 0
    for i in order:
        current.append(i)
        weight += sizes[i]
        if weight >= target or len(current) >= 64:
            batches.append(current)
            current, weight = [], 0
    if current:
        batches.append(current)
    return batches


@contextmanager
def _collected_after_each_file():
    """libcst builds millions of small nodes per file, and the cycle collector, run on allocation counts,
    walks them again and again while they are alive: at CPython's default threshold it took about a sixth
    of a cold run, at a raised one still a tenth. The collector is off while a batch is linted; reference
    counting frees a file's tree when its analysis ends (modelint.facts.FileFacts.release), and one
    collection of the young generation after each file (`_analysed`) takes the few small cycles left (the
    standard library's own closures). Restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _analysed(path: str, lint, *args) -> FileResult:
    """`guarded(path, lint, *args)`, then the file's garbage collected (see _collected_after_each_file)."""
    result = guarded(path, lint, *args)
    if not gc.isenabled():
        gc.collect(0)
    return result


def lint_many(jobs: list[tuple], index=None, cache_dir: str | None = None) -> list[FileResult]:
    """Lint (path, codes[, salt]) jobs in this process. The salt names what else a result depends on:
    in the later phases, the summaries of the helpers a file calls."""
    with _collected_after_each_file():
        return _lint_jobs(jobs, index, cache_dir)


def cached_results(jobs: list[tuple], cache_dir: str, index=None) -> dict[int, FileResult]:
    """The results the cache holds for (path, codes[, salt]) jobs, by their index in `jobs`."""
    from modelint.cache import Cache

    cache = Cache(cache_dir)
    found = {}
    for i, (path, codes, *salt) in enumerate(jobs):
        data = _read(path)
        result = cache.get(cache.key(path, data + b"\0" + (salt[0] if salt else b""), codes)) \
            if data is not None else None
        if _still_valid(result, index):
            result.cached = True
            found[i] = result
    return found


def _lint_jobs(jobs: list[tuple], index=None, cache_dir: str | None = None) -> list[FileResult]:
    from modelint import engine

    if cache_dir is None:
        return [_analysed(job[0], engine.lint_path, job[0], job[1], index) for job in jobs]
    from modelint.cache import Cache

    cache = Cache(cache_dir)
    out = []
    for path, codes, *salt in jobs:
        data = _read(path)
        if data is None:
            out.append(_analysed(path, engine.lint_path, path, codes, index))
            continue
        key = cache.key(path, data + b"\0" + (salt[0] if salt else b""), codes)
        result = cache.get(key)
        if _still_valid(result, index):  # (another process filled it since)
            result.cached = True
        else:
            result = _analysed(path, engine.lint_bytes, data, path, codes, index)
            if not _crashed(result) and not _timed_out(result):
                cache.put(key, result)
        out.append(result)
    return out


def _still_valid(result, index) -> bool:
    """Is a cached result what analysing its file with `index` would give? One analysed with an index (the same
    salt, another run's index) is, if every question it asked there gets the same answer (modelint.asked)."""
    from modelint.asked import same_answers

    return isinstance(result, FileResult) and (result.asked is None or index is None
                                               or same_answers(result.asked, index))


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None  # (the engine says why, as it reads it again)


def guarded(path: str, lint, *args) -> FileResult:
    """`lint(*args)` for one file; if the engine itself fails on it, that file gets an MDL000 line and the run goes on."""
    try:
        return lint(*args)
    except RecursionError:
        why = "file is nested too deeply to analyse"
    except Exception as error:  # noqa: BLE001 - one file must not take the whole run down
        lines = str(error).strip().splitlines()
        why = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return _internal_error(path, f"modelint failed on this file ({why})")


def _internal_error(path: str, what: str) -> FileResult:
    """The file's one MDL000 line: it was not checked."""
    location = Location(1, 1)
    finding = Finding(path, INTERNAL_ERROR, "internal-error", f"{what}; it was not checked. Please report this.",
                      "error", location, location)
    return FileResult(path, [finding], checked=False)


def _crashed(result: FileResult) -> bool:
    return not result.checked and any(f.code == INTERNAL_ERROR for f in result.findings)


def _timed_out(result: FileResult) -> bool:
    """Past the per-file time limit: another run (a quieter machine) may finish it, so it is not cached."""
    return not result.checked and any(f.code == NOT_ANALYSED and f.message.startswith(TIMED_OUT)
                                      for f in result.findings)
