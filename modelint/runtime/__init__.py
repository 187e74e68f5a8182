"""The runtime checker's one door: findings in, verdicts out.

`attach_verdicts` plans a probe for every probe-able finding (see `plan.py`), runs one
child process per file (`launch.py` -> `probe.py`, the only code that imports torch; on CPU
forked from one server per run, `forkserver.py`) and sets `finding.runtime`. Nothing here
imports torch or the user's code.
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
                    settings_for: Callable[[str], object] | None = None, index=None,
                    server=None) -> list[SiteVerdict]:
    """Probe each finding of a PROBED_CODES rule (and each bare line of `lines`), one child per file.

    device / timeout: from the command line; where None, the file's [tool.modelint.runtime] (through
    `settings_for(path)`, a RuntimeSettings), else cpu / 60 s. Sets `finding.runtime`; returns the
    verdicts of the bare lines. index: the run's ProjectIndex, so that the planner sees what calls
    into other files do, as the findings did. server: a ForkServer the caller started early (its torch
    import overlapping the linting); closed here in any case.
    """
    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.code in PROBED_CODES:
            by_path.setdefault(finding.path, []).append(finding)
    for path in lines or {}:
        by_path.setdefault(path, [])
    sites: list[SiteVerdict] = []
    work = [(path, items, (lines or {}).get(path, [])) for path, items in by_path.items()]
    from modelint.runtime.launch import ForkServer

    server = server or ForkServer()  # started by the first CPU probe, unless already starting
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for path, items, bare, verdicts in pool.map(
                    lambda job: (*job, _probe_file(*job, device, timeout, settings_for, index, server)), work):
                for number, finding in enumerate(items):
                    finding.runtime = verdicts.get(f"f{number}")
                sites.extend(SiteVerdict(path, line, verdicts.get(f"l{line}", {})) for line in bare)
    finally:
        server.close()
    return sites


def _probe_file(path: str, findings: list[Finding], lines: list[int], device: str | None, timeout: float | None,
                settings_for, index=None, server=None) -> dict:
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

    notebook = any(finding.cell is not None for finding in findings)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if notebook:
            # The cells run as one module, as the linter read them: the child is given that text.
            from modelint.notebook import joined_source

            joined = joined_source(data, path)
            text, lines = joined.text, []
            findings = [_in_joined(finding, joined) for finding in findings]
        else:
            text = source.decode(data)
    except (OSError, source.UnreadableSource) as error:
        return everything(f"cannot read the file: {error}")
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError) as error:
        return everything(f"not a readable notebook: {error}")
    try:
        plan = plan_file(path, text, findings, lines, constructors, inputs, index=index)
    except SyntaxError as error:
        return everything(f"the file does not parse: {error.msg}")
    except RecursionError:
        return everything("the file is nested too deeply to plan a probe")
    except Exception as error:  # noqa: BLE001 - a bug in the planner must not cost the lint results
        return everything(f"modelint could not plan a probe for this file (please report it): "
                          f"{type(error).__name__}: {error}")
    # CPU only through the fork server: a process that touched CUDA cannot fork one that works.
    verdicts = run_plan(plan, device, timeout, source=text if notebook else None,
                        server=server if device == "cpu" else None)
    if notebook:
        for runtime in verdicts.values():
            for field_name in ("reason", "import"):
                if runtime.get(field_name):
                    runtime[field_name] = _in_cells(runtime[field_name], joined)
    return verdicts


def _in_joined(finding: Finding, joined) -> Finding:
    """The finding as a line of the notebook's joined module (where the planner and the child look)."""
    from dataclasses import replace

    from modelint.finding import Location

    row = joined.row_of(finding.cell, finding.location.row)
    return replace(finding, location=Location(row or 0, finding.location.column), cell=None, fix=None, related=())


def _in_cells(text: str, joined) -> str:
    """`line 27` and `nb.ipynb:27` of the joined module, as the notebook's reader sees them."""
    import re

    def where(row: str) -> str | None:
        number = int(row)
        return None if not 0 < number <= len(joined.line_map) else "cell {}, line {}".format(*joined.line_map[number - 1])

    text = re.sub(r"\bline (\d+)\b", lambda m: where(m[1]) or m[0], text)
    return re.sub(r"\.ipynb:(\d+)\b", lambda m: f".ipynb {where(m[1])}" if where(m[1]) else m[0], text)


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
