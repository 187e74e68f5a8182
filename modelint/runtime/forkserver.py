"""One torch import for a whole `--runtime` run on CPU: `python -m modelint.runtime.forkserver`.

Importing torch is most of a probe child's start (2 s of 2.4). This server refuses the network,
imports torch (never CUDA: a process that initialised CUDA cannot fork a working one, so only CPU
runs come here) and then, for each job it reads on stdin, forks a worker: its own session (so
that a timeout kills everything it starts), stdout to the job's answer file, stderr to its log,
and then exactly what `python -m modelint.runtime.probe` does with the request. The server
answers the worker's pid at once and goes on; the kernel reaps the workers (SIGCHLD ignored), so
the parent sees a worker end when its process group is gone. No user code runs in the server.

Job (one JSON line): {"request": path of the JSON request, "answers": path, "stderr": path}
Answer (one JSON line): {"pid": worker pid}, after a first {"event": "ready", "torch": version}.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _worker(job: dict, network: str) -> None:
    from modelint.runtime import probe

    with open(job["request"], encoding="utf-8") as handle:
        request = handle.read()
    answers = os.open(job["answers"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    errors = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(answers, 1)
    os.dup2(errors, 2)
    os.close(answers)
    os.close(errors)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = os.fdopen(2, "w", encoding="utf-8", closefd=False)
    probe.run_guarded(request, network=network)


def serve() -> int:
    from modelint.runtime import probe

    network = probe._refuse_network()
    try:
        import torch
    except ImportError as error:
        print(json.dumps({"event": "fatal", "reason": f"PyTorch is not importable: {error}"}), flush=True)
        return 0
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print(json.dumps({"event": "ready", "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        try:
            job = json.loads(line)
        except json.JSONDecodeError:
            continue
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _worker(job, network)
            finally:
                os._exit(0)
        print(json.dumps({"pid": pid}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve())
