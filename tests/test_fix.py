"""`check --fix`, `--unsafe-fixes` and `--diff`: exact output, idempotent, atomic, byte-faithful."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelint import fixer
from modelint.registry import all_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ALL = frozenset(all_rules())


def modelint(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelint", "check", "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


CASES = {
    "MDL005": ("import torch.nn as nn\nnet = nn.Dropout()\nnet.eval\n",
               "import torch.nn as nn\nnet = nn.Dropout()\nnet.eval()\n"),
    "MDL004-with": ("import torch\nwith torch.no_grad:\n    pass\n", "import torch\nwith torch.no_grad():\n    pass\n"),
    "MDL004-bare": ("import torch\ntorch.no_grad()\nx = 1\n", "import torch\nx = 1\n"),
    "MDL006": ("import torch.nn as nn\nm = nn.Linear(2, 2)\nm.train('val')\nm.train(1)\n",
               "import torch.nn as nn\nm = nn.Linear(2, 2)\nm.eval()\nm.train()\n"),
    "MDL008": (
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass M(nn.Module):\n"
        "    def forward(self, x):\n        return F.dropout(x, 0.1)\n",
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass M(nn.Module):\n"
        "    def forward(self, x):\n        return F.dropout(x, 0.1, training=self.training)\n"),
    "MDL009": (
        "from torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.blocks = [nn.Linear(4, 4) for _ in range(3)]\n        self.heads = []\n"
        "        self.heads.append(nn.Linear(4, 2))\n\n    def forward(self, x):\n"
        "        return [head(x) for head in self.heads] + [block(x) for block in self.blocks]\n",
        "from torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])\n        self.heads = nn.ModuleList()\n"
        "        self.heads.append(nn.Linear(4, 2))\n\n    def forward(self, x):\n"
        "        return [head(x) for head in self.heads] + [block(x) for block in self.blocks]\n"),
    "MDL010": ("import torch.nn as nn\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.training = False\n",
               "import torch.nn as nn\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval()\n"),
    "MDL011": ("import torch\nimport torch.nn as nn\nmodel = nn.Sequential(nn.Linear(2, 2))\nmodel.trian()\n"
               "with torch.no_gard():\n    pass\n",
               "import torch\nimport torch.nn as nn\nmodel = nn.Sequential(nn.Linear(2, 2))\nmodel.train()\n"
               "with torch.no_grad():\n    pass\n"),
}

UNSAFE_CASES = {
    "MDL001": (
        """\
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(3):
            for x, y in train_loader:
                loss = model(x).sum()
                loss.backward()
                opt.step()
            with torch.no_grad():
                out = model(x)
        """,
        """\
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for epoch in range(3):
            for x, y in train_loader:
                loss = model(x).sum()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                out = model(x)
            model.train()
        """),
    "MDL002": (
        """\
        import torch
        import torch.nn as nn


        def evaluate(loader):
            model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
            model.eval()
            return [model(x) for x in loader]
        """,
        """\
        import torch
        import torch.nn as nn


        @torch.no_grad()
        def evaluate(loader):
            model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
            model.eval()
            return [model(x) for x in loader]
        """),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_safe_fix_exact(tmp_path: Path, name: str) -> None:
    before, after = CASES[name]
    path = tmp_path / "case.py"
    path.write_text(before)
    modelint("--fix", "case.py", cwd=tmp_path)
    assert path.read_text() == after
    again = modelint("--fix", "case.py", cwd=tmp_path)
    assert path.read_text() == after, again.stdout
    code = name.split("-")[0]
    assert code not in modelint("case.py", cwd=tmp_path).stdout


@pytest.mark.parametrize("name", sorted(UNSAFE_CASES))
def test_unsafe_fix_needs_the_flag(tmp_path: Path, name: str) -> None:
    before, after = (textwrap.dedent(t) for t in UNSAFE_CASES[name])
    path = tmp_path / "case.py"
    path.write_text(before)
    shown = modelint("case.py", cwd=tmp_path).stdout
    assert "hidden fix" in shown and "--unsafe-fixes" in shown
    modelint("--fix", "case.py", cwd=tmp_path)
    assert path.read_text() == before  # unsafe fixes need --unsafe-fixes
    modelint("--fix", "--unsafe-fixes", "case.py", cwd=tmp_path)
    assert path.read_text() == after
    assert name not in modelint("case.py", cwd=tmp_path).stdout


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.py"))}


def test_fix_over_fixtures_is_stable(tmp_path: Path) -> None:
    """--fix on a copy of fixtures/ leaves only findings without a safe fix; a second --fix changes nothing."""
    copy = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, copy)
    modelint("--fix", ".", cwd=copy)
    first = _hashes(copy)
    result = modelint("--fix", ".", "--format", "json", cwd=copy)
    assert _hashes(copy) == first
    import json

    remaining = json.loads(result.stdout)
    assert all(f["fix"] is None or f["fix"]["applicability"] != "safe" for f in remaining)


def test_diff_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "case.py"
    path.write_text(CASES["MDL005"][0])
    before = _hashes(tmp_path)
    result = modelint("--diff", "case.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "+net.eval()" in result.stdout and "-net.eval" in result.stdout
    assert _hashes(tmp_path) == before
    path.write_text(CASES["MDL005"][1])
    assert modelint("--diff", "case.py", cwd=tmp_path).returncode == 0


def test_fix_keeps_bytes_crlf_bom_encoding_and_mode(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.py"
    crlf.write_bytes(b"\xef\xbb\xbfimport torch\r\nm = torch.nn.Dropout()\r\nm.eval\r\n# caf\xc3\xa9 \xf0\x9f\x9a\x80\r\n")
    os.chmod(crlf, 0o640)
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\nimport torch\nm = torch.nn.Dropout()\nm.train\n# caf\xe9\n")
    modelint("--fix", ".", cwd=tmp_path)
    assert crlf.read_bytes() == b"\xef\xbb\xbfimport torch\r\nm = torch.nn.Dropout()\r\nm.eval()\r\n# caf\xc3\xa9 \xf0\x9f\x9a\x80\r\n"
    assert stat.S_IMODE(crlf.stat().st_mode) == 0o640
    assert latin.read_bytes() == b"# -*- coding: latin-1 -*-\nimport torch\nm = torch.nn.Dropout()\nm.train()\n# caf\xe9\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".modelint-")]  # no temp files left


def test_fix_that_would_break_the_file_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "case.py"
    source = "import torch\n\n\ndef f():\n    torch.no_grad()\n"
    path.write_text(source)
    result = modelint("--fix", "case.py", cwd=tmp_path)
    assert path.read_text() == source
    assert "not applied" in result.stderr and "Traceback" not in result.stderr


def test_fix_stdin_prints_fixed_source(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "modelint", "check", "--fix", "--stdin-filename", "x.py"],
                            input=CASES["MDL005"][0], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.stdout == CASES["MDL005"][1]


def test_apply_edits_skips_overlaps() -> None:
    from modelint.finding import Edit, Location

    text = "abcdef\n"
    edits = [Edit(Location(1, 2), Location(1, 4), "X"), Edit(Location(1, 3), Location(1, 5), "Y"),
             Edit(Location(1, 7), Location(1, 7), "!")]
    assert fixer.apply_edits(text, edits) == "aXdef!\n"
