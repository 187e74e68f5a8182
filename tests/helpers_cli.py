"""Shared helpers for the end-to-end CLI tests: run the real console script, write projects, read its lines.

Imported by test_cli.py, test_config.py, test_bad_input.py, test_suppression.py and test_hostile.py
(pytest puts this folder on sys.path). Named helpers_cli so it clashes with no conftest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HEADER = "import torch\nimport torch.nn as nn\n"
MODEL = "model = nn.Linear(2, 2)\n"

# Each has its finding on line 4, column 1.
EVAL_BUG = HEADER + "model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval\n"  # MDL005
NO_GRAD_BUG = HEADER + MODEL + "torch.no_grad()\n"  # MDL004
TRAIN_BUG = HEADER + MODEL + 'model.train("val")\n'  # MDL006
# MDL005 on line 4, MDL004 on line 5, MDL006 on line 6.
THREE_BUGS = HEADER + MODEL + "model.eval\ntorch.no_grad()\nmodel.train(\"val\")\n"
CLEAN = HEADER + MODEL + "model.eval()\nwith torch.no_grad():\n    y = model(torch.ones(1, 2))\n"

# `path:line:col: CODE message`, as ruff prints it.
LINE = re.compile(r"^(?P<path>.+?):(?P<row>\d+):(?P<col>\d+): (?P<code>[A-Z]+\d+) (?P<message>.*)$")


def command() -> list[str]:
    exe = shutil.which("modelint")
    return [exe] if exe else [sys.executable, "-m", "modelint"]


def modelint(*args: str, cwd: Path, stdin: str | bytes | None = None, module: bool = False,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `modelint ARGS` (or `python -m modelint ARGS`) and check no traceback ever reaches the user."""
    argv = [sys.executable, "-m", "modelint"] if module else command()
    data = stdin.encode() if isinstance(stdin, str) else stdin
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("MODELINT_CACHE_DIR", None)
    completed = subprocess.run([*argv, *args], cwd=cwd, input=data if data is not None else b"",
                               capture_output=True, timeout=180, env=full_env)
    result = subprocess.CompletedProcess(completed.args, completed.returncode,
                                         completed.stdout.decode("utf-8", "replace"),
                                         completed.stderr.decode("utf-8", "replace"))
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def check(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """`modelint check --no-cache ARGS`: no cache folder, so every run really lints."""
    return modelint("check", "--no-cache", *args, cwd=cwd, **kwargs)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create files (and their folders) under root; bytes are written as they are."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
    return root


def findings(stdout: str) -> list[tuple[str, int, int, str]]:
    """(path with forward slashes, row, column, code) for every finding line of the text output."""
    out = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            out.append((match["path"].replace(os.sep, "/"), int(match["row"]), int(match["col"]), match["code"]))
    return out


def codes_by_path(stdout: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path, _, _, code in findings(stdout):
        out.setdefault(path, set()).add(code)
    return out


def lines_for(stdout: str, path: str) -> list[str]:
    """The output lines that report on `path` (forward slashes)."""
    return [line for line in stdout.splitlines()
            if (m := LINE.match(line)) and m["path"].replace(os.sep, "/") == path]


def symlink(target: str, link: Path) -> bool:
    """Make `link` point at `target`; False where symbolic links are not available."""
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError):
        return False
    return True
