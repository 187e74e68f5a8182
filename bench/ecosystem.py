"""modelint on popular PyTorch libraries with hand-written training and evaluation loops.

Run by hand (it downloads): python bench/ecosystem.py [--cache DIR] [--only NAME,...] [--untriaged FILE]

Each package below is pinned; its wheel (or, where there is none, its sdist) is
downloaded once with pip into the cache (`.bench-cache/ecosystem/` at the
repository root by default, never tracked) and only its Python files are
unpacked. modelint then lints each package as one project, in a child process
(`python -m modelint check --format json --no-cache`), timed.

Every finding is looked up in `bench/ecosystem-triage.json`, written by people
who read the code: one entry per finding, `{"package", "file", "line", "code",
"text", "verdict", "why"}` with verdict `TP`, `FP` or `debatable`. An entry is
keyed by package, file, code and the stripped text of the reported line (`text`);
`line` picks among equal texts, so a finding whose line moved is still found.

It prints, per package, the files, lines, seconds and findings by verdict, then
precision TP / (TP + FP) over all packages (debatable findings count on neither
side). It exits 1 and lists them when any finding is not triaged or is triaged
FP, when a rule crashed (MDL000) or when a file that CPython compiles was not
analysed (E9xx); triage entries no finding matched are listed as stale.
`--untriaged FILE` writes the untriaged findings as triage entries to fill in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRIAGE = Path(__file__).resolve().parent / "ecosystem-triage.json"
DEFAULT_CACHE = ROOT / ".bench-cache" / "ecosystem"
# modelint runs from this checkout, whatever copy is installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
ENV.pop("MODELINT_CACHE_DIR", None)

# (distribution, version, top-level folders to lint). Chosen for hand-written fit/eval loops:
# trainers, RL algorithms, continual-learning strategies, forecasting models, SSL recipes.
PACKAGES = [
    ("timm", "1.0.31", ["timm"]),
    ("pytorch-lightning", "2.6.6", ["pytorch_lightning"]),
    ("accelerate", "1.15.0", ["accelerate"]),
    ("ultralytics", "8.4.190", ["ultralytics"]),
    ("sentence-transformers", "6.2.0", ["sentence_transformers"]),
    ("diffusers", "0.42.1", ["diffusers"]),
    ("transformers", "5.24.0", ["transformers"]),
    ("mmengine", "0.10.7", ["mmengine"]),
    ("torchrl", "0.14.1", ["torchrl"]),
    ("tianshou", "2.0.1", ["tianshou"]),
    ("d3rlpy", "2.8.1", ["d3rlpy"]),
    ("kornia", "0.9.0", ["kornia"]),
    ("segmentation-models-pytorch", "0.6.0", ["segmentation_models_pytorch"]),
    ("pytorch-forecasting", "1.8.0", ["pytorch_forecasting"]),
    ("neuralforecast", "3.3.0", ["neuralforecast"]),
    ("lightly", "1.6.0", ["lightly"]),
    ("pyannote-audio", "4.0.7", ["pyannote"]),
    ("torchgeo", "0.8.1", ["torchgeo"]),
    ("gluonts", "0.17.0", ["gluonts"]),
    ("open-clip-torch", "3.3.0", ["open_clip", "open_clip_train"]),
    ("avalanche-lib", "0.6.0", ["avalanche"]),
    ("stable-baselines3", "2.9.2", ["stable_baselines3"]),
    ("pytorch-tabnet", "4.1.0", ["pytorch_tabnet"]),
    ("skorch", "1.4.0", ["skorch"]),
]

VERDICTS = ("TP", "FP", "debatable")


@dataclass
class Reported:
    package: str
    file: str  # relative to the package's unpacked root
    line: int
    code: str
    text: str  # the reported line, stripped
    message: str


def fetch(name: str, version: str, folders: list[str], cache: Path) -> Path:
    """The package's Python files, unpacked under cache/src/<name>-<version>/ (downloaded once)."""
    target = cache / "src" / f"{name}-{version}"
    if (target / ".complete").exists():
        return target
    archives = cache / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    archive = _find_archive(archives, name, version)
    if archive is None:
        for binary in (["--only-binary=:all:"], ["--no-binary=:all:"]):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *binary,
                            "--dest", str(archives), f"{name}=={version}"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            archive = _find_archive(archives, name, version)
            if archive is not None:
                break
        if archive is None:
            raise SystemExit(f"could not download {name}=={version}")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for member, data in _python_members(archive):
        parts = Path(member).parts
        if archive.name.endswith((".tar.gz", ".zip")) and not archive.name.endswith(".whl"):
            parts = parts[1:]  # an sdist's top folder
            if parts and parts[0] == "src":
                parts = parts[1:]
        if not parts or parts[0] not in folders or ".." in parts:
            continue
        out = target.joinpath(*parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    (target / ".complete").write_text("")
    return target


def _find_archive(folder: Path, name: str, version: str) -> Path | None:
    stem = name.replace("-", "_").lower()
    for path in sorted(folder.iterdir()):
        lowered = path.name.lower().replace("-", "_")
        if lowered.startswith(f"{stem}_{version}".lower()) and lowered.endswith((".whl", ".tar.gz", ".zip")):
            return path
    return None


def _python_members(archive: Path):
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                if info.filename.endswith(".py"):
                    yield info.filename, handle.read(info)
    else:
        with tarfile.open(archive) as handle:
            for info in handle.getmembers():
                if info.isfile() and info.name.endswith(".py"):
                    yield info.name, handle.extractfile(info).read()


def lint(root: Path, package: str) -> tuple[list[Reported], list[dict], float]:
    """Findings (MDL), E9xx/MDL000 reports, seconds."""
    # (its own settings: under a checkout, the checkout's pyproject and .gitignore, which lists the default cache
    # folder, would exclude every file)
    settings = root / "pyproject.toml"
    if not settings.exists():
        settings.write_text("[tool.modelint]\nrespect-gitignore = false\n")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "modelint", "check", "--no-cache", "--exit-zero", "--verbose",
                          "--format", "json", "."], cwd=root, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 1):
        raise SystemExit(f"{package}: modelint exited {run.returncode}: {run.stderr[-500:]}")
    if " 0 analysed" in run.stderr and any(root.rglob("*.py")):
        # (settings that exclude the cache folder: nothing would be linted and every entry would read as stale)
        raise SystemExit(f"{package}: modelint analysed no file under {root}")
    findings, problems = [], []
    for item in json.loads(run.stdout or "[]"):
        path = Path(item["filename"])
        rel = (path if not path.is_absolute() else path.relative_to(root)).as_posix()
        code = item["code"]
        if code.startswith("E9") or code == "MDL000":
            problems.append({**item, "filename": rel})
            continue
        row = item["location"]["row"]
        lines = (root / rel).read_text(encoding="utf-8", errors="replace").splitlines()
        text = lines[row - 1].strip() if 0 < row <= len(lines) else ""
        findings.append(Reported(package, rel, row, code, text, item["message"]))
    return findings, problems, seconds


