"""Start the probe child for one file and read its answers, whatever the user's code does.

The child (`python -m modelint.runtime.probe`) gets one JSON request on stdin and answers
one JSON line per probe. It runs in its own session so that a timeout kills everything
it started; answers that arrived before a crash or a timeout are kept. On CPU the child is
a worker forked from one `ForkServer` per run (torch imported once, see forkserver.py), with
the same session, timeout and memory limit.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

from modelint.runtime.plan import FilePlan

DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_LIMIT = 16 << 30  # address space on CPU; torch alone maps a few GiB
READY_TIMEOUT = 120.0  # for the fork server's torch import


def not_run(reason: str, device: str | None = None) -> dict:
    return {"verdict": "not run", "device": device, "max_abs_diff": None, "stat_drift": None, "reason": reason}


def run_plan(plan: FilePlan, device: str, timeout: float = DEFAULT_TIMEOUT,
             memory_limit: int = DEFAULT_MEMORY_LIMIT, source: str | None = None,
             server: "ForkServer | None" = None) -> dict[str, dict]:
    """probe id -> runtime verdict, for every probe of the plan. source: the module's text when the file
    is not Python itself (a notebook's joined cells). server: a started fork server (CPU runs), whose
    worker replaces the child process."""
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
    ran = server.run(json.dumps(request), timeout) if server is not None else None
    answers, failure = ran if ran is not None else _run_child(json.dumps(request), timeout)
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
            failure = _timed_out(timeout)
        if failure is None and child.returncode not in (0, None):
            stderr.seek(0)
            why = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
            failure = _died(stderr.read(), f" ({why})")
    return _answers(out), failure


class ForkServer:
    """`modelint.runtime.forkserver`, started on first use and shared by the run's threads: each file's
    probe is a worker forked from it, torch already imported. Anything odd (it cannot start, it died)
    makes `run` return None, and the caller starts a child of its own as before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one job handed over at a time
        self._state = threading.Lock()  # the process's birth and death (held briefly)
        self._process: subprocess.Popen | None = None
        self._ready = False
        self._closed = False
        self._folder = tempfile.TemporaryDirectory(prefix="modelint-probe-")
        self._jobs = 0

    def _start(self) -> bool:
        with self._state:
            if self._closed:
                return False
            if self._process is None:
                try:
                    self._process = subprocess.Popen([sys.executable, "-m", "modelint.runtime.forkserver"],
                                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                                     env=_child_env())
                except OSError:
                    self._closed = True
                    return False
            process = self._process
        if not self._ready:  # (waiting here, not holding _state: close() can kill it meanwhile)
            try:
                self._ready = json.loads(_line(process, READY_TIMEOUT) or "{}").get("event") == "ready"
            except ValueError:
                self._ready = False
            if not self._ready:  # (no torch: the child started per file says so in its own words)
                self._stop()
        return self._ready

    def start_soon(self) -> None:
        """Start the server (its torch import) in the background: what the caller does meanwhile
        (linting) overlaps it."""
        def start() -> None:
            with self._lock:
                self._start()

        threading.Thread(target=start, daemon=True).start()

    def _fork(self, request: str) -> tuple[int, str, str] | None:
        with self._lock:
            if not self._start():
                return None
            self._jobs += 1
            base = os.path.join(self._folder.name, str(self._jobs))
            job = {"request": base + ".json", "answers": base + ".out", "stderr": base + ".err"}
            with open(job["request"], "w", encoding="utf-8") as handle:
                handle.write(request)
            try:
                self._process.stdin.write((json.dumps(job) + "\n").encode("utf-8"))
                self._process.stdin.flush()
                pid = int(json.loads(_line(self._process, 30) or "{}")["pid"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._stop()
                return None
            return pid, job["answers"], job["stderr"]

    def run(self, request: str, timeout: float) -> tuple[list[dict], str | None] | None:
        forked = self._fork(request)
        if forked is None:
            return None
        pid, answers_path, stderr_path = forked
        deadline = time.monotonic() + timeout
        failure = None
        while _group_alive(pid):
            if time.monotonic() > deadline:
                _kill_group(pid)
                failure = _timed_out(timeout)
                break
            time.sleep(0.02)
        answers = _answers(_read(answers_path))
        if failure is None and not any(a.get("event") in ("done", "fatal") for a in answers):
            failure = _died(_read(stderr_path))  # (the server reaps it: its exit status is not ours to read)
        return answers, failure

    def close(self) -> None:
        """Kill the server (a start in progress too) and remove the jobs' files."""
        self._stop()
        self._folder.cleanup()

    def _stop(self) -> None:
        with self._state:
            self._closed = True
            process, self._process = self._process, None
        if process is not None:
            _kill(process)
            process.wait()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _line(process: subprocess.Popen, timeout: float) -> bytes | None:
    """The server's next line, or None when it says nothing for `timeout` seconds."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if ready else None


def _group_alive(pid: int) -> bool:
    """The worker (before its setsid() its group is not yet its own), or anything it started, still runs."""
    for probe in (os.kill, os.killpg):
        try:
            probe(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _kill_group(pid: int) -> bool:
    """SIGKILL to the process group `pid` leads; False where there is none (or no killpg)."""
    try:
        os.killpg(pid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError, AttributeError):
        return False


def _timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g} s (import or forward pass did not finish)"


def _died(stderr: bytes, why: str = "") -> str:
    """`the probe process died (signal 9): <the last line it wrote on stderr>`."""
    tail = stderr[-2000:].decode("utf-8", "replace").strip().splitlines()
    return f"the probe process died{why}" + (f": {tail[-1][:200]}" if tail else "")


def _answers(out: bytes) -> list[dict]:
    answers = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            answers.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return answers


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


def _kill(child: subprocess.Popen) -> None:
    if not _kill_group(child.pid):
        child.kill()
