"""The cache serves every run of the same modelint, whatever the process: hash seeds, mtimes, reinstalls.

A cache that misses in a fresh process only shows up across processes, so these tests run
the real console script twice, with different `PYTHONHASHSEED` values, and read what the
second run did from `--verbose` and from the cache folder itself (no timing involved).
"""

from __future__ import annotations

import pickle
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers_cli import modelint, write

# A helper in one file evaluates a model that another file trains: the run has a second,
# cross-file phase, whose results are cached too.
HELPERS = """import torch


def evaluate(model, loader):
    total = 0.0
    with torch.no_grad():
        for inputs, targets in loader:
            total += (model(inputs).argmax(1) == targets).float().mean().item()
    return total / max(len(loader), 1)
"""
TRAIN = """import torch
import torch.nn as nn

from helpers import evaluate

model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loader = [(torch.randn(4, 8), torch.randint(0, 2, (4,))) for _ in range(3)]

for epoch in range(2):
    model.train()
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    print(epoch, evaluate(model, loader))
"""
DATA = """def batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]
"""
REPORT = re.compile(r"modelint: cache (?P<folder>.+): (?P<hits>\d+) from the cache, (?P<analysed>\d+) analysed")


def _report(stderr: str) -> tuple[int, int]:
    match = REPORT.search(stderr)
    assert match, stderr
    return int(match["hits"]), int(match["analysed"])


def _entries(cache: Path) -> dict[str, tuple[int, int]]:
    """Every cache entry with its inode and mtime: a rewritten entry (atomic rename) changes both."""
    return {str(p.relative_to(cache)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.rglob("*.pickle")}


def test_a_second_process_with_another_hash_seed_analyses_nothing(tmp_path: Path) -> None:
    project = write(tmp_path / "project", {"helpers.py": HELPERS, "train.py": TRAIN, "data.py": DATA})
    cache = tmp_path / "cache"
    first = modelint("check", "--verbose", "--cache-dir", str(cache), ".", cwd=project,
                     env={"PYTHONHASHSEED": "1"})
    assert first.returncode == 1 and "MDL001" in first.stdout, first.stdout + first.stderr
    hits, analysed = _report(first.stderr)
    assert hits == 0 and analysed == 3  # three files, train.py after helpers.py, with what evaluate() does
    before = _entries(cache)
    assert len(before) == 3

    second = modelint("check", "--verbose", "--cache-dir", str(cache), ".", cwd=project,
                      env={"PYTHONHASHSEED": "2"})
    assert second.stdout == first.stdout
    assert _report(second.stderr) == (3, 0), second.stderr
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [REPORT.search(first.stderr)["folder"].rsplit("/")[-1]]
    assert _entries(cache) == before  # nothing was written again


def test_the_fingerprint_is_the_same_under_every_hash_seed() -> None:
    """Under the old set-ordered hashing about one seed in eight gave another fingerprint (seed 7 here)."""
    code = "from modelint.cache import engine_fingerprint; print(engine_fingerprint())"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip() for seed in range(12)}
    assert len(seen) == 1, seen


def test_the_fingerprint_follows_contents_not_mtimes(tmp_path: Path, monkeypatch) -> None:
    from modelint import cache

    files = write(tmp_path, {"b.py": "B = 1\n", "a.py": "A = 1\n"})
    listing = [("modelint/a.py", files / "a.py"), ("modelint/b.py", files / "b.py")]
    monkeypatch.setattr(cache, "_source_files", lambda: listing)
    fingerprint = cache.engine_fingerprint.__wrapped__
    original = fingerprint()
    os.utime(files / "a.py", ns=(1, 1))  # a reinstall of the same code: new mtimes, same bytes
    assert fingerprint() == original
    (files / "b.py").write_text("B = 2\n")  # a rule edited in place
    assert fingerprint() != original


def test_source_files_are_named_as_installed_and_sorted() -> None:
    from modelint.cache import _source_files

    names = [name for name, _ in _source_files()]
    assert names == sorted(names) and len(names) == len(set(names))
    assert "modelint/cache.py" in names and "modelint/rules/__init__.py" in names
    assert any(re.fullmatch(r"modelint/rules/mdl001_\w+\.py", name) for name in names)


def test_a_run_served_from_the_cache_never_imports_libcst(tmp_path: Path) -> None:
    """Only train.py is named: helpers.py is found next to it and summarised, and that is cached too."""
    project = write(tmp_path / "project", {"helpers.py": HELPERS, "train.py": TRAIN})
    cache = ["--cache-dir", str(tmp_path / "cache")]
    first = modelint("check", "--verbose", *cache, "train.py", cwd=project)
    assert _report(first.stderr) == (0, 3)  # train.py, helpers.py, train.py with what evaluate() does
    warm = subprocess.run([sys.executable, "-X", "importtime", "-m", "modelint", "check", "--verbose", "--statistics",
                           *cache, "train.py"], cwd=project, capture_output=True, text=True)
    assert _report(warm.stderr) == (3, 0), warm.stderr[-2000:]
    assert "libcst" not in warm.stderr


def test_second_phase_key_does_not_depend_on_set_order() -> None:
    """The second phase's cache key pickles what a file's helpers are; sets in it (a class shape's names)
    come out in hash order, which changes with each process's hash seed, unless made canonical."""
    from modelint.asked import canonical as _canonical
    from modelint.summary import ClassShape

    names = ["forward", "eval", "train", "predict", "encode", "decode", "reset"]
    one = ClassShape(("torch.nn.Module",), frozenset(names))
    other = ClassShape(("torch.nn.Module",), frozenset(reversed(names)))
    assert pickle.dumps(_canonical([("ref", one)])) == pickle.dumps(_canonical([("ref", other)]))


def test_a_cached_result_analysed_with_the_index_is_served_only_with_the_same_answers(tmp_path: Path) -> None:
    """train.py is analysed after helpers.py, with what evaluate() does. Once evaluate() switches the model to
    eval mode itself, train.py's text is the same but its question about evaluate() gets another answer: its
    cached result is not served, and the finding goes."""
    project = write(tmp_path / "project", {"helpers.py": HELPERS, "train.py": TRAIN, "data.py": DATA})
    cache = ["--cache-dir", str(tmp_path / "cache")]
    first = modelint("check", "--verbose", *cache, ".", cwd=project)
    assert first.returncode == 1 and "MDL001" in first.stdout, first.stdout + first.stderr
    (project / "helpers.py").write_text(HELPERS.replace("    total = 0.0\n", "    model.eval()\n    total = 0.0\n"))
    second = modelint("check", "--verbose", *cache, ".", cwd=project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert _report(second.stderr) == (1, 2)  # data.py from the cache; helpers.py and train.py analysed
