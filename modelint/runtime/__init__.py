"""The runtime checker's one door: findings in, verdicts out.

`attach_verdicts` plans a probe for every probe-able finding (see `plan.py`), runs one
child process per file (`launch.py` -> `probe.py`, the only code that imports torch) and
sets `finding.runtime`. Nothing here imports torch or the user's code.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from modelint.finding import Finding

PROBED_CODES = frozenset({"MDL001", "MDL002", "MDL003", "MDL008", "MDL009", "MDL010", "MDL012"})


def torch_available() -> bool:
    """Is torch installed? Found without importing it (the lint path stays torch-free)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


@dataclass
class SiteVerdict:
    """`modelint verify PATH:LINE` on a line without a finding: what the line's code does."""

    path: str
    line: int
    runtime: dict = field(default_factory=dict)


def attach_verdicts(findings: list[Finding], device: str | None = None, timeout: float | None = None,
                    lines: dict[str, list[int]] | None = None, jobs: int = 2,
                    settings_for: Callable[[str], object] | None = None, index=None) -> list[SiteVerdict]:
    """Probe each finding of a PROBED_CODES rule (and each bare line of `lines`), one child per file.

    device / timeout: from the command line; where None, the file's [tool.modelint.runtime] (through
    `settings_for(path)`, a RuntimeSettings), else cpu / 60 s. Sets `finding.runtime`; returns the
    verdicts of the bare lines. index: the run's ProjectIndex, so that the planner sees what calls
    into other files do, as the findings did.
    """
    for finding in findings:
        if finding.code in PROBED_CODES and finding.cell is not None:
            finding.runtime = {"verdict": "not run", "device": None, "max_abs_diff": None, "stat_drift": None,
                               "reason": "notebook cells are not probed (export the notebook to a .py file)"}

    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.code in PROBED_CODES and finding.cell is None:
            by_path.setdefault(finding.path, []).append(finding)
    for path in lines or {}:
        by_path.setdefault(path, [])
    sites: list[SiteVerdict] = []
    work = [(path, items, (lines or {}).get(path, [])) for path, items in by_path.items()]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for path, items, bare, verdicts in pool.map(
                lambda job: (*job, _probe_file(*job, device, timeout, settings_for, index)), work):
            for number, finding in enumerate(items):
                finding.runtime = verdicts.get(f"f{number}")
            sites.extend(SiteVerdict(path, line, verdicts.get(f"l{line}", {})) for line in bare)
    return sites


def _probe_file(path: str, findings: list[Finding], lines: list[int], device: str | None, timeout: float | None,
                settings_for, index=None) -> dict:
    from modelint import source
    from modelint.runtime.launch import DEFAULT_TIMEOUT, not_run, run_plan
    from modelint.runtime.plan import plan_file

    settings = settings_for(path) if settings_for is not None else None
    device = device or getattr(settings, "device", None) or "cpu"
    timeout = timeout or getattr(settings, "timeout", None) or DEFAULT_TIMEOUT
    constructors = dict(getattr(settings, "probes", ()))
    inputs = dict(getattr(settings, "inputs", ()))

    def everything(reason: str) -> dict:
        keys = [f"f{n}" for n in range(len(findings))] + [f"l{line}" for line in lines]
        return {key: not_run(reason) for key in keys}

    try:
        with open(path, "rb") as handle:
            text = source.decode(handle.read())
    except (OSError, source.UnreadableSource) as error:
        return everything(f"cannot read the file: {error}")
    try:
        plan = plan_file(path, text, findings, lines, constructors, inputs, index=index)
    except SyntaxError as error:
        return everything(f"the file does not parse: {error.msg}")
    except RecursionError:
        return everything("the file is nested too deeply to plan a probe")
    except Exception as error:  # noqa: BLE001 - a bug in the planner must not cost the lint results
        return everything(f"modelint could not plan a probe for this file (please report it): "
                          f"{type(error).__name__}: {error}")
    return run_plan(plan, device, timeout)


def summary_line(runtime: dict | None) -> str | None:
    """`runtime: confirmed on cpu: ...` for text output."""
    if not runtime:
        return None
    device = runtime.get("device_name") or runtime.get("device")
    where = f" on {device}" if device else ""
    built = runtime.get("constructed") or ""
    if built and not built.endswith("()"):  # the arguments used, and which of them were guessed
        guessed = runtime.get("guessed") or []
        where += f" with {built}" + (f" (guessed: {', '.join(guessed)})" if guessed else "")
    reason = runtime.get("reason") or ""
    return f"runtime: {runtime.get('verdict', 'not run')}{where}" + (f": {reason}" if reason else "")
