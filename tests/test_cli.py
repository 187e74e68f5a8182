"""`modelint` end to end: output, exit codes, selection, formats, stdin, rule docs, discovery.

Every test runs the installed console script in a subprocess, in a tmp_path project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_cli import (CLEAN, EVAL_BUG, NO_GRAD_BUG, THREE_BUGS, TRAIN_BUG, check, codes_by_path, findings,
                         modelint, write)

SPEC_CODES = {"MDL001", "MDL002", "MDL004", "MDL005", "MDL006", "MDL008", "MDL009", "MDL010", "MDL011"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(tmp_path, {"bugs.py": THREE_BUGS, "clean.py": CLEAN, "one.py": EVAL_BUG})


# --- output and exit codes ------------------------------------------------------------------------------------------

def test_findings_are_ruff_style_lines_with_a_summary(project: Path) -> None:
    result = check("bugs.py", "clean.py", cwd=project)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bugs.py:4:1: MDL005 ")
    assert lines[1].startswith("bugs.py:5:1: MDL004 ")
    assert lines[2].startswith("bugs.py:6:1: MDL006 ")
    assert findings(result.stdout) == [("bugs.py", 4, 1, "MDL005"), ("bugs.py", 5, 1, "MDL004"),
                                       ("bugs.py", 6, 1, "MDL006")]
    assert "Found 3 findings." in result.stdout
    assert result.stderr == ""


def test_one_finding_and_clean(project: Path) -> None:
    one = check("one.py", cwd=project)
    assert one.returncode == 1
    assert "Found 1 finding." in one.stdout
    clean = check("clean.py", cwd=project)
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout.strip() == "All checks passed!"


def test_exit_zero_and_quiet(project: Path) -> None:
    relaxed = check("--exit-zero", "bugs.py", cwd=project)
    assert relaxed.returncode == 0
    assert len(findings(relaxed.stdout)) == 3
    quiet = check("--quiet", "bugs.py", cwd=project)
    assert quiet.returncode == 1
    assert len(findings(quiet.stdout)) == 3
    assert "Found" not in quiet.stdout and "fixable" not in quiet.stdout
    assert all(line.startswith("bugs.py:") for line in quiet.stdout.splitlines())


def test_default_path_is_the_current_folder(project: Path) -> None:
    result = check(cwd=project)
    assert result.returncode == 1
    assert set(codes_by_path(result.stdout)) == {"bugs.py", "one.py"}


def test_python_dash_m_runs_the_same_cli(project: Path) -> None:
    result = modelint("check", "--no-cache", "one.py", cwd=project, module=True)
    assert result.returncode == 1
    assert findings(result.stdout) == [("one.py", 4, 1, "MDL005")]


# --- rule selection -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    (["--select", "MDL005"], {"MDL005"}),
    (["--select", "mdl005"], {"MDL005"}),
    (["--select", "MDL004,MDL005"], {"MDL004", "MDL005"}),
    (["--select", "MDL004", "--select", "MDL006"], {"MDL004", "MDL006"}),
    (["--select", "MDL00"], {"MDL004", "MDL005", "MDL006"}),
    (["--select", "MDL001", "--extend-select", "MDL005,MDL006"], {"MDL005", "MDL006"}),
    (["--ignore", "MDL005", "--ignore", "MDL006"], {"MDL004"}),
    (["--ignore", "MDL004, MDL006"], {"MDL005"}),
    (["--select", "MDL00", "--ignore", "MDL004"], {"MDL005", "MDL006"}),
])
def test_select_ignore_extend_select(project: Path, args: list[str], expected: set[str]) -> None:
    result = check(*args, "bugs.py", cwd=project)
    assert result.returncode == 1
    assert codes_by_path(result.stdout) == {"bugs.py": expected}


def test_ignoring_everything_by_prefix_is_clean(project: Path) -> None:
    result = check("--ignore", "MDL", "bugs.py", cwd=project)
    assert result.returncode == 0
    assert "All checks passed!" in result.stdout


@pytest.mark.parametrize("args", [
    ["--select", "XYZ123"],
    ["--ignore", "MDL999"],
    ["--extend-select", "MDL005,NOPE1"],
])
def test_unknown_code_is_a_one_line_usage_error(project: Path, args: list[str]) -> None:
    result = check(*args, "bugs.py", cwd=project)
    assert result.returncode == 2
    assert result.stdout == ""
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1, result.stderr
    assert "unknown rule code" in error_lines[0]
    assert args[1].split(",")[-1].upper() in error_lines[0]


# --- formats and statistics -----------------------------------------------------------------------------------------

def test_json_format(project: Path) -> None:
    result = check("--format", "json", "bugs.py", "clean.py", cwd=project)
    assert result.returncode == 1
    data = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert isinstance(data, list) and len(data) == 3
    for item in data:
        assert {"code", "message", "filename", "location", "end_location", "url", "fix"} <= set(item)
        assert Path(item["filename"]).name == "bugs.py"
        assert set(item["location"]) == {"row", "column"}
        assert set(item["end_location"]) == {"row", "column"}
        assert item["url"].startswith("http")
    assert [(d["code"], d["location"]["row"], d["location"]["column"]) for d in data] == [
        ("MDL005", 4, 1), ("MDL004", 5, 1), ("MDL006", 6, 1)]
    first = data[0]
    assert first["end_location"] == {"row": 4, "column": 11}  # `model.eval` is 10 characters
    assert first["fix"] is None or {"applicability", "message", "edits"} <= set(first["fix"])
    clean = check("--format", "json", "clean.py", cwd=project)
    assert clean.returncode == 0 and json.loads(clean.stdout) == []


def test_concise_format(project: Path) -> None:
    result = check("--format", "concise", "bugs.py", cwd=project)
    assert result.returncode == 1
    assert [f[3] for f in findings(result.stdout)] == ["MDL005", "MDL004", "MDL006"]


def test_statistics_text_and_json(project: Path) -> None:
    text = check("--statistics", "bugs.py", "one.py", cwd=project)
    assert text.returncode == 1
    rows = [line.split() for line in text.stdout.strip().splitlines()]
    assert rows[0] == ["2", "MDL005", "mode-method-not-called"]
    assert sorted(rows[1:]) == [["1", "MDL004", "ineffective-grad-mode-call"],
                                ["1", "MDL006", "invalid-mode-argument"]]
    assert findings(text.stdout) == []  # counts instead of findings
    data = json.loads(check("--statistics", "--format", "json", "bugs.py", "one.py", cwd=project).stdout)
    assert {row["code"]: row["count"] for row in data} == {"MDL005": 2, "MDL004": 1, "MDL006": 1}
    assert all(row["name"] for row in data)


# --- stdin ----------------------------------------------------------------------------------------------------------

def test_stdin_filename(tmp_path: Path) -> None:
    result = check("--stdin-filename", "piped.py", cwd=tmp_path, stdin=TRAIN_BUG)
    assert result.returncode == 1
    assert findings(result.stdout) == [("piped.py", 4, 1, "MDL006")]
    assert not (tmp_path / "piped.py").exists()


def test_stdin_empty_and_dash(tmp_path: Path) -> None:
    empty = check("--stdin-filename", "empty.py", cwd=tmp_path, stdin="")
    assert empty.returncode == 0 and "All checks passed!" in empty.stdout
    dash = check("-", cwd=tmp_path, stdin=NO_GRAD_BUG)
    assert dash.returncode == 1
    assert [f[1:] for f in findings(dash.stdout)] == [(4, 1, "MDL004")]


def test_stdin_filename_follows_the_config_of_its_folder(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/pyproject.toml": '[tool.modelint]\nignore = ["MDL006"]\n'})
    result = check("--stdin-filename", "pkg/piped.py", cwd=tmp_path, stdin=TRAIN_BUG)
    assert result.returncode == 0, result.stdout


# --- force-exclude --------------------------------------------------------------------------------------------------

def test_force_exclude_skips_an_excluded_explicit_file(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": '[tool.modelint]\nextend-exclude = ["generated", "skip_me.py"]\n',
                     "generated/model.py": EVAL_BUG, "skip_me.py": EVAL_BUG})
    # Named on the command line: checked (as ruff does), unless --force-exclude.
    named = check("generated/model.py", "skip_me.py", cwd=tmp_path)
    assert set(codes_by_path(named.stdout)) == {"generated/model.py", "skip_me.py"}
    forced = check("--force-exclude", "generated/model.py", "skip_me.py", cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout
    assert findings(forced.stdout) == [] and forced.stderr == ""
    piped = check("--force-exclude", "--stdin-filename", "skip_me.py", cwd=tmp_path, stdin=EVAL_BUG)
    assert piped.returncode == 0 and findings(piped.stdout) == []


# --- rule docs, version, import cost --------------------------------------------------------------------------------

def test_rule_docs(tmp_path: Path) -> None:
    doc = modelint("rule", "MDL001", cwd=tmp_path)
    assert doc.returncode == 0
    assert "MDL001" in doc.stdout and "Why is this bad?" in doc.stdout
    lower = modelint("rule", "mdl005", cwd=tmp_path)
    assert lower.returncode == 0 and "MDL005" in lower.stdout
    unknown = modelint("rule", "MDL999", cwd=tmp_path)
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1 and "MDL999" in unknown.stderr


def test_rules_json_lists_every_rule(tmp_path: Path) -> None:
    result = modelint("rules", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0
    rules = json.loads(result.stdout)
    codes = [r["code"] for r in rules]
    assert SPEC_CODES <= set(codes)
    assert len(codes) == len(set(codes))
    for entry in rules:
        assert {"code", "name", "severity", "summary"} <= set(entry)
        assert entry["severity"] in ("error", "warning")
        assert entry["name"] and entry["summary"]
    text = modelint("rules", cwd=tmp_path)
    assert text.returncode == 0
    assert {line.split()[0] for line in text.stdout.strip().splitlines()} == set(codes)


def test_version(tmp_path: Path) -> None:
    import modelint as package

    result = modelint("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"modelint {package.__version__}"


def test_cli_import_does_not_import_torch(tmp_path: Path) -> None:
    code = "import modelint.cli, sys; assert 'torch' not in sys.modules; assert 'libcst' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)


def test_help_lists_the_options(tmp_path: Path) -> None:
    result = modelint("check", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--select", "--ignore", "--extend-select", "--format", "--statistics", "--exit-zero",
                   "--stdin-filename", "--force-exclude", "--quiet", "--config"):
        assert option in result.stdout


# --- discovery ------------------------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()  # a repository root: .gitignore files above it do not apply
    return write(tmp_path, {
        ".gitignore": "ignored.py\ngen/*\n!gen/keepme.py\nlogs/\n",
        "keep.py": EVAL_BUG,
        "stub.pyi": EVAL_BUG,
        "ignored.py": EVAL_BUG,
        "gen/out.py": EVAL_BUG,
        "gen/keepme.py": EVAL_BUG,
        "logs/run.py": EVAL_BUG,
        "sub/.gitignore": "local.py\n",
        "sub/local.py": EVAL_BUG,
        "sub/other.py": EVAL_BUG,
        "sub/deeper/local.py": EVAL_BUG,  # `local.py` (no slash) matches at any depth below sub/
        ".hidden/h.py": EVAL_BUG,
        "env/pyvenv.cfg": "home = /usr/bin\n",
        "env/lib/site.py": EVAL_BUG,
        "myenv/pyvenv.cfg": "home = /usr/bin\n",
        "myenv/m.py": EVAL_BUG,
        "__pycache__/c.py": EVAL_BUG,
        "pkg/__pycache__/d.py": EVAL_BUG,
        "notes.txt": EVAL_BUG,
        "pkg/mod.py": EVAL_BUG,
    })


def test_walk_honours_gitignore_hidden_venv_pycache(tree: Path) -> None:
    result = check("--jobs", "1", cwd=tree)
    assert result.returncode == 1
    assert set(codes_by_path(result.stdout)) == {"keep.py", "stub.pyi", "gen/keepme.py", "sub/other.py",
                                                 "pkg/mod.py"}


def test_walk_of_a_subfolder_honours_the_parent_gitignore(tree: Path) -> None:
    result = check("--jobs", "1", "gen", "sub", cwd=tree)
    assert set(codes_by_path(result.stdout)) == {"gen/keepme.py", "sub/other.py"}


def test_explicit_files_are_checked_even_if_ignored(tree: Path) -> None:
    result = check("--jobs", "1", "ignored.py", ".hidden/h.py", "myenv/m.py", "sub/local.py", cwd=tree)
    assert result.returncode == 1
    assert set(codes_by_path(result.stdout)) == {"ignored.py", ".hidden/h.py", "myenv/m.py", "sub/local.py"}


def test_duplicates_are_linted_once(tree: Path) -> None:
    result = check("--jobs", "1", "keep.py", "./keep.py", str(tree / "keep.py"), "pkg", "pkg/mod.py", "pkg/",
                   cwd=tree)
    assert result.returncode == 1
    found = findings(result.stdout)
    assert len(found) == 2, result.stdout
    assert "Found 2 findings." in result.stdout


def test_the_pool_gets_the_biggest_files_first_and_every_file_once(tmp_path) -> None:
    from modelint.workers import balanced_batches

    sizes = [100, 50_000, 300, 20_000, 10, 0, 700] * 5
    work = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"m{i}.py"
        path.write_text("x" * size)
        work.append((str(path), frozenset()))
    work.append((str(tmp_path / "gone.py"), frozenset()))  # (deleted since discovery: size 0, still linted)
    batches = balanced_batches(work, 2)
    assert sorted(i for batch in batches for i in batch) == list(range(len(work)))
    assert batches[0] == [sizes.index(50_000)]  # the biggest file first, alone
    assert all(len(batch) <= 64 for batch in batches)



def test_the_pool_started_for_the_first_phase_serves_the_later_small_ones(tmp_path) -> None:
    """The files a later phase analyses again (one big script, often) go to processes that have the
    engine imported, not to this one, which would import it first (modelint.workers)."""
    from modelint.workers import PARALLEL_THRESHOLD, Workers

    work = []
    for i in range(PARALLEL_THRESHOLD):
        path = tmp_path / f"m{i}.py"
        path.write_text(EVAL_BUG if i == 0 else CLEAN)
        work.append((str(path), frozenset({"MDL005"})))
    with Workers(2) as workers:
        first = workers.lint(work)
        pool = workers._pool
        assert pool is not None
        real_submit, batches = pool.submit, []
        pool.submit = lambda *args: batches.append(args[1]) or real_submit(*args)
        [again] = workers.lint(work[:1])
        assert batches == [work[:1]]
    assert workers._pool is None  # (closed with the run)
    assert [f.code for f in first[0].findings] == [f.code for f in again.findings] == ["MDL005"]
