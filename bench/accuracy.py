"""Precision, recall and F1 of modelint on the annotated fixtures, per rule and overall.

Run: python bench/accuracy.py [FIXTURES_DIR]

A true positive is a reported (file, line, code) that a `# expect: CODE` comment
announces; a false positive is any other report; a false negative an announced
line that was not reported. Every miss is listed so it can be looked at.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from modelint.config import ConfigResolver
from modelint.registry import all_rules
from modelint.runner import Overrides, run_paths

_EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9, ]+)")


def expected(root: Path) -> set[tuple[str, int, str]]:
    out = set()
    for path in root.rglob("*.py"):
        for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = _EXPECT.search(line)
            if match:
                out.update((str(path.resolve()), row, c.strip()) for c in match.group(1).split(",") if c.strip())
    return out


def reported(root: Path) -> set[tuple[str, int, str]]:
    found = set()
    # Folder by folder, as the test suite does: each top-level folder is one "project".
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        run = run_paths([str(folder)], ConfigResolver(), Overrides(), jobs=1)
        found.update((str(Path(f.path).resolve()), f.location.row, f.code) for f in run.findings
                     if f.path.endswith(".py"))  # notebooks are checked by tests/test_notebooks.py
    return found


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "fixtures"
    want, got = expected(root), reported(root)
    stats: dict[str, Counter] = defaultdict(Counter)
    for item in got & want:
        stats[item[2]]["tp"] += 1
    for item in got - want:
        stats[item[2]]["fp"] += 1
    for item in want - got:
        stats[item[2]]["fn"] += 1
    codes = sorted(set(all_rules()) | set(stats))
    print(f"{'rule':<8} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>9} {'recall':>7} {'f1':>6}")
    total: Counter = Counter()
    for code in codes + ["overall"]:
        c = total if code == "overall" else stats[code]
        if code != "overall":
            total.update(c)
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        print(f"{code:<8} {tp:>4} {fp:>4} {fn:>4} {precision:>9.3f} {recall:>7.3f} {f1:>6.3f}")
    for label, items in (("false positive", got - want), ("false negative", want - got)):
        for path, row, code in sorted(items):
            print(f"{label}: {Path(path).relative_to(root.resolve())}:{row}: {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
