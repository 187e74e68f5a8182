"""How often does `modelint check --runtime` reach a verdict? Over the fixtures and over real packages.

    python bench/runtime_reach.py                       # fixtures + packages, with this interpreter
    python bench/runtime_reach.py --venv /tmp/reach     # make (once) and use a throwaway venv that has
                                                        # the packages and their dependencies installed
    python bench/runtime_reach.py --only fixtures       # or: --only packages

For each set it prints the verdict counts of the probe-able findings (MDL001/002/003/008/009/010/012)
and the `not run` reasons grouped by kind, then every `confirmed` on a package, to be read by a
person (is it right?). The packages are linted where they are installed, as a user would run
modelint on a checkout of them; their code runs only in the probe child, as always.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBED = "MDL001,MDL002,MDL003,MDL008,MDL009,MDL010,MDL012"
PACKAGES = {"pytorch_tabnet": "pytorch-tabnet", "skorch": "skorch", "torch_geometric": "torch-geometric",
            "d2l": "d2l"}
# What the fixtures import besides torch, installed in the venv too: a fixture is a project "whose
# dependencies are installed". (A transformers checkpoint comes from the hub, which a probe cannot reach:
# the same class is built from a small configuration instead, and the verdict says so.)
FIXTURE_PACKAGES = ["torchvision", "timm", "pandas", "scikit-learn", "transformers"]
# Grouping of `not run` reasons: the first pattern that matches names the group.
GROUPS = (
    (r"notebook cells", "notebook cell (export to .py)"),
    (r"timed out", "timeout"),
    (r"No module named|package `", "a package is not installed"),
    (r"loads it \(", "model loaded from a file or a hub"),
    (r"no nn\.Module to build", "no construction in the project (model only passed in)"),
    (r"constructor needs arguments", "a constructor argument that is not a size (hint needed)"),
    (r"could not infer an input", "no input shape found (probe-input hint needed)"),
    (r"constructing .* failed", "the constructor raised"),
    (r"forward pass failed", "the forward pass raised"),
    (r"not inside an nn\.Module class", "functional call outside a module class"),
    (r"cannot tell the mode", "mode unknown statically"),
    (r"importing .* failed", "the file cannot be imported"),
)


def group(reason: str) -> str:
    for pattern, name in GROUPS:
        if re.search(pattern, reason or ""):
            return name
    return (reason or "?")[:60]


def run_check(python: str, paths: list[str], cwd: Path, timeout: float) -> list[dict]:
    command = [python, "-m", "modelint", "check", "--runtime", "--no-cache", "--format", "json", "--select", PROBED,
               "--runtime-timeout", str(timeout), *paths]
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        return [f for f in json.loads(completed.stdout or "[]") if f.get("runtime")]
    except json.JSONDecodeError:
        sys.exit(f"modelint failed on {paths}: {completed.stderr[-2000:]}")


def report(title: str, findings: list[dict], show_confirmed: bool = False) -> dict:
    counts = collections.Counter(f["runtime"]["verdict"] for f in findings)
    total = len(findings)
    verdicts = counts["confirmed"] + counts["not reproduced"]
    share = verdicts / total if total else 0.0
    print(f"\n## {title}: {total} probe-able findings, {counts['confirmed']} confirmed, "
          f"{counts['not reproduced']} not reproduced, {counts['not run']} not run: {share:.0%} with a verdict")
    reasons = collections.Counter(group(f["runtime"].get("reason", "")) for f in findings
                                  if f["runtime"]["verdict"] == "not run")
    for reason, count in reasons.most_common():
        print(f"  {count:3d}  not run: {reason}")
    for finding in findings:
        runtime = finding["runtime"]
        if show_confirmed or runtime["verdict"] == "not reproduced":
            where = f"{finding['filename'].split('site-packages/')[-1]}:{finding['location']['row']}"
            print(f"  - {runtime['verdict']}: {where} {finding['code']} "
                  f"[{runtime.get('constructed') or runtime.get('module')}] {runtime.get('reason', '')[:300]}")
    return {"findings": total, **counts, "share": share}


def make_venv(folder: Path, packages: list[str]) -> str:
    """A throwaway venv with this interpreter's torch, the packages (with their dependencies) and modelint."""
    python = folder / "bin" / "python"
    if python.exists():
        return str(python)
    import torch  # the version to pin, so that pip does not fetch another build

    # This interpreter's torch is seen from the venv (no second download of a multi-GB wheel); the
    # constraint keeps pip from replacing it when a package asks for another version.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(folder)], check=True)
    constraint = folder / "constraints.txt"
    constraint.write_text(f"torch=={torch.__version__}\n")
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(constraint)]
    subprocess.run([*pip, *packages], check=True)
    _torchvision_without_ops(str(python))
    subprocess.run([*pip, "-e", str(REPO)], check=True)
    return str(python)


