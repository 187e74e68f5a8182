"""Every fixture, both ways: each `# expect: CODE` line is reported with that code,
and nothing else is reported (clean fixtures have no annotation at all)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from modelint import engine
from modelint.registry import all_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
_EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9, ]+)")


def fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*.py"))


def expected(path: Path) -> Counter:
    out: Counter = Counter()
    for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _EXPECT.search(line)
        if match:
            for code in match.group(1).split(","):
                if code.strip():
                    out[(row, code.strip())] += 1
    return out


def lint(path: Path) -> Counter:
    result = engine.lint_path(str(path), frozenset(all_rules()))
    return Counter((f.location.row, f.code) for f in result.findings)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture(path: Path) -> None:
    want = expected(path)
    got = lint(path)
    missing = sorted(want - got)
    unexpected = sorted(got - want)
    assert not missing and not unexpected, f"missing={missing} unexpected={unexpected}"


def test_every_rule_has_buggy_and_clean_fixtures() -> None:
    for code, rule in all_rules().items():
        folder = FIXTURES / rule.fixtures
        assert folder.is_dir(), f"{code}: no fixtures folder {folder}"
        buggy = [p for p in folder.glob("*.py") if expected(p)]
        clean = [p for p in folder.glob("*.py") if not expected(p)]
        assert len(buggy) >= 3 and len(clean) >= 3, f"{code}: {len(buggy)} buggy, {len(clean)} clean fixtures"
        assert any(c == code for p in buggy for (_, c) in expected(p)), f"{code}: no line annotated with it"


def test_seed_mistakes_are_caught(tmp_path: Path) -> None:
    """The seed articles wrote `model.trian()` and `torch.zero_grad()`: both are MDL011."""
    trian = tmp_path / "trian.py"
    trian.write_text("import torch.nn as nn\nmodel = nn.Sequential(nn.Linear(4, 4), nn.Dropout())\nmodel.trian()\n")
    zero = tmp_path / "zero.py"
    zero.write_text("import torch\nwith torch.zero_grad():\n    pass\n")
    for path, row in ((trian, 3), (zero, 2)):
        assert (row, "MDL011") in lint(path)
