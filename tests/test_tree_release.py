"""A file's analysis lets go of its tree: reference counting frees it when the file is done.

The facts refer to one another (modelint.facts.FileFacts.release breaks those references); any other
cycle that reaches the tree (an interpreter kept by a callback it hands out, a closure that calls
itself) would keep the whole tree alive until the cycle collector walked it, which costs a tenth of a
cold run. With the collector off, no tree of the files linted here may be left behind.
"""

from __future__ import annotations

import gc
from pathlib import Path

import libcst as cst
import pytest

from modelint import engine
from modelint.registry import all_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Every rule's fixtures: training loops, trainers with methods, model classes, notebooks' scripts.
SAMPLES = sorted(p for p in FIXTURES.rglob("*.py"))


def _trees_alive() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cst.Module)


@pytest.mark.parametrize("rule_folder", sorted({p.relative_to(FIXTURES).parts[0] for p in SAMPLES}))
def test_linting_leaves_no_tree_to_the_cycle_collector(rule_folder):
    files = [p for p in SAMPLES if p.relative_to(FIXTURES).parts[0] == rule_folder]
    codes = frozenset(all_rules())
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        before = _trees_alive()
        for path in files:
            engine.lint_path(str(path), codes)
        left = _trees_alive() - before
    finally:
        if enabled:
            gc.enable()
        gc.collect()
    assert left == 0, f"{left} of {len(files)} files' trees are held in reference cycles after their analysis"
