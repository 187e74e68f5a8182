"""modelint on real code: recall and precision on the labelled corpus in ../shared/corpus.

Run: python bench/realworld.py [CORPUS_DIR] [--write-baseline] [--quiet]

The corpus holds other people's files with labelled bugs (its README gives the format
and the matching rule); they are read from there and never copied into this
repository. A finding matches a label when its code is the label's code and its line,
or the line of one of its related notes in the same file, is within 1 of the label's
line; each label is matched at most once; labels with "role": "consequence" are
optional; an MDL002 on a line labelled missing-eval-mode is neutral (both are true).

`--write-baseline` records what matches today in bench/realworld-baseline.json:
tests/test_realworld.py then fails when a recorded label stops matching or a file
gets a false report it did not have.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpus"
BASELINE = HERE / "realworld-baseline.json"

KIND_CODE = {
    "missing-eval-mode": "MDL001", "missing-no-grad": "MDL002", "training-in-eval-mode": "MDL003",
    "ineffective-grad-mode-call": "MDL004", "mode-method-not-called": "MDL005",
    "invalid-mode-argument": "MDL006", "backward-under-no-grad": "MDL007",
    "functional-dropout-ignores-mode": "MDL008", "functional-ignores-mode": "MDL008",
    "unregistered-submodule": "MDL009", "training-flag-assigned": "MDL010",
    "misspelled-mode-api": "MDL011", "mode-override-bypassed": "MDL012", "other": "*",
}
FLOW_CODES = ("MDL001", "MDL002", "MDL003", "MDL007")


@dataclass
class Score:
    matched: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, kind) of primary labels
    missed: list[tuple[str, int, str]] = field(default_factory=list)
    false: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, code)
    true_by_code: Counter = field(default_factory=Counter)  # findings that matched a label, by code

    def recall(self, kind: str | None = None) -> tuple[int, int]:
        hit = sum(1 for m in self.matched if kind is None or m[2] == kind)
        miss = sum(1 for m in self.missed if kind is None or m[2] == kind)
        return hit, hit + miss

    def precision(self, codes: tuple[str, ...] | None = None) -> tuple[int, int]:
        true = sum(n for c, n in self.true_by_code.items() if codes is None or c in codes)
        false = sum(1 for f in self.false if codes is None or f[2] in codes)
        return true, true + false


def load_manifest(corpus: Path) -> list[dict]:
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return manifest.get("files") or manifest.get("cases") or []


def findings_by_file(corpus: Path, entries: list[dict]) -> dict[str, list[tuple[str, int, set[int]]]]:
    """(code, line, related lines in the same file) of every MDL finding, by corpus-relative file."""
    from modelint.config import ConfigResolver
    from modelint.runner import Overrides, run_paths

    paths = [str(corpus / e["file"]) for e in entries]
    run = run_paths(paths, ConfigResolver(), Overrides(), jobs=os.cpu_count() or 1)
    out: dict[str, list] = {}
    for finding in run.findings:
        if not finding.code.startswith("MDL"):
            continue
        real = os.path.realpath(finding.path)
        related = {r.location.row for r in finding.related if os.path.realpath(r.path) == real}
        rel = os.path.relpath(real, os.path.realpath(corpus))
        out.setdefault(rel, []).append((finding.code, finding.location.row, related))
    return out


def score(corpus: Path = DEFAULT_CORPUS) -> Score:
    entries = load_manifest(corpus)
    found = findings_by_file(corpus, entries)
    result = Score()
    for entry in entries:
        got = found.get(os.path.normpath(entry["file"]), [])
        used: set[int] = set()
        for label in entry["expect"]:
            kind = label.get("kind") or label.get("class")
            want = KIND_CODE.get(kind, "*")
            line = label["line"]
            hits = [i for i, (code, row, related) in enumerate(got)
                    if (want == "*" or code == want)
                    and (abs(row - line) <= 1 or any(abs(r - line) <= 1 for r in related))]
            used.update(hits)
            if label.get("role", "primary") != "primary":
                continue
            (result.matched if hits else result.missed).append((entry["file"], line, kind))
        eval_lines = [x["line"] for x in entry["expect"] if KIND_CODE.get(x.get("kind")) == "MDL001"]
        for i, (code, row, _related) in enumerate(got):
            if i in used:
                result.true_by_code[code] += 1
            elif not (code == "MDL002" and any(abs(row - k) <= 1 for k in eval_lines)):
                result.false.append((entry["file"], row, code))
    return result


def baseline_of(result: Score) -> dict:
    false_by_file = Counter(f for f, _row, _code in result.false)
    return {
        "format": 1,
        "matched": sorted([f, line, kind] for f, line, kind in result.matched),
        "false_reports": dict(sorted(false_by_file.items())),
        "recall": math.floor(1000 * result.recall()[0] / max(result.recall()[1], 1)) / 1000,  # a floor to guard
    }


def _ratio(pair: tuple[int, int]) -> str:
    hit, total = pair
    return f"{hit / total:.2f} ({hit}/{total})" if total else "-"


def report(result: Score, quiet: bool = False) -> str:
    lines = [f"{'kind':<34} {'recall':>14}"]
    kinds = sorted({m[2] for m in result.matched + result.missed})
    for kind in kinds:
        lines.append(f"{kind:<34} {_ratio(result.recall(kind)):>14}")
    lines.append(f"{'all labels':<34} {_ratio(result.recall()):>14}")
    lines.append(f"precision, all findings: {_ratio(result.precision())}; "
                 f"MDL001/002/003/007: {_ratio(result.precision(FLOW_CODES))}; false reports: {len(result.false)}")
    if not quiet:
        for f, line, kind in sorted(result.missed):
            lines.append(f"miss  {f}:{line} {kind}")
        for f, line, code in sorted(result.false):
            lines.append(f"false {f}:{line} {code}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    corpus = Path(args[0]) if args else DEFAULT_CORPUS
    if not (corpus / "manifest.json").is_file():
        print(f"no corpus at {corpus} (expected {corpus / 'manifest.json'})", file=sys.stderr)
        return 2
    result = score(corpus)
    print(report(result, quiet="--quiet" in argv))
    if "--write-baseline" in argv:
        BASELINE.write_text(json.dumps(baseline_of(result), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {BASELINE.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    raise SystemExit(main(sys.argv[1:]))
