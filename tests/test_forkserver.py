"""The fork server behind CPU probes (forkserver.py): one torch import per run, and each worker as
contained as a child of its own: killed with everything it started at the timeout, and no server
or worker left behind when the run ends."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the runtime checker's tests need torch (the test extra installs it)")

from modelint.runtime.launch import ForkServer  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode("utf-8", "replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_worker_past_its_timeout_is_killed_with_what_it_started(tmp_path: Path) -> None:
    # The user file starts a grandchild (a data loader worker, say) and never finishes importing.
    marker = f"modelint-forkserver-test-{os.getpid()}"
    script = tmp_path / "spawns.py"
    script.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', "
                      f"'import time; time.sleep(600)', '{marker}'])\ntime.sleep(600)\n")
    request = {"path": str(script), "project_root": str(tmp_path), "device": "cpu", "seed": 0,
               "memory_limit": None, "input_hint": None, "input_hints": {}, "fixed_sources": {},
               "probes": [{"id": "f0", "code": "MDL001", "candidates": [], "variants": [], "line": 1}],
               "source": None}
    server = ForkServer()
    try:
        started = time.monotonic()
        answers, failure = server.run(json.dumps(request), timeout=3)
        assert time.monotonic() - started < 30
        assert failure.startswith("timed out after 3 s"), failure
        assert any(a.get("event") == "ready" for a in answers), answers
        deadline = time.monotonic() + 5
        while _processes(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes(marker), "the worker's own child outlived the timeout"
        server_pid = server._process.pid
    finally:
        server.close()
    assert not Path(f"/proc/{server_pid}").exists(), "the server outlived close()"


def test_an_unused_server_starts_nothing() -> None:
    server = ForkServer()
    server.close()
    assert server._process is None
