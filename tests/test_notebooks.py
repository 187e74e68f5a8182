"""Notebooks: cells joined in order, magics neutralised in place, findings at (cell, line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "notebooks"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelint", "check", "--no-cache", *args], capture_output=True,
                          text=True, timeout=120)


def test_finding_is_reported_at_its_cell_and_line() -> None:
    result = check(str(NOTEBOOKS / "fashion_mnist.ipynb"))
    assert result.returncode == 1
    assert "fashion_mnist.ipynb:cell 4:4:21: MDL001" in result.stdout
    assert "note: " in result.stdout and "fashion_mnist.ipynb:cell 2:10:9:" in result.stdout  # its note, in its cell
    [finding] = json.loads(check("--format", "json", str(NOTEBOOKS / "fashion_mnist.ipynb")).stdout)
    assert (finding["cell"], finding["location"]["row"]) == (4, 4)
    sarif = json.loads(check("--format", "sarif", str(NOTEBOOKS / "fashion_mnist.ipynb")).stdout)
    [result] = sarif["runs"][0]["results"]
    assert result["properties"]["cell"] == 4
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 4


def test_a_bad_cell_is_reported_and_the_others_are_linted() -> None:
    result = check(str(NOTEBOOKS / "broken_cell.ipynb"))
    assert "broken_cell.ipynb:cell 3:1:" in result.stdout and "E999" in result.stdout
    assert "broken_cell.ipynb:cell 4:4:21: MDL001" in result.stdout
    assert "Traceback" not in result.stderr


def test_magics_do_not_shift_lines() -> None:
    from modelint.notebook import neutralise

    assert neutralise(["%matplotlib inline", "  !pip install x", "x = 1"]) == ["pass", "  pass", "x = 1"]
    assert neutralise(["%%time", "y = 2"]) == ["pass", "y = 2"]
    assert neutralise(["%%bash", "echo hi"]) == ["# %%bash", "# echo hi"]
    # A shell line continued with backslashes (its indented tail would be an IndentationError).
    assert neutralise(["!python export.py \\", "        --grid \\", "        --img 640", "x = \\", "  1"]) == \
        ["pass", "", "", "x = \\", "  1"]
    # A capture keeps its names bound; `!=` and a remainder are Python.
    assert neutralise(["files = !ls logs", "  t, u = %sx pwd", "a != b", "r = 7 % 2"]) == \
        ["files = ...", "  t, u = ...", "a != b", "r = 7 % 2"]


def test_automagic_lines_without_their_percent_sign_are_ipython() -> None:
    from modelint.notebook import neutralise

    # (a Colab notebook's `cd drive/My\ Drive`: IPython runs `%cd`; a line that is Python stays Python)
    assert neutralise(["cd drive/My\\ Drive", "pip install timm", "  cat log.txt", "rm -rf runs"]) == \
        ["pass", "pass", "  pass", "pass"]
    python = ["ls = sorted(files)", "cd(path)", "pip.main(['install', 'x'])", "ls -la", "pwd"]
    assert neutralise(python) == python
    # (an assignment spanning lines to a name IPython also knows as a magic is Python: its brackets close below)
    spanning = ["env = EnvUtils.create_env_from_metadata(", "    env_meta=env_meta,", "    render=False,", ")",
                "run += 1"]
    assert neutralise(spanning) == spanning


def test_a_cell_indented_as_a_whole_is_dedented_as_ipython_does(tmp_path: Path) -> None:
    # (a cell pasted with one leading space runs in Jupyter: IPython takes that indentation off every line)
    path = tmp_path / "eval.ipynb"
    _notebook(path, "import torch\nimport torch.nn as nn\n",
              " net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))\n"
              " opt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
              " for x, y in batches:\n"
              "     loss = nn.functional.cross_entropy(net(x), y)\n"
              "     opt.zero_grad()\n     loss.backward()\n     opt.step()\n"
              " with torch.no_grad():\n"
              "     print(net(test_x).argmax(1))\n")
    out = check(str(path)).stdout
    assert "E999" not in out and "eval.ipynb:cell 2:9:12: MDL001" in out


def test_only_a_line_that_starts_a_statement_is_ipython() -> None:
    from modelint.notebook import neutralise

    # `%(...)` continuing a format call, and `%` lines inside brackets or a string, are Python.
    cell = ["print('Epoch: %03d | Cost: %.4f'", "      %(epoch, cost))", 's = """', "%not a magic", '"""',
            "x = (1 +", "     2)", "%time run()"]
    assert neutralise(cell) == cell[:-1] + ["pass"]
    # IPython's help: `obj?`, `obj??`, `?obj`; a question in a comment is no help request.
    assert neutralise(["torch.nn.Module?", "  torch.nn.Module??", "?torch.load", "x = 1  # why?"]) \
        == ["pass", "  pass", "pass", "x = 1  # why?"]


def _notebook(path: Path, *cells: str) -> None:
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": [],
                                           "execution_count": None} for c in cells],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_a_notebook_is_a_caller_of_the_projects_helpers(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(
        "import torch\n\n\ndef accuracy(model, batches):\n    hits = 0\n    with torch.no_grad():\n"
        "        for x, y in batches:\n            hits += (model(x).argmax(1) == y).sum().item()\n    return hits\n")
    setup = "import torch\nfrom torch import nn\nfrom helpers import accuracy\n" \
            "model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))\n" \
            "batches = [(torch.randn(2, 4), torch.tensor([0, 1]))]\n"
    # The notebook switches to eval mode before calling the helper: the helper's guess about callers it
    # cannot see gives way to the caller it now sees.
    _notebook(tmp_path / "report.ipynb", setup, "model.eval()\nprint(accuracy(model, batches))\n")
    assert "MDL001" not in check(str(tmp_path)).stdout
    # Calling it in training mode is reported at the helper, with the notebook's cell as the note.
    _notebook(tmp_path / "report.ipynb", setup, "model.train()\nprint(accuracy(model, batches))\n")
    out = check(str(tmp_path)).stdout
    assert "helpers.py:8:" in out and "MDL001" in out
    assert "report.ipynb:cell 2:2:" in out


def test_an_exercise_cell_with_gaps_still_defines_its_class_for_the_cells_after_it() -> None:
    # The class's cell has `h_next = <YOUR CODE HERE>`: reported (E999), then read with that statement blanked,
    # so its layers are known: Embedding and Linear only, whose mode changes nothing ...
    result = check("--select", "MDL", str(NOTEBOOKS / "exercise_with_gaps.ipynb"))
    assert "exercise_with_gaps.ipynb:cell 3:12:18: E999" in result.stdout
    assert "MDL001" not in result.stdout, result.stdout
    # ... and with a Dropout, sampling in training mode is reported in the cell that does it.
    result = check("--select", "MDL", str(NOTEBOOKS / "exercise_with_gaps_and_dropout.ipynb"))
    assert "exercise_with_gaps_and_dropout.ipynb:cell 5:7:28: MDL001" in result.stdout
    assert "Traceback" not in result.stderr


def test_blanking_keeps_rows_and_gives_up_on_a_broken_structure() -> None:
    from modelint import limits
    from modelint.notebook import blank_errors

    cell = ["class A(nn.Module):", "    def forward(self, x):", "        y = f(", "            <YOUR CODE>",
            "            is_causal=True)", "        return <OUT>", "for epoch in range(<N>):", "    model.train(False)"]
    blanked = blank_errors(cell, limits.cpython_parse("\n".join(cell)))
    assert blanked == ["class A(nn.Module):", "    def forward(self, x):", "        pass", "", "", "        pass",
                       "if True:", "    model.train(False)"]
    broken = ["for epoch in range(3)", "    pass"]
    assert blank_errors(broken, limits.cpython_parse("\n".join(broken))) is None


def test_a_notebook_shows_the_order_it_runs_an_objects_methods_in(tmp_path: Path) -> None:
    """A learner of a .py file whose `predict_proba()` leaves its network in eval mode and whose `fit()` never
    switches back: a notebook that only fits shows the guess about its users is wrong; one that fits again
    after predicting shows it right."""
    learner = Path(__file__).resolve().parent.parent / "fixtures" / "cross_file" / "tabular_learner_pkg" / "learner.py"
    (tmp_path / "learner.py").write_text(learner.read_text(encoding="utf-8"), encoding="utf-8")
    setup = "import numpy as np\nfrom learner import TabularClassifier\nclf = TabularClassifier(32, 3)\n"
    _notebook(tmp_path / "run.ipynb", setup, "clf.fit(np.zeros((64, 32)), np.zeros(64))\n")
    assert "MDL003" not in check(str(tmp_path)).stdout
    _notebook(tmp_path / "run.ipynb", setup, "clf.fit(np.zeros((64, 32)), np.zeros(64))\n"
              "p = clf.predict_proba(np.zeros((4, 32)))\nclf.fit(np.zeros((64, 32)), np.zeros(64))\n")
    assert "learner.py:34:" in check(str(tmp_path)).stdout


def test_a_notebook_sees_the_project_classes_it_builds(tmp_path: Path) -> None:
    """A notebook is analysed after the files its cells import: an augmentation module of the project with no
    weights is no model evaluated in training mode; one with weights is."""
    module = ("import torch\nfrom torch import nn\n\n\nclass Brightness(nn.Module):\n"
              "    def __init__(self, strength=0.4):\n        super().__init__()\n"
              "        self.range = self._checked(strength)\n\n    def _checked(self, value):\n"
              "        return [max(1 - value, 0), 1 + value]\n\n    def forward(self, images):\n"
              "        factor = torch.empty(images.shape[0], 1, 1, 1).uniform_(*self.range)\n"
              "        return (images * factor).clamp(0, 1)\n")
    (tmp_path / "augment.py").write_text(module)
    cells = ("import torch\nfrom torch import nn\nfrom augment import Brightness\n",
             "aug = nn.Sequential(Brightness(0.5))\nout = aug(torch.rand(8, 3, 32, 32))\n"
             "print(out.data.cpu().numpy().mean())\n")
    _notebook(tmp_path / "demo.ipynb", *cells)
    assert "MDL00" not in check(str(tmp_path)).stdout
    (tmp_path / "augment.py").write_text(module.replace("        self.range = self._checked(strength)\n",
                                                        "        self.range = self._checked(strength)\n"
                                                        "        self.mix = nn.Conv2d(3, 3, 1)\n").replace(
        "return (images * factor).clamp(0, 1)", "return self.mix((images * factor).clamp(0, 1))"))
    assert "demo.ipynb:cell 2:2:" in check(str(tmp_path)).stdout
