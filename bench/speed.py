"""How fast is modelint, against references measured in the same run on the same files.

Run: python bench/speed.py [--files N] [--corpus DIR]

Without --corpus it downloads a pinned real corpus once (the transformers 4.46.3
wheel from PyPI, ~1,800 Python files) into .bench-cache/. It prints, as seconds
and as a ratio to the single-process libcst parse of the same files: stdlib
`ast.parse`, modelint cold (no cache), warm (nothing changed), warm after one
file changed, modelint with --jobs 1, TorchFix and `ruff check --select E,F` when
they are installed, and one small file end to end. Peak RSS is that of the
child processes. Machines here are noisy: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"
PINNED = "transformers==4.46.3"


def corpus() -> Path:
    target = CACHE / "transformers-4.46.3"
    if target.is_dir():
        return target
    CACHE.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PINNED, "-d",
                    str(CACHE), "-q"], check=True)
    wheel = next(CACHE.glob("transformers-4.46.3-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith("transformers/") and name.endswith(".py"):
                archive.extract(name, target)
    return target


def subset(root: Path, limit: int | None) -> Path:
    files = sorted(root.rglob("*.py"))
    if not limit or limit >= len(files):
        return root
    step = max(1, len(files) // limit)
    out = Path(tempfile.mkdtemp(prefix="modelint-bench-"))
    for path in files[::step][:limit]:
        dest = out / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return out


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def in_process(parse, files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        try:
            parse(path.read_text(encoding="utf-8"))
        except Exception:
            pass
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=None, help="a deterministic subset of N files")
    parser.add_argument("--corpus", type=Path, default=None)
    args = parser.parse_args()
    tree = subset(args.corpus or corpus(), args.files)
    files = sorted(tree.rglob("*.py"))
    import libcst

    rows: list[tuple[str, float | None, float | None]] = []
    floor = in_process(libcst.parse_module, files)
    rows.append(("libcst parse_module, 1 process (floor)", floor, None))
    rows.append(("stdlib ast.parse, 1 process", in_process(ast.parse, files), None))
    modelint = [sys.executable, "-m", "modelint", "check", "-q", "--exit-zero"]
    cache = Path(tempfile.mkdtemp(prefix="modelint-bench-cache-"))
    rows.append(("modelint cold (no cache, all cores)", *timed([*modelint, "--no-cache", "."], tree)))
    rows.append(("modelint cold, --jobs 1", *timed([*modelint, "--no-cache", "--jobs", "1", "."], tree)))
    timed([*modelint, "--cache-dir", str(cache), "."], tree)
    rows.append(("modelint warm (cache, nothing changed)", *timed([*modelint, "--cache-dir", str(cache), "."], tree)))
    with open(files[len(files) // 2], "a", encoding="utf-8") as handle:
        handle.write("\n# touched\n")
    rows.append(("modelint warm, one file changed", *timed([*modelint, "--cache-dir", str(cache), "."], tree)))
    if shutil.which("torchfix"):
        rows.append(("TorchFix", *timed(["torchfix", "."], tree)))
    else:
        rows.append(("TorchFix (not installed: pip install torchfix)", None, None))
    if shutil.which("ruff"):
        rows.append(("ruff check --select E,F", *timed(["ruff", "check", "--select", "E,F", "--exit-zero", "."], tree)))
    else:
        rows.append(("ruff (not installed)", None, None))
    small = Path(tempfile.mkdtemp()) / "small.py"
    small.write_text("import torch\nmodel = torch.nn.Dropout()\nmodel.eval()\n")
    starts = [timed([*modelint, "--no-cache", str(small)], small.parent)[0] for _ in range(5)]
    rows.append(("one small file end to end (median of 5, cold)", statistics.median(starts), None))
    warm = [timed([*modelint, "--cache-dir", str(cache), str(small)], small.parent)[0] for _ in range(5)]
    rows.append(("one small file end to end (median of 5, cached)", statistics.median(warm), None))

    print(f"{len(files)} files, {sum(len(p.read_bytes().splitlines()) for p in files):,} lines; "
          f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}\n")
    print("| run | seconds | × libcst floor | peak RSS (MiB) |")
    print("|---|---|---|---|")
    for name, seconds, rss in rows:
        if seconds is None:
            print(f"| {name} | n/a | n/a | n/a |")
        else:
            print(f"| {name} | {seconds:.2f} | {seconds / floor:.2f} | {rss:.0f} |" if rss else
                  f"| {name} | {seconds:.2f} | {seconds / floor:.2f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
