"""Regression guard on real code: the labelled corpus in ../shared/corpus.

Compared label by label with bench/realworld-baseline.json (written by
`python bench/realworld.py --write-baseline`): every label matched there stays
matched, and no file gets more false reports than it had. New corpus files never
fail it; they show up as misses in the bench.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("realworld", ROOT / "bench" / "realworld.py")
realworld = importlib.util.module_from_spec(_spec)
sys.modules["realworld"] = realworld  # dataclasses look their module up there
_spec.loader.exec_module(realworld)

pytestmark = pytest.mark.skipif(not (realworld.DEFAULT_CORPUS / "manifest.json").is_file(),
                                reason=f"no labelled corpus at {realworld.DEFAULT_CORPUS} (CI has it beside the checkout)")


@pytest.fixture(scope="module")
def scored():
    return realworld.score(realworld.DEFAULT_CORPUS)


@pytest.fixture(scope="module")
def baseline():
    return json.loads(realworld.BASELINE.read_text(encoding="utf-8"))


def test_labels_matched_in_the_baseline_stay_matched(scored, baseline):
    now = {(f, line, kind) for f, line, kind in scored.matched}
    corpus_labels = now | {(f, line, kind) for f, line, kind in scored.missed}
    lost = [tuple(m) for m in baseline["matched"] if tuple(m) in corpus_labels and tuple(m) not in now]
    assert not lost, f"labels no longer found: {lost}"


def test_no_file_gets_new_false_reports(scored, baseline):
    now: dict[str, list] = {}
    for f, row, code in scored.false:
        now.setdefault(f, []).append((row, code))
    worse = {f: sorted(found) for f, found in now.items() if len(found) > baseline["false_reports"].get(f, 0)}
    assert not worse, f"new false reports: {worse}"


def test_recall_does_not_drop(scored, baseline):
    hit, total = scored.recall()
    assert hit / total >= baseline["recall"] - 1e-9
