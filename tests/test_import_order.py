"""The first phase's order: a file is analysed after the files it imports from (modelint.import_order),
with the index of what they say, and again only if a question it asked gets another answer at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelint import across_files, runner
from modelint.config import ConfigResolver
from modelint.import_order import waves

MODEL = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
         "        self.drop = nn.Dropout(0.5)\n\n    def forward(self, x):\n        return self.drop(x)\n")
EVALUATE = ("import torch\n\n\ndef evaluate(model, loader):\n    with torch.no_grad():\n"
            "        return [model(x).argmax(1) for x in loader]\n")


def _write(root: Path, files: dict[str, str]) -> list[str]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return [str(root / name) for name in files]


def _wave_of(plan, paths: list[str]) -> dict[str, int]:
    return {Path(paths[i]).name if "__init__" not in paths[i] else paths[i].rsplit("/", 2)[-2] + "/__init__": number
            for number, wave in enumerate(plan) for i in wave.files}


def test_a_file_comes_after_the_files_it_imports_from(tmp_path: Path) -> None:
    paths = _write(tmp_path, {
        "train.py": "import torch\nfrom models import Net\nfrom helpers import evaluate\n",
        "models.py": MODEL,
        "helpers.py": "import torch\nfrom models import Net\n" + EVALUATE,
    })
    assert _wave_of(waves(paths, smallest=1), paths) == {"models.py": 0, "helpers.py": 1, "train.py": 2}


def test_a_name_a_package_re_exports_orders_after_its_module_and_the_package(tmp_path: Path) -> None:
    """`from pkg import Net`, with `from .nets import Net` in `pkg/__init__.py`: both files first (the index
    follows the name through the `__init__`, which itself waits for nothing)."""
    paths = _write(tmp_path, {
        "train.py": "import torch\nfrom pkg import Net\n",
        "pkg/__init__.py": "from .nets import Net\nimport torch\n",
        "pkg/nets.py": MODEL,
    })
    assert _wave_of(waves(paths, smallest=1), paths) == {"train.py": 1, "pkg/__init__": 0, "nets.py": 0}


def test_files_importing_one_another_share_a_wave(tmp_path: Path) -> None:
    paths = _write(tmp_path, {
        "a.py": "import torch\nfrom b import g\n\n\ndef f(model):\n    return g(model)\n",
        "b.py": "import torch\nfrom a import f\n\n\ndef g(model):\n    model.eval()\n",
        "c.py": "import torch\nfrom a import f\n",
    })
    assert _wave_of(waves(paths, smallest=1), paths) == {"a.py": 1, "b.py": 1, "c.py": 2} \
        or _wave_of(waves(paths, smallest=1), paths) == {"a.py": 0, "b.py": 0, "c.py": 1}


def test_a_helper_naming_no_torch_is_summarised_before_its_callers(tmp_path: Path) -> None:
    """Its own turn is a syntax check, in wave 0; its summary, with an index, comes one wave before the files
    calling its function."""
    paths = _write(tmp_path, {
        "util.py": "from logging import getLogger\n\n\ndef describe(model):\n    getLogger(__name__).info(model)\n",
        "train.py": "import torch\nfrom util import describe\n",
        "config.py": "BATCH = 32\n",
    })
    plan = waves(paths, smallest=1)
    assert _wave_of(plan, paths) == {"util.py": 0, "train.py": 2, "config.py": 0}
    assert [[paths[i] for i in wave.helpers] for wave in plan] == [[], [paths[0]], []]


def test_small_waves_are_analysed_with_the_next_one(tmp_path: Path) -> None:
    paths = _write(tmp_path, {
        "models.py": MODEL,
        "helpers.py": "import torch\nfrom models import Net\n" + EVALUATE,
        "train.py": "import torch\nfrom helpers import evaluate\n",
    })
    assert _wave_of(waves(paths, smallest=4), paths) == {"models.py": 0, "helpers.py": 1, "train.py": 1}


def test_a_notebook_or_an_unreadable_file_goes_first(tmp_path: Path) -> None:
    paths = _write(tmp_path, {"a.ipynb": "{}", "train.py": "import torch\nfrom models import Net\n"})
    (tmp_path / "models.py").write_bytes(b"\xff\xfe\x00 not python")
    paths.append(str(tmp_path / "models.py"))
    assert _wave_of(waves(paths, smallest=1), paths) == {"a.ipynb": 0, "models.py": 0, "train.py": 1}


def test_a_notebook_comes_after_the_files_its_code_cells_import(tmp_path: Path) -> None:
    """A notebook building a model class of the project is analysed with that file's summary (a weightless
    augmentation module of `aug.py` is then no model in training mode)."""
    import json

    cells = [{"cell_type": "markdown", "source": ["# Demo"]},
             {"cell_type": "code", "source": ["import torch\n", "from models import Net\n"]},
             {"cell_type": "code", "source": ["net = Net()\n", "print(net(torch.randn(2, 4)))\n"]}]
    paths = _write(tmp_path, {"models.py": MODEL, "demo.ipynb": json.dumps({"cells": cells}),
                              "broken.ipynb": "not json"})
    assert _wave_of(waves(paths, smallest=1), paths) == {"models.py": 0, "demo.ipynb": 1, "broken.ipynb": 0}


def test_each_file_of_an_ordered_package_is_analysed_once(tmp_path: Path, monkeypatch) -> None:
    """The model's file, then the helper's, then the training script: each analysis sees what it imports, and
    nothing is analysed twice."""
    _write(tmp_path, {
        "models.py": MODEL,
        "helpers.py": "import torch\n" + EVALUATE,
        "train.py": "import torch\n\nfrom helpers import evaluate\nfrom models import Net\n\n\n"
                    "def main(model, loader):\n    model.train()\n    print(evaluate(model, loader))\n",
    })
    analysed: list[int] = []
    lint_all = across_files._lint_all

    def counted(work, workers, index=None, cache_dir=None):
        analysed.append(len(work))
        return lint_all(work, workers, index, cache_dir)

    monkeypatch.setattr(across_files, "_lint_all", counted)
    monkeypatch.setattr("modelint.import_order.SMALLEST_WAVE", 1)
    run = runner.run_paths([str(tmp_path)], ConfigResolver(), runner.Overrides(), jobs=1)
    assert sum(analysed) == 3
    assert [(Path(f.path).name, f.location.row, f.code) for f in run.findings] == [("helpers.py", 7, "MDL001")]


@pytest.mark.parametrize("in_a_file", [True, False])
def test_each_wave_sends_the_pool_only_the_summaries_that_changed(monkeypatch, tmp_path: Path,
                                                                  in_a_file: bool) -> None:
    """A pool's process rebuilds a wave's index from the base it kept (read from a file, or sent with the
    batch where none could be written) and the summaries that differ from it: the same files, in the same
    order, as the index the run built."""
    import pickle

    from modelint import workers
    from modelint.summary import FileSummary, ProjectIndex

    monkeypatch.setattr(workers, "_received", None)
    monkeypatch.setattr(workers, "_base", None)
    summaries = [FileSummary(f"/p/m{i}.py", unresolved={f"m{i - 1}.f"}) for i in range(12)]
    folder = str(tmp_path) if in_a_file else None
    first = workers.SharedIndex(ProjectIndex(summaries), None, folder)
    assert (first.base.path is not None) == in_a_file and (first.base.data is None) == in_a_file
    later = summaries[:3] + [FileSummary("/p/m3.py", plain_functions={"f"})] + summaries[4:] \
        + [FileSummary("/p/extra.py")]
    second = workers.SharedIndex(ProjectIndex(later), first, folder)
    assert second.base is first.base and set(pickle.loads(second.changed)) == {"/p/m3.py", "/p/extra.py"}
    for shared, expected in ((first, summaries), (second, later)):
        sent = pickle.loads(pickle.dumps(shared))  # (what a batch carries to a process)
        assert sent.base.files == {}
        rebuilt = sent.index()
        assert [s.path for s in rebuilt.files.values()] == [s.path for s in expected]
        assert rebuilt.files["/p/m3.py"].plain_functions == expected[3].plain_functions
    # (most summaries changed: a new base, sent whole)
    third = workers.SharedIndex(ProjectIndex([FileSummary(f"/q/n{i}.py") for i in range(12)]), second, folder)
    assert third.base is not first.base and pickle.loads(third.changed) == {}