def count_lines(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*.py")]
    return len(files), sum(p.read_bytes().count(b"\n") for p in files)


def compiles(path: Path) -> bool:
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def match(findings: list[Reported], triage: list[dict]) -> tuple[dict[int, dict], list[dict]]:
    """Finding index -> its triage entry; entries nothing matched."""
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for entry in triage:
        by_key[(entry["package"], entry["file"], entry["code"], entry["text"].strip())].append(entry)
    matched: dict[int, dict] = {}
    used: set[int] = set()
    for i, finding in enumerate(findings):
        candidates = [e for e in by_key.get((finding.package, finding.file, finding.code, finding.text), [])
                      if id(e) not in used]
        if not candidates:
            continue
        best = min(candidates, key=lambda e: abs(e["line"] - finding.line))
        used.add(id(best))
        matched[i] = best
    stale = [e for e in triage if id(e) not in used]
    return matched, stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--only", default="", help="comma-separated distribution names")
    parser.add_argument("--untriaged", type=Path, help="write untriaged findings here as triage entries to fill in")
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    packages = [p for p in PACKAGES if not only or p[0] in only]
    triage = json.loads(TRIAGE.read_text(encoding="utf-8")) if TRIAGE.exists() else []
    for entry in triage:
        if entry.get("verdict") not in VERDICTS or not entry.get("why"):
            raise SystemExit(f"triage entry without a verdict or a why: {entry}")
    if only:
        triage = [e for e in triage if e["package"] in only]

    findings: list[Reported] = []
    rows = []
    failures: list[str] = []
    for name, version, folders in packages:
        root = fetch(name, version, folders, args.cache)
        files, lines = count_lines(root)
        found, problems, seconds = lint(root, name)
        print(f"  {name}: {len(found)} findings in {seconds:.1f} s", file=sys.stderr, flush=True)
        for problem in problems:
            code, rel = problem["code"], problem["filename"]
            if code == "MDL000" or compiles(root / rel):
                failures.append(f"{name}: {rel}:{problem['location']['row']}: {code} {problem['message']}")
        findings.extend(found)
        rows.append((name, version, files, lines, seconds, found))

    matched, stale = match(findings, triage)
    verdicts: Counter = Counter()
    print(f"{'package':<30} {'files':>5} {'lines':>8} {'seconds':>7} {'findings':>8} {'TP':>3} {'FP':>3} "
          f"{'deb':>3} {'new':>3}")
    index = 0
    for name, version, files, lines, seconds, found in rows:
        mine = Counter()
        for _ in found:
            entry = matched.get(index)
            mine[entry["verdict"] if entry else "new"] += 1
            index += 1
        verdicts.update(mine)
        print(f"{name + ' ' + version:<30} {files:>5} {lines:>8} {seconds:>7.1f} {len(found):>8} {mine['TP']:>3} "
              f"{mine['FP']:>3} {mine['debatable']:>3} {mine['new']:>3}")
    tp, fp = verdicts["TP"], verdicts["FP"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    total_lines = sum(r[3] for r in rows)
    total_seconds = sum(r[4] for r in rows)
    print(f"{len(rows)} packages, {total_lines} lines, {total_seconds:.1f} s; {len(findings)} findings: "
          f"TP {tp}, FP {fp}, debatable {verdicts['debatable']}, untriaged {verdicts['new']}; "
          f"precision {precision:.3f}")

    by_code: dict[str, Counter] = defaultdict(Counter)
    for i, finding in enumerate(findings):
        by_code[finding.code][matched[i]["verdict"] if i in matched else "new"] += 1
    print("by rule: " + ", ".join(
        f"{code} {c['TP']}/{c['TP'] + c['FP']}" + (f" (+{c['debatable']} debatable)" if c["debatable"] else "")
        + (f" ({c['new']} untriaged)" if c["new"] else "") for code, c in sorted(by_code.items())))

    untriaged = [f for i, f in enumerate(findings) if i not in matched]
    false = [(f, matched[i]) for i, f in enumerate(findings) if i in matched and matched[i]["verdict"] == "FP"]
    for finding in untriaged:
        failures.append(f"untriaged: {finding.package}: {finding.file}:{finding.line}: {finding.code} "
                        f"{finding.message[:120]}")
    for finding, entry in false:
        failures.append(f"false positive: {finding.package}: {finding.file}:{finding.line}: {finding.code} "
                        f"({entry['why']})")
    for entry in stale:
        print(f"stale triage entry (no such finding now): {entry['package']}: {entry['file']}:{entry['line']}: "
              f"{entry['code']} [{entry['verdict']}]")
    if args.untriaged is not None:
        skeleton = [{"package": f.package, "file": f.file, "line": f.line, "code": f.code, "text": f.text,
                     "verdict": "?", "why": "", "message": f.message} for f in untriaged]
        args.untriaged.write_text(json.dumps(skeleton, indent=1) + "\n", encoding="utf-8")
    for line in failures:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
