"""Start the probe child for one file and read its answers, whatever the user's code does.

The child (`python -m modelint.runtime.probe`) gets one JSON request on stdin and answers
one JSON line per probe. It runs in its own session so that a timeout kills everything
it started; answers that arrived before a crash or a timeout are kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

from modelint.runtime.plan import FilePlan

DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_LIMIT = 16 << 30  # address space on CPU; torch alone maps a few GiB


def not_run(reason: str, device: str | None = None) -> dict:
    return {"verdict": "not run", "device": device, "max_abs_diff": None, "stat_drift": None, "reason": reason}


def run_plan(plan: FilePlan, device: str, timeout: float = DEFAULT_TIMEOUT,
             memory_limit: int = DEFAULT_MEMORY_LIMIT, source: str | None = None) -> dict[str, dict]:
    """probe id -> runtime verdict, for every probe of the plan. source: the module's text when the file
    is not Python itself (a notebook's joined cells)."""
    verdicts: dict[str, dict] = {}
    runnable = []
    for probe in plan.probes:
        if probe.not_run:
            verdicts[probe.id] = not_run(probe.not_run)
        else:
            runnable.append(probe)
    if not runnable:
        return verdicts
    request = {"path": os.path.abspath(plan.path), "project_root": os.getcwd(), "device": device, "seed": 0, "memory_limit": memory_limit,
               "input_hint": plan.input_hint, "input_hints": plan.input_hints, "fixed_sources": plan.fixed_sources,
               "probes": [probe.request() for probe in runnable], "source": source}
    answers, failure = _run_child(json.dumps(request), timeout)
    used_device = None
    for answer in answers:
        if answer.get("event") == "ready":
            used_device = answer.get("device")
        elif answer.get("event") == "fatal":
            failure = answer.get("reason") or "the probe failed"
            used_device = answer.get("device", used_device)
        elif "id" in answer:
            verdicts[answer["id"]] = answer["runtime"]
    for probe in runnable:
        verdicts.setdefault(probe.id, not_run(failure or "the probe ended without an answer", used_device))
    return verdicts


def _run_child(request: str, timeout: float) -> tuple[list[dict], str | None]:
    # The child's stderr (the user's prints and warnings) goes to a file: a pipe nobody reads
    # could fill up and stall it.
    with tempfile.TemporaryFile() as stderr:
        try:
            child = subprocess.Popen([sys.executable, "-m", "modelint.runtime.probe"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
                                     env=_child_env())
        except OSError as error:
            return [], f"cannot start the probe: {error}"
        failure = None
        try:
            out, _ = child.communicate(request.encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(child)
            out, _ = child.communicate()
            failure = f"timed out after {timeout:g} s (import or forward pass did not finish)"
        if failure is None and child.returncode not in (0, None):
            stderr.seek(0)
            tail = stderr.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
            why = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
            failure = f"the probe process died ({why})" + (f": {tail[-1][:200]}" if tail else "")
    answers = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            answers.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return answers, failure


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        child.kill()
