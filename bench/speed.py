"""How fast is modelint, against references measured in the same run on the same files.

Run: python bench/speed.py [--files N] [--corpus DIR] [--no-torchfix] [--repeat-small K] [--repeat-cold K]

Without --corpus it downloads a pinned real corpus once (the transformers 4.46.3
wheel from PyPI, ~1,800 Python files) into .bench-cache/ at the repository root
and unpacks only `transformers/**/*.py`. Every run works on a fresh copy of those
files in a temporary folder outside the repository (so no repository config or
.gitignore applies, and touching a file never alters the pinned corpus). `--files N`
takes a deterministic subset: every k-th file of the sorted list.

It prints one markdown table, each row as seconds and as a ratio to the
single-process libcst `parse_module` of the same files:

- libcst `parse_module` and stdlib `ast.parse`, one process (parse loop only,
  files already read; the child's interpreter start is not counted);
- modelint cold (no cache, default --jobs; it and the libcst floor are run in
  turns, --repeat-cold times, each row the median), cold with --jobs 1, warm (cache,
  nothing changed) and warm after one file changed -- the warm rows print
  "n/a (no cache yet)" when this modelint has no --no-cache option. Every run is a
  new process with its own hash seed, as a user's are: the cache is filled by one
  process and read by others, and `--verbose` says how many results each warm run
  took from it (the hit rate) and how many it analysed;
- TorchFix over the same tree (installed into its own virtual environment under
  .bench-cache/, because it pins an older libcst than modelint's; "not available"
  when it cannot be installed);
- `ruff check --select E,F` for scale (its own cache off);
- one small file end to end, process start to exit, median of 5, cold and
  cached, and where the cold run's time goes (bench/small_file.py: the imports in
  stages and by `-X importtime`, the rule modules, the run itself).

Peak RSS is measured for every row, which all run as child processes: "largest
process" is the kernel's maximum resident set of the child and the processes it
waited for (os.wait4), "all processes" is the sum over the child's process tree,
sampled every 0.2 s from /proc (Linux only). Machines here are noisy: compare
ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import small_file
from small_file import MODELINT_ENV  # this checkout's modelint; a hash seed of its own per process

ROOT = Path(__file__).resolve().parent.parent
# `check --verbose`: "N from the cache, M analysed".
CACHE_REPORT = re.compile(r"(\d+) from the cache, (\d+) analysed")
CACHE = ROOT / ".bench-cache"
VERSION = "4.46.3"
PINNED = f"transformers=={VERSION}"
TOOLS_VENV = CACHE / "tools-venv"

# The floors run in a child process so that their memory is measured like every other row's.
FLOOR_CHILD = r"""
import sys, time
kind, listing = sys.argv[1], sys.argv[2]
texts = []
for path in open(listing, encoding="utf-8").read().splitlines():
    with open(path, encoding="utf-8") as handle:
        texts.append(handle.read())
if kind == "libcst":
    import libcst
    parse = libcst.parse_module
else:
    import ast
    parse = ast.parse
failed = 0
start = time.perf_counter()
for text in texts:
    try:
        parse(text)
    except Exception:
        failed += 1
