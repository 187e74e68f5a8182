"""The hook as pre-commit runs it: `pre-commit try-repo` against this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUGGY = "import torch\nimport torch.nn as nn\n\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval\n"
CLEAN = "import torch\nimport torch.nn as nn\n\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval()\n"


def _pre_commit() -> list[str]:
    exe = shutil.which("pre-commit")
    if exe:
        return [exe]
    if subprocess.run([sys.executable, "-m", "pre_commit", "--version"], capture_output=True).returncode == 0:
        return [sys.executable, "-m", "pre_commit"]
    pytest.skip("pre-commit is not installed")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user_repo")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=path, check=True, env=env)
    (path / "bad.py").write_text(BUGGY)
    (path / "clean.py").write_text(CLEAN)
    (path / "excluded.py").write_text(BUGGY)
    (path / "pyproject.toml").write_text('[tool.modelint]\nextend-exclude = ["excluded.py"]\n')
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env)
    return path


def try_repo(repo: Path, *files: str, hook: str = "modelint") -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home")}
    return subprocess.run([*_pre_commit(), "try-repo", str(ROOT), hook, "--files", *files], cwd=repo,
                          capture_output=True, text=True, timeout=900, env=env)


# Each `try-repo` of a checkout with changes builds the hook's environment anew (~10 s): two runs
# cover a failing file, a passing one and an explicitly named excluded one.
def test_hook_fails_on_a_bad_file_and_honours_exclude_for_explicit_files(repo: Path) -> None:
    bad = try_repo(repo, "bad.py", "clean.py", "excluded.py")
    if "An unexpected error has occurred" in bad.stdout + bad.stderr:
        pytest.skip(f"pre-commit could not build the hook environment: {bad.stdout[-500:]}")
    assert bad.returncode == 1, bad.stdout
    assert "bad.py:5:1: MDL005" in bad.stdout
    assert "excluded.py:" not in bad.stdout


def test_hook_passes_on_a_clean_file_and_an_excluded_one(repo: Path) -> None:
    clean = try_repo(repo, "clean.py", "excluded.py")
    if "An unexpected error has occurred" in clean.stdout + clean.stderr:
        pytest.skip("pre-commit could not build the hook environment")
    assert clean.returncode == 0, clean.stdout
