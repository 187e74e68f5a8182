"""One small file end to end: how long a cold `modelint check small.py` takes, and where the time goes.

Run: python bench/small_file.py [--repeat K]    (bench/speed.py prints the same in its report)

A cold run (no cache) pays for the interpreter, its imports and the analysis of one
7-line file that uses PyTorch (so it is parsed with libcst, not only syntax-checked).
The breakdown times the same work in stages inside fresh processes (imports of
click, libcst, modelint's modules, the rule modules, then the run itself), and the
interpreter's start and exit as the rest of those processes' wall time: medians of K.
`python -X importtime` then names the largest modules of each group (a module counts
for the first package that imported it; the fastest of K runs, since importtime's
own overhead and a busy machine only add). It does not see the rule modules, which
are imported with importlib: the stages time them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# modelint runs from this checkout, whatever copy is installed; every process gets its own
# hash seed and no cache folder from the environment, as a user's shell gives it.
MODELINT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
MODELINT_ENV.pop("MODELINT_CACHE_DIR", None)
MODELINT_ENV.pop("PYTHONHASHSEED", None)
SMALL = ("import torch\nimport torch.nn as nn\n\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\n"
         "model.eval()\nwith torch.no_grad():\n    y = model(torch.ones(1, 2))\n")
TARGET = 0.3  # seconds: what makes an editor or pre-commit run feel instant
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)")
# The cold run in stages, each timed inside one fresh process: what each stage imports is
# charged to the first stage that needs it (the standard library click pulls in counts for click).
STAGES_CHILD = r"""
import sys, time
marks = [time.perf_counter()]
import click
marks.append(time.perf_counter())
import libcst
marks.append(time.perf_counter())
import modelint.cli, modelint.config, modelint.runner, modelint.engine
marks.append(time.perf_counter())
from modelint.registry import all_rules
all_rules()
marks.append(time.perf_counter())
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    try:
        modelint.cli.main(["check", "--no-cache", "small.py"], standalone_mode=False)
    except SystemExit:
        pass
marks.append(time.perf_counter())
print(" ".join(str(b - a) for a, b in zip(marks, marks[1:])), flush=True)
import os
os._exit(0)  # as modelint's console entry leaves (modelint.cli.run)
"""
STAGES = ("import click (the command line)", "import libcst (the parser)",
          "import modelint's modules (and the standard library they add)",
          "import the rule modules", "the run: config lookup, read, parse, analyse, print")


def write_small(folder: Path) -> Path:
    path = folder / "small.py"
    path.write_text(SMALL, encoding="utf-8")
    return path


def entry() -> list[str]:
    """`modelint` as a user runs it: the console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("modelint.exe" if os.name == "nt" else "modelint")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modelint"]


def timed(command: list[str], cwd: Path, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=MODELINT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - start)
    return out


def _group(chain: list[str]) -> str | None:
    """What a module's import is charged to, from the module and its importers (innermost first)."""
    for name in chain:
        top = name.split(".")[0]
        if top in ("libcst", "click"):
            return top
    if chain[0].split(".")[0] == "modelint":
        return "modelint"
    if any(name.split(".")[0] == "modelint" for name in chain):
        return "stdlib"
    return None  # imported by the interpreter's start (site, encodings)


def import_seconds(stderr: str) -> dict[tuple[str, str], float]:
    """`-X importtime` output -> {(group, module): the module's own seconds}, charged as `_group` says."""
    entries = []  # (depth, name, self seconds), in the order printed: children before their importer
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            entries.append((len(match.group(2)), match.group(3), int(match.group(1)) / 1e6))
    totals: dict[tuple[str, str], float] = {}
    ancestors: list[tuple[int, str]] = []
    for depth, name, seconds in reversed(entries):  # importers now come before what they import
        while ancestors and ancestors[-1][0] >= depth:
            ancestors.pop()
        group = _group([name, *(n for _, n in reversed(ancestors))])
        if group is not None:
            totals[(group, name)] = seconds
        ancestors.append((depth, name))
    return totals


