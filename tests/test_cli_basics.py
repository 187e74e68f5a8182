"""The console script end to end: output shape, exit codes, selection, config, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUGGY = "import torch\nimport torch.nn as nn\n\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval\n"
CLEAN = "import torch\nimport torch.nn as nn\n\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval()\n"


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("modelint")
    command = [exe] if exe else [sys.executable, "-m", "modelint"]
    result = subprocess.run([*command, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "bad.py").write_text(BUGGY)
    (tmp_path / "good.py").write_text(CLEAN)
    return tmp_path


def test_text_output_and_exit_codes(project: Path) -> None:
    result = run("check", "--no-cache", "bad.py", "good.py", cwd=project)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("bad.py:5:1: MDL005 [*] ")
    assert "Found 1 finding." in result.stdout
    clean = run("check", "--no-cache", "good.py", cwd=project)
    assert clean.returncode == 0 and "All checks passed!" in clean.stdout
    assert run("check", "--no-cache", "--exit-zero", "bad.py", cwd=project).returncode == 0
    quiet = run("check", "--no-cache", "-q", "bad.py", cwd=project)
    assert "Found" not in quiet.stdout and "MDL005" in quiet.stdout


def test_default_path_is_the_current_folder(project: Path) -> None:
    result = run("check", "--no-cache", cwd=project)
    assert result.returncode == 1 and "bad.py:5:1: MDL005" in result.stdout


def test_selection(project: Path) -> None:
    assert run("check", "--no-cache", "--ignore", "MDL005", "bad.py", cwd=project).returncode == 0
    assert run("check", "--no-cache", "--select", "MDL00", "bad.py", cwd=project).returncode == 1
    assert run("check", "--no-cache", "--select", "MDL001,MDL002", "bad.py", cwd=project).returncode == 0
    widened = run("check", "--no-cache", "--select", "MDL001", "--extend-select", "MDL005", "bad.py", cwd=project)
    assert widened.returncode == 1
    unknown = run("check", "--no-cache", "--select", "XYZ123", "bad.py", cwd=project)
    assert unknown.returncode == 2 and "unknown rule code" in unknown.stderr


def test_json_format(project: Path) -> None:
    result = run("check", "--no-cache", "--format", "json", "bad.py", cwd=project)
    [finding] = json.loads(result.stdout)
    assert finding["code"] == "MDL005" and finding["filename"].endswith("bad.py")
    assert finding["location"] == {"row": 5, "column": 1} and finding["end_location"]["row"] == 5
    assert finding["url"] and finding["fix"]["applicability"] == "safe"


def test_statistics_and_stdin(project: Path) -> None:
    stats = run("check", "--no-cache", "--statistics", "bad.py", cwd=project)
    assert stats.stdout.split() == ["1", "MDL005", "mode-method-not-called"]
    piped = run("check", "--stdin-filename", "piped.py", cwd=project, stdin=BUGGY)
    assert piped.returncode == 1 and "piped.py:5:1: MDL005" in piped.stdout
    assert run("check", "--stdin-filename", "empty.py", cwd=project, stdin="").returncode == 0


def test_rule_docs_and_rules_json(project: Path) -> None:
    doc = run("rule", "MDL001", cwd=project)
    assert doc.returncode == 0 and "Why is this bad?" in doc.stdout
    assert run("rule", "MDL999", cwd=project).returncode == 2
    rules = json.loads(run("rules", "--format", "json", cwd=project).stdout)
    codes = {r["code"] for r in rules}
    assert {"MDL001", "MDL002", "MDL004", "MDL005", "MDL006", "MDL008", "MDL009", "MDL010", "MDL011"} <= codes
    assert all({"code", "name", "severity", "summary"} <= r.keys() for r in rules)
    assert run("--version", cwd=project).stdout.startswith("modelint ")


def test_cli_import_does_not_import_torch() -> None:
    code = "import modelint.cli, sys; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_config_closest_wins_and_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.modelint]\nignore = ["MDL005"]\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "modelint.toml").write_text('select = ["MDL005"]\n')
    (tmp_path / "a.py").write_text(BUGGY)
    (sub / "b.py").write_text(BUGGY)
    result = run("check", "--no-cache", ".", cwd=tmp_path)
    assert "sub/b.py:5:1: MDL005" in result.stdout and "a.py:5" not in result.stdout.replace("sub/b.py", "")
    (sub / "modelint.toml").write_text('selekt = ["MDL005"]\n')
    broken = run("check", "--no-cache", ".", cwd=tmp_path)
    assert broken.returncode == 2 and "selekt" in broken.stderr and "select" in broken.stderr
    (sub / "modelint.toml").write_text("select = [\n")
    assert run("check", "--no-cache", ".", cwd=tmp_path).returncode == 2


def test_per_file_ignores_exclude_and_force_exclude(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.modelint]\nextend-exclude = ["skipped.py"]\n[tool.modelint.per-file-ignores]\n"tests/*" = ["MDL005"]\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text(BUGGY)
    (tmp_path / "skipped.py").write_text(BUGGY)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "x.py").write_text(BUGGY)
    assert run("check", "--no-cache", ".", cwd=tmp_path).returncode == 0
    assert run("check", "--no-cache", "skipped.py", cwd=tmp_path).returncode == 1  # explicit path: checked
    assert run("check", "--no-cache", "--force-exclude", "skipped.py", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("name,content,code", [
    ("syntax.py", b"import torch\ndef f(:\n", "E999"),
    ("plain_syntax.py", b"x = (\n", "E999"),
    ("latin.py", b"import torch\nname = '\xe9t\xe9'\n", "E902"),
    ("binary.py", b"\x00\x01\x02torch\x00", "E902"),
])
def test_bad_file_is_reported_and_others_still_checked(tmp_path: Path, name: str, content: bytes, code: str) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "bad.py").write_text(BUGGY)
    result = run("check", "--no-cache", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{name}:" in result.stdout and f" {code} " in result.stdout
    assert "bad.py:5:1: MDL005" in result.stdout
    only = run("check", "--no-cache", name, cwd=tmp_path)
    assert only.returncode == 2  # nothing could be checked


def test_missing_path(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(BUGGY)
    result = run("check", "--no-cache", "nope.py", "bad.py", cwd=tmp_path)
    assert "nope.py:1:1: E902" in result.stdout and "bad.py:5:1: MDL005" in result.stdout


def test_columns_with_crlf_bom_tabs_and_unicode(tmp_path: Path) -> None:
    source = "\ufeffimport torch\r\nmodèle = torch.nn.Dropout()\r\nif True:\r\n\tmodèle.eval\r\né = 1; modèle.eval\r\n"
    (tmp_path / "u.py").write_bytes(source.encode("utf-8"))
    result = run("check", "--no-cache", "u.py", cwd=tmp_path)
    assert "u.py:4:2: MDL005" in result.stdout
    assert "u.py:5:8: MDL005" in result.stdout


def test_noqa(tmp_path: Path) -> None:
    (tmp_path / "n.py").write_text(
        "import torch.nn as nn\nm = nn.Dropout()\nm.eval  # noqa\nm.train  # noqa: MDL005\nm.eval  # noqa: MDL001\n")
    result = run("check", "--no-cache", "n.py", cwd=tmp_path)
    assert result.stdout.count("MDL005") == 1 and "n.py:5:1" in result.stdout
    (tmp_path / "f.py").write_text("# modelint: noqa\n" + BUGGY)
    assert run("check", "--no-cache", "f.py", cwd=tmp_path).returncode == 0


def test_cache_is_used_and_safe(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(BUGGY)
    first = run("check", "bad.py", cwd=tmp_path)
    assert (tmp_path / ".modelint_cache" / "CACHEDIR.TAG").exists()
    assert run("check", "bad.py", cwd=tmp_path).stdout == first.stdout
    for entry in (tmp_path / ".modelint_cache").rglob("*.pickle"):
        entry.write_bytes(b"corrupt")
    assert run("check", "bad.py", cwd=tmp_path).stdout == first.stdout
    (tmp_path / "bad.py").write_text(CLEAN)
    assert run("check", "bad.py", cwd=tmp_path).returncode == 0
    readonly = tmp_path / "ro"
    readonly.mkdir()
    os.chmod(readonly, 0o500)
    try:
        (tmp_path / "bad.py").write_text(BUGGY)
        assert run("check", "--cache-dir", str(readonly / "c"), "bad.py", cwd=tmp_path).returncode == 1
    finally:
        os.chmod(readonly, 0o700)