def _torchvision_without_ops(python: str) -> None:
    """PyPI's torchvision is built against PyPI's CUDA torch; next to a CPU build of torch its C++ ops
    fail to register and `import torchvision` raises. Without the extension file torchvision imports
    and runs its models and transforms (only ops such as nms are missing), which is all a probe needs."""
    check = [python, "-c", "import torchvision"]
    if subprocess.run(check, capture_output=True).returncode == 0:
        return
    found = subprocess.run([python, "-c", "import importlib.util as u; s = u.find_spec('torchvision'); "
                            "print(s.submodule_search_locations[0] if s else '')"], capture_output=True, text=True)
    folder = Path(found.stdout.strip()) if found.stdout.strip() else None
    for extension in folder.glob("_C*.so") if folder else ():
        extension.unlink()
    # ... and it registers fake kernels for those ops unconditionally: only when they exist.
    meta = folder / "_meta_registrations.py" if folder else None
    if meta is not None and meta.is_file():
        text = meta.read_text()
        text = re.sub(r'@torch\.library\.register_fake\(("torchvision::\w+")\)',
                      r'@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda f: f))', text)
        meta.write_text(text)


def package_folder(python: str, module: str) -> str | None:
    code = f"import importlib.util as u; s = u.find_spec({module!r}); print(s.submodule_search_locations[0] if s else '')"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()
    return out or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, help="make (if missing) and use this throwaway venv")
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose packages are probed")
    parser.add_argument("--packages", default=",".join(PACKAGES), help="import names, comma-separated")
    parser.add_argument("--only", choices=("fixtures", "packages"))
    parser.add_argument("--timeout", type=float, default=120, help="seconds per file (import included)")
    args = parser.parse_args()
    modules = [m for m in args.packages.split(",") if m]
    wanted = [PACKAGES.get(m, m) for m in modules] + FIXTURE_PACKAGES
    python = make_venv(args.venv, wanted) if args.venv else args.python
    summary = {}
    if args.only != "packages":
        findings = run_check(python, ["fixtures"], REPO, args.timeout)
        summary["fixtures"] = report("fixtures/", findings)
    if args.only != "fixtures":
        everything = []
        for module in modules:
            folder = package_folder(python, module)
            if folder is None:
                print(f"\n## {module}: not importable by {python} (skipped)")
                continue
            findings = run_check(python, [folder], Path(folder).parent, args.timeout)
            summary[module] = report(module, findings, show_confirmed=True)
            everything += findings
        summary["packages"] = report("all packages", everything)
    print("\n| set | probe-able | confirmed | not reproduced | not run | with a verdict |")
    print("|---|---|---|---|---|---|")
    for name, row in summary.items():
        print(f"| {name} | {row['findings']} | {row.get('confirmed', 0)} | {row.get('not reproduced', 0)} | "
              f"{row.get('not run', 0)} | {row['share']:.0%} |")


if __name__ == "__main__":
    main()
