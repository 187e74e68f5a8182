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


def test_only_a_line_that_starts_a_statement_is_ipython() -> None:
    from modelint.notebook import neutralise

    # `%(...)` continuing a format call, and `%` lines inside brackets or a string, are Python.
    cell = ["print('Epoch: %03d | Cost: %.4f'", "      %(epoch, cost))", 's = """', "%not a magic", '"""',
            "x = (1 +", "     2)", "%time run()"]
    assert neutralise(cell) == cell[:-1] + ["pass"]
    # IPython's help: `obj?`, `obj??`, `?obj`; a question in a comment is no help request.
    assert neutralise(["torch.nn.Module?", "  torch.nn.Module??", "?torch.load", "x = 1  # why?"]) \
        == ["pass", "  pass", "pass", "x = 1  # why?"]
