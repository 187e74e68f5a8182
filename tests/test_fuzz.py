"""Fuzzing the engine: generated programs and mangled fixtures never crash it or misplace a finding.

The default run covers 300 hypothesmith programs (generation costs ~0.4 s each here) plus mutations
of every fixture;
`MODELINT_FUZZ_EXAMPLES=2000` (or 20000) runs longer ones.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
hypothesmith = pytest.importorskip("hypothesmith")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from modelint import engine  # noqa: E402
from modelint.finding import INTERNAL_ERROR  # noqa: E402
from modelint.registry import rule_codes  # noqa: E402

CODES = rule_codes()
EXAMPLES = int(os.environ.get("MODELINT_FUZZ_EXAMPLES", "300"))
FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").rglob("*.py"))
# Generated programs rarely mention torch; this prefix makes the engine analyse them fully.
PREFIX = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def assert_sane(text: str) -> None:
    result = engine.lint_source(text, "fuzz.py", CODES)
    rows = len(text.splitlines()) + 1
    for finding in result.findings:
        assert finding.code != INTERNAL_ERROR, finding.message
        assert 1 <= finding.location.row <= rows and finding.location.column >= 1, finding
        assert (finding.end_location.row, finding.end_location.column) >= (finding.location.row, finding.location.column)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(hypothesmith.from_node())
def test_generated_programs(source: str) -> None:
    assert_sane(PREFIX + source)


def _mutations(text: str, rng: random.Random) -> list[str]:
    lines = text.splitlines()
    out = []
    for _ in range(6):
        mangled = list(lines)
        if not mangled:
            break
        i = rng.randrange(len(mangled))
        choice = rng.randrange(4)
        if choice == 0:
            del mangled[i]
        elif choice == 1 and i + 1 < len(mangled):
            mangled[i], mangled[i + 1] = mangled[i + 1], mangled[i]
        elif choice == 2:
            mangled[i] = " " * rng.choice([1, 2, 3, 8]) + mangled[i]
        else:
            mangled = mangled[: i + 1]
        out.append("\n".join(mangled) + "\n")
    return out


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_mangled_fixtures(path: Path) -> None:
    rng = random.Random(path.name)
    for text in _mutations(path.read_text(encoding="utf-8"), rng):
        assert_sane(text)