def breakdown(cwd: Path, repeat: int) -> list[tuple[str, float]]:
    """Where a cold run's time goes: (what, median seconds over `repeat` fresh processes)."""
    stages: list[list[float]] = [[] for _ in STAGES]
    outside: list[float] = []  # the same process's wall time from here, less its stages
    for _ in range(repeat):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", STAGES_CHILD], cwd=cwd, env=MODELINT_ENV, capture_output=True,
                             text=True)
        wall = time.perf_counter() - start
        values = [float(value) for value in run.stdout.split()]
        if len(values) != len(STAGES):
            raise SystemExit(f"the staged small-file run failed:\n{run.stdout}{run.stderr}")
        for i, value in enumerate(values):
            stages[i].append(value)
        outside.append(wall - sum(values))
    return [("interpreter start and exit (site included)", statistics.median(outside)),
            *((label, statistics.median(values)) for label, values in zip(STAGES, stages))]


def importtime_summary(cwd: Path, repeat: int) -> str:
    """`python -X importtime -m modelint check --no-cache small.py`: own time per group and the largest modules
    (fastest of `repeat` runs each, as importtime's own overhead and a busy machine only add)."""
    fastest: dict[tuple[str, str], float] = {}
    for _ in range(repeat):
        run = subprocess.run([sys.executable, "-X", "importtime", "-m", "modelint", "check", "--no-cache", "small.py"],
                             cwd=cwd, env=MODELINT_ENV, capture_output=True, text=True)
        for key, seconds in import_seconds(run.stderr).items():
            fastest[key] = min(seconds, fastest.get(key, seconds))
    groups: dict[str, float] = {}
    for (group, _), seconds in fastest.items():
        groups[group] = groups.get(group, 0.0) + seconds
    parts = []
    for group in ("libcst", "click", "modelint", "stdlib"):
        largest = sorted(((s, n) for (g, n), s in fastest.items() if g == group), reverse=True)[:3]
        detail = ", ".join(f"{n} {s * 1000:.0f}" for s, n in largest)
        parts.append(f"{group} {groups.get(group, 0.0) * 1000:.0f} ms ({detail})")
    return "; ".join(parts)


def measure_small(repeat: int) -> dict:
    """Cold and cached medians and the cold breakdown, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="modelint-small-") as folder:
        cwd = Path(folder)
        write_small(cwd)
        cold_runs = timed([*entry(), "check", "--no-cache", "small.py"], cwd, repeat)
        cached_dir = ["--cache-dir", str(cwd / "cache")]
        timed([*entry(), "check", *cached_dir, "small.py"], cwd, 1)  # fill it
        cached_runs = timed([*entry(), "check", *cached_dir, "small.py"], cwd, repeat)
        cold = statistics.median(cold_runs)
        return {"cold": cold, "cold_min": min(cold_runs), "cached": statistics.median(cached_runs),
                "breakdown": breakdown(cwd, repeat), "importtime": importtime_summary(cwd, repeat)}


def report(result: dict, repeat: int) -> str:
    lines = [f"One small file, `modelint check small.py`, median of {repeat} fresh processes: "
             f"cold {result['cold']:.3f} s (fastest {result['cold_min']:.3f} s; target ≤ {TARGET} s), "
             f"cached {result['cached']:.3f} s.", "",
             "| where the cold run's time goes | ms |", "|---|---:|"]
    lines += [f"| {what} | {seconds * 1000:.0f} |" for what, seconds in result["breakdown"]]
    lines.append(f"| total (the stages are medians: the sum is near the cold median) | "
                 f"{sum(s for _, s in result['breakdown']) * 1000:.0f} |")
    lines += ["", f"`-X importtime`, own time of the modules each group brought in (fastest of {repeat}; "
                  f"ms): {result['importtime']}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="fresh processes per figure (median)")
    args = parser.parse_args()
    load = f"; load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"{os.cpu_count()} CPU cores; Python {sys.version.split()[0]}{load}\n")
    print(report(measure_small(args.repeat), args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