print(time.perf_counter() - start, failed)
"""


# --- corpus ---------------------------------------------------------------------------------------------------------

def corpus() -> Path:
    """The pinned corpus, downloaded and unpacked once."""
    target = CACHE / f"transformers-{VERSION}"
    done = target / ".complete"
    if done.is_file():
        return target
    CACHE.mkdir(exist_ok=True)
    wheels = list(CACHE.glob(f"transformers-{VERSION}-*.whl"))
    if not wheels:
        print(f"downloading {PINNED} (once) into {CACHE} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PINNED,
                        "-d", str(CACHE), "-q"], check=True)
        wheels = list(CACHE.glob(f"transformers-{VERSION}-*.whl"))
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as archive:
        for name in archive.namelist():
            if name.startswith("transformers/") and name.endswith(".py"):
                archive.extract(name, target)
    done.write_text("ok\n")
    return target


def working_copy(root: Path, limit: int | None) -> Path:
    """A fresh copy of the corpus (or of every k-th file of it) in a temporary folder."""
    files = sorted(p for p in root.rglob("*.py") if p.is_file())
    if limit and limit < len(files):
        step = max(1, len(files) // limit)
        files = files[::step][:limit]
    out = Path(tempfile.mkdtemp(prefix="modelint-bench-"))
    for path in files:
        dest = out / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return out


# --- tools ----------------------------------------------------------------------------------------------------------

def _tools_bin() -> Path:
    return TOOLS_VENV / ("Scripts" if os.name == "nt" else "bin")


def tool(name: str, package: str) -> list[str] | None:
    """A command for `name`: from PATH, else from the bench's own virtual environment (installed on first use)."""
    found = shutil.which(name)
    if found:
        return [found]
    exe = _tools_bin() / name
    if not exe.exists():
        try:
            if not (_tools_bin() / "python").exists():
                venv.create(TOOLS_VENV, with_pip=True)
            print(f"installing {package} into {TOOLS_VENV} ...", file=sys.stderr)
            subprocess.run([str(_tools_bin() / "python"), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", package],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"cannot install {package}: {error}", file=sys.stderr)
            return None
    return [str(exe)] if exe.exists() else None


def version_of(command: list[str]) -> str:
    try:
        out = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


# --- measuring ------------------------------------------------------------------------------------------------------

@dataclass
class Measured:
    seconds: float
    rss_largest: float | None  # MiB
    rss_tree: float | None  # MiB
    stdout: str
    returncode: int
    timed_out: bool = False
    stderr: str = ""


def _tree_rss(root_pid: int) -> int | None:
    """Sum of VmRSS (KiB) over root_pid and its descendants, from /proc."""
    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
            parents[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total


def measure(command: list[str], cwd: Path, timeout: float | None = None, env: dict | None = None) -> Measured:
    """Run a command to its end: wall time, peak RSS (largest process, process tree), stdout, stderr.

    Past `timeout` seconds the command's whole process group is killed and `timed_out` is set.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=os.name == "posix", env=env)
        peak_tree = [0]
        stop = threading.Event()
        expired = threading.Event()

        def sample() -> None:
            waited = 0.0
            while not stop.wait(0.2):
                waited += 0.2
                if timeout is not None and waited >= timeout and not expired.is_set():
                    expired.set()
                    try:
                        os.killpg(proc.pid, 9) if os.name == "posix" else proc.kill()
                    except OSError:
                        pass
                found = _tree_rss(proc.pid)
                if found is None:
                    peak_tree[0] = -1
                elif peak_tree[0] >= 0:
                    peak_tree[0] = max(peak_tree[0], found)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rss_largest = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            # Linux reports KiB, macOS bytes.
            rss_largest = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        else:
            proc.wait()
        elapsed = time.perf_counter() - start
        stop.set()
        sampler.join()
        if expired.is_set() and os.name == "posix":
            try:
                os.killpg(proc.pid, 9)  # workers left behind by the killed leader
            except OSError:
                pass
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        err.seek(0)
        errors = err.read().decode("utf-8", "replace")
    tree = peak_tree[0] / 1024 if peak_tree[0] > 0 else None
    return Measured(elapsed, rss_largest, tree, text, proc.returncode, expired.is_set(), errors)


def median_of(runs: list[Measured]) -> Measured:
    """The run closest to the median, carrying the median's seconds."""
    middle = statistics.median(r.seconds for r in runs)
    chosen = min(runs, key=lambda m: abs(m.seconds - middle))
    chosen.seconds = middle
    return chosen


def hit_rate(stderr: str) -> tuple[float, int, int] | None:
    """(hit rate, results from the cache, results analysed) from `check --verbose`; None if it did not say."""
    match = CACHE_REPORT.search(stderr)
    if not match:
        return None
    hits, analysed = int(match.group(1)), int(match.group(2))
    return (hits / (hits + analysed) if hits + analysed else 1.0), hits, analysed


def floor(kind: str, files: list[Path], workdir: Path) -> Measured:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as listing:
        listing.write("\n".join(str(p) for p in files))
    try:
        run = measure([sys.executable, "-c", FLOOR_CHILD, kind, listing.name], workdir)
    finally:
        os.unlink(listing.name)
    try:
        seconds, failed = run.stdout.split()
        run.seconds = float(seconds)
        run.stdout = failed
    except ValueError:
        raise SystemExit(f"the {kind} floor failed:\n{run.stdout}") from None
    return run


def findings_summary(statistics_output: str) -> str:
    """`--statistics` lines (`count<TAB>code<TAB>name`) -> `N findings (E999: k, ...)`."""
    counts = {}
    for line in statistics_output.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            counts[parts[1].strip()] = int(parts[0])
    total = sum(counts.values())
    detail = ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))
    return f"{total} findings ({detail})" if detail else "0 findings"


# --- main -----------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=None, help="a deterministic subset of N files (every k-th)")
    parser.add_argument("--corpus", type=Path, default=None, help="use this folder instead of the pinned corpus")
    parser.add_argument("--no-torchfix", action="store_true", help="skip TorchFix (slow: ~0.5-2 s per file)")
    parser.add_argument("--torchfix-limit", type=float, default=1800,
                        help="stop TorchFix after this many seconds and print a lower bound (default 1800)")
    parser.add_argument("--repeat-small", type=int, default=5, help="runs of the small-file row (median)")
    parser.add_argument("--repeat-warm", type=int, default=3, help="warm runs, each a new process (median)")
    parser.add_argument("--repeat-cold", type=int, default=3,
                        help="runs of the floor and of the cold run, in turns (median of each)")
    args = parser.parse_args()

    tree = working_copy(args.corpus or corpus(), args.files)
    files = sorted(tree.rglob("*.py"))
    lines = sum(len(p.read_bytes().splitlines()) for p in files)
    print(f"corpus: {len(files)} files, {lines:,} lines (copied to {tree})", file=sys.stderr)

    rows: list[tuple[str, Measured | None, str]] = []  # (name, measured, note when not measured)
    notes: list[str] = []

    def row(name: str, measured: Measured | None, note: str = "") -> Measured | None:
        rows.append((name, measured, note))
        if measured is not None:
            print(f"  {name}: {measured.seconds:.2f} s", file=sys.stderr)
        return measured

    modelint = [sys.executable, "-m", "modelint", "check", "--exit-zero", "--statistics"]
    help_text = subprocess.run([sys.executable, "-m", "modelint", "check", "--help"], capture_output=True,
                               text=True, env=MODELINT_ENV).stdout
    has_cache = "--no-cache" in help_text
    no_cache = ["--no-cache"] if has_cache else []
    # The floor and the cold run, the ratio the target is on, are measured in turns: a slow spell of a shared
    # machine (seen to move one run by a fifth) then falls on both, and each row is the median of its runs.
    floors: list[Measured] = []
    colds: list[Measured] = []
    for _ in range(max(1, args.repeat_cold)):
        floors.append(floor("libcst", files, tree))
        colds.append(measure([*modelint, *no_cache, "."], tree, env=MODELINT_ENV))
    turns = f"median of {len(floors)}, in turns with the cold run" if len(floors) > 1 else "one run"
    libcst_floor = row(f"libcst `parse_module`, 1 process (floor; {turns})", median_of(floors))
    base = libcst_floor.seconds
    if len(floors) > 1:
        notes.append("floor runs: " + ", ".join(f"{m.seconds:.2f}" for m in floors) + " s; cold runs: "
                     + ", ".join(f"{m.seconds:.2f}" for m in colds) + " s")
    if libcst_floor.stdout != "0":
        notes.append(f"libcst could not parse {libcst_floor.stdout} file(s) of the corpus")
    row("stdlib `ast.parse`, 1 process", floor("ast", files, tree))

    cold = row(f"modelint cold ({'no cache, ' if has_cache else ''}default --jobs = {os.cpu_count()}; "
               f"{turns.replace('cold run', 'floor')})", median_of(colds))
    notes.append(f"modelint cold run: {findings_summary(cold.stdout)}")
    if cold.returncode != 0:
        notes.append(f"modelint cold run exited {cold.returncode}")
    row("modelint cold, `--jobs 1`", measure([*modelint, *no_cache, "--jobs", "1", "."], tree, env=MODELINT_ENV))
    warm = warm_hits = None
    cache_dir = Path(tempfile.mkdtemp(prefix="modelint-bench-cache-"))
    if has_cache:
        verbose = ["--verbose"] if "--verbose" in help_text else []
        with_cache = [*modelint, *verbose, "--cache-dir", str(cache_dir)]
        measure([*with_cache, "."], tree, env=MODELINT_ENV)  # fill it, in a process of its own
        runs = [measure([*with_cache, "."], tree, env=MODELINT_ENV) for _ in range(args.repeat_warm)]
        warm = row(f"modelint warm (cache, nothing changed; median of {args.repeat_warm} new processes)",
                   median_of(runs))
        rates = [hit_rate(r.stderr) for r in runs]
        if all(rates):
            warm_hits = min(rate for rate, _, _ in rates)
            notes.append("warm runs: " + "; ".join(f"{hits} results from the cache, {analysed} analysed"
                                                    for _, hits, analysed in rates))
        folders = [p.name for p in cache_dir.iterdir() if p.is_dir()]
        notes.append(f"cache folder after the fill and {args.repeat_warm} warm runs: {len(folders)} fingerprint "
                     f"folder{'s' if len(folders) != 1 else ''} ({', '.join(folders)})")
        touched = files[len(files) // 2]
        with open(touched, "a", encoding="utf-8") as handle:
            handle.write("\n# touched by bench/speed.py\n")
        changed = row("modelint warm, one file changed", measure([*with_cache, "."], tree, env=MODELINT_ENV))
        if hit_rate(changed.stderr):
            _, hits, analysed = hit_rate(changed.stderr)
            notes.append(f"one file changed: {hits} results from the cache, {analysed} analysed")
    else:
        row("modelint warm (cache, nothing changed)", None, "n/a (no cache yet)")
        row("modelint warm, one file changed", None, "n/a (no cache yet)")

    torchfix_run = None
    if args.no_torchfix:
        row("TorchFix", None, "skipped (--no-torchfix)")
    else:
        torchfix = tool("torchfix", "torchfix")
        if torchfix is None:
            row("TorchFix", None, "not available")
        else:
            torchfix_run = row(f"TorchFix ({version_of(torchfix)}, default jobs)",
                               measure([*torchfix, "."], tree, timeout=args.torchfix_limit))
    ruff = tool("ruff", "ruff")
    if ruff is None:
        row("ruff check --select E,F", None, "not available")
    else:
        row(f"`ruff check --select E,F` ({version_of(ruff)}, no cache)",
            measure([*ruff, "check", "--isolated", "--no-cache", "--select", "E,F", "--exit-zero", "--quiet", "."],
                    tree))

    small_dir = Path(tempfile.mkdtemp(prefix="modelint-bench-small-"))
    small_file.write_small(small_dir)
    entry = small_file.entry()
    small_runs = [measure([*entry, "check", *no_cache, "small.py"], small_dir, env=MODELINT_ENV)
                  for _ in range(args.repeat_small)]
    small_row = row(f"one small file end to end, `modelint check small.py`, cold (median of {args.repeat_small})",
                    median_of(small_runs))
    small_fastest = min(r.seconds for r in small_runs)
    if has_cache:
        cached_dir = ["--cache-dir", str(small_dir / "cache")]
        measure([*entry, "check", *cached_dir, "small.py"], small_dir, env=MODELINT_ENV)
        cached = [measure([*entry, "check", *cached_dir, "small.py"], small_dir, env=MODELINT_ENV)
                  for _ in range(args.repeat_small)]
        row(f"one small file end to end, cached (median of {args.repeat_small})", median_of(cached))
    else:
        row("one small file end to end, cached", None, "n/a (no cache yet)")

    from importlib.metadata import version

    sys.path.insert(0, str(ROOT))
    from modelint import __version__

    print(f"{len(files)} files of transformers {VERSION}, {lines:,} lines"
          f"{' (every k-th file: --files %d)' % args.files if args.files else ''}; "
          f"{os.cpu_count()} CPU cores; Python {sys.version.split()[0]}; libcst {version('libcst')}; "
          f"modelint {__version__}\n")
    print("| run | seconds | × libcst floor | peak RSS, largest process (MiB) | peak RSS, all processes (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for name, measured, note in rows:
        if measured is None:
            print(f"| {name} | {note} | | | |")
            continue
        largest = f"{measured.rss_largest:.0f}" if measured.rss_largest else ""
        total = f"{measured.rss_tree:.0f}" if measured.rss_tree else ""
        if measured.timed_out:
            print(f"| {name} | > {measured.seconds:.0f} (stopped) | > {measured.seconds / base:.2f} | {largest} | {total} |")
        else:
            print(f"| {name} | {measured.seconds:.2f} | {measured.seconds / base:.2f} | {largest} | {total} |")
    print()
    targets = [f"cold / libcst floor = {cold.seconds / base:.2f} (target ≤ 1.0)"]
    if torchfix_run is not None:
        bound = "> " if torchfix_run.timed_out else ""
        targets.append(f"TorchFix / cold = {bound}{torchfix_run.seconds / cold.seconds:.1f}× (target ≥ 10)")
    if warm is not None:
        targets.append(f"warm / cold = {warm.seconds / cold.seconds:.3f} (target ≤ 0.05)")
        targets.append(f"warm hit rate = {warm_hits:.0%} (target 100 %)" if warm_hits is not None
                       else "warm hit rate: not reported by this modelint (no --verbose)")
    targets.append(f"small file cold = {small_row.seconds:.2f} s, fastest {small_fastest:.2f} s "
                   f"(target ≤ {small_file.TARGET} s)")
    print("Targets: " + "; ".join(targets) + ".")
    for note in notes:
        print(f"- {note}")
    print()
    print(f"Where the small file's cold run goes (median of {args.repeat_small} fresh processes per stage):\n")
    print("| stage | ms |")
    print("|---|---:|")
    for what, seconds in small_file.breakdown(small_dir, args.repeat_small):
        print(f"| {what} | {seconds * 1000:.0f} |")
    print(f"\n`-X importtime` (own time of the modules each group brought in, fastest of {args.repeat_small}): "
          f"{small_file.importtime_summary(small_dir, args.repeat_small)}.")
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(cache_dir, ignore_errors=True)
    shutil.rmtree(small_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
