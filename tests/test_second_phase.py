"""The second phase: which files are analysed again with the project index, and in what order.

A file is analysed with the index for what other files' helpers and classes do; it is analysed
again only when a question it asked there gets another answer (modelint.asked), helpers that
name no torch are summarised before their callers, and the files others import from go first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelint import across_files, runner
from modelint.asked import AskingIndex, same_answers
from modelint.config import ConfigResolver
from modelint.finding import FileResult
from modelint.registry import FLOW_RULES
from modelint.summary import FileSummary, FunctionSummary, ProjectIndex
from modelint.workers import Workers

HELPERS = ("import torch\n\n\ndef evaluate(model, loader):\n    with torch.no_grad():\n"
           "        return [model(x).argmax(1) for x in loader]\n")
TRAIN = ("import torch\n\nfrom helpers import evaluate\n\n\ndef main(model, loader):\n    model.train()\n"
         "    print(evaluate(model, loader))\n")


def _index(tmp_path: Path, effects: dict) -> ProjectIndex:
    helpers = FileSummary(str(tmp_path / "helpers.py"), functions={
        "evaluate": FunctionSummary("evaluate", str(tmp_path / "helpers.py"), ["model", "loader"], effects=effects)})
    helpers.plain_functions = {"evaluate"}
    return ProjectIndex([helpers, FileSummary(str(tmp_path / "train.py"), unresolved={"helpers.evaluate"})])


def test_each_question_to_the_index_is_recorded_with_a_digest_of_its_answer(tmp_path: Path) -> None:
    index = _index(tmp_path, {"model": "eval"})
    asking = AskingIndex(index)
    train = str(tmp_path / "train.py")
    assert asking.resolve("helpers.evaluate", train).qualname == "evaluate"
    assert asking.resolve_class("helpers.Net", train) is None
    asked = asking.asked()
    assert asked.questions == (("resolve", "helpers.evaluate", train), ("resolve_class", "helpers.Net", train))
    assert same_answers(asked, _index(tmp_path, {"model": "eval"}))  # (another index, the same answers)
    assert not same_answers(asked, _index(tmp_path, {"model": "train"}))  # (the helper now trains it)
    assert not same_answers(None, index)  # (analysed without an index: never asked)


def test_the_facts_may_read_the_index_only_through_its_questions(tmp_path: Path) -> None:
    with pytest.raises(AttributeError, match="only its questions"):
        AskingIndex(_index(tmp_path, {})).files


def test_a_file_whose_questions_get_the_same_answers_is_not_analysed_again(tmp_path: Path) -> None:
    """Its helpers' summaries changed (another round), but nothing it asks about: it keeps its result."""
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "train.py").write_text(TRAIN)
    work = [(str(tmp_path / name), FLOW_RULES) for name in ("helpers.py", "train.py")]
    with Workers(1) as workers:
        first = across_files._lint_all(work, workers)
        index = ProjectIndex([r.summary for r in first if r.summary is not None])
        rounds = across_files._Rounds(first, work, workers, None, across_files.CacheStats())
        train = os.path.abspath(work[1][0])
        assert rounds.run({train}, index) == (True, [])  # (analysed with the index, which it asked)
        assert rounds.stats.analysed == 1
        again = next(r for r in rounds.results if r.path == work[1][0])
        assert again.asked is not None and ("resolve", "helpers.evaluate", work[1][0]) in again.asked.questions
        rounds.salts[train] = b"another index"  # (what it depends on changed, as far as the runner can tell)
        assert rounds.run({train}, rounds.index()) == (False, [])  # (but every answer is the same)
        assert rounds.stats.analysed == 1


def test_a_helper_file_of_the_run_keeps_the_runs_spelling_of_its_path(tmp_path: Path, monkeypatch) -> None:
    """A helper in a file naming no torch is summarised before the files calling it, under the path the run
    gave it (a relative spelling would make its summaries differ from those of its analysis with the run's
    files, and send every caller back once more)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "util.py").write_text("from logging import getLogger\n\n\ndef describe(model):\n"
                                              "    getLogger(__name__).info(model)\n")
    (tmp_path / "pkg" / "train.py").write_text(
        "import torch\n\nfrom .util import describe\n\n\n"
        "def evaluate(model, x):\n    describe(model)\n    with torch.no_grad():\n        return model(x)\n")
    monkeypatch.chdir(tmp_path)
    work = [(str(tmp_path / "pkg" / name), FLOW_RULES) for name in ("__init__.py", "util.py", "train.py")]
    with Workers(1) as workers:
        first = across_files._lint_all(work, workers)
    summaries = [r.summary for r in first if r.summary is not None]
    extra = across_files._helper_files(summaries, ProjectIndex(summaries))
    assert [path for path, _ in extra] == [work[1][0]]


def test_the_files_others_import_from_are_analysed_first(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text(
        "import torch.nn as nn\n\n\nclass Base(nn.Module):\n    def predict(self, x):\n        self.eval()\n"
        "        return self(x)\n")
    (tmp_path / "model.py").write_text(
        "import torch.nn as nn\n\nfrom base import Base\n\n\nclass Net(Base):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n"
        "        return self.fc(x)\n")
    work = [(str(tmp_path / name), FLOW_RULES) for name in ("base.py", "model.py")]
    results = [FileResult(path, summary=FileSummary(path, unresolved={"base.Base.predict"} if "model" in path
                                                    else set())) for path, _ in work]
    index = ProjectIndex([r.summary for r in results])
    again = {os.path.abspath(path) for path, _ in work}
    assert across_files._definers_first(again, results, index) == {os.path.abspath(work[0][0])}


def test_the_whole_run_still_reports_across_files(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "train.py").write_text(TRAIN)
    run = runner.run_paths([str(tmp_path)], ConfigResolver(), runner.Overrides(), jobs=1)
    assert [(f.path.rsplit("/", 1)[-1], f.code) for f in run.findings] == [("helpers.py", "MDL001")]
