"""`[tool.modelint]` in pyproject.toml / modelint.toml: keys, closest config wins, and errors (exit 2, one line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_cli import EVAL_BUG, THREE_BUGS, check, codes_by_path, write

ALL_THREE = {"MDL004", "MDL005", "MDL006"}


def test_closest_config_wins_in_one_run(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    write(tmp_path, {
        "pyproject.toml": '[tool.modelint]\nselect = ["MDL004"]\n',
        "top.py": THREE_BUGS,
        # A project folder with its own pyproject.toml.
        "a/pyproject.toml": '[project]\nname = "a"\n\n[tool.modelint]\nselect = ["MDL005"]\n',
        "a/x.py": THREE_BUGS,
        "a/deep/er/y.py": THREE_BUGS,  # no config of its own: a/pyproject.toml is the closest
        # modelint.toml: the table is the whole file.
        "b/modelint.toml": 'ignore = ["MDL005"]\n',
        "b/z.py": THREE_BUGS,
        # A pyproject.toml without [tool.modelint] is no modelint config: the parent's applies.
        "c/pyproject.toml": '[project]\nname = "c"\n',
        "c/w.py": THREE_BUGS,
        # Both in one folder: modelint.toml comes first (as ruff.toml before pyproject.toml).
        "d/modelint.toml": 'select = ["MDL006"]\n',
        "d/pyproject.toml": '[tool.modelint]\nselect = ["MDL005"]\n',
        "d/v.py": THREE_BUGS,
        # modelint.toml may also spell the table out.
        "e/modelint.toml": '[tool.modelint]\nextend-select = []\nignore = ["MDL004", "MDL006"]\n',
        "e/u.py": THREE_BUGS,
    })
    result = check("--jobs", "1", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert codes_by_path(result.stdout) == {
        "top.py": {"MDL004"},
        "a/x.py": {"MDL005"},
        "a/deep/er/y.py": {"MDL005"},
        "b/z.py": {"MDL004", "MDL006"},
        "c/w.py": {"MDL004"},
        "d/v.py": {"MDL006"},
        "e/u.py": {"MDL005"},
    }
    # The same files named one by one get the same configs.
    named = check("--jobs", "1", "a/x.py", "b/z.py", "top.py", cwd=tmp_path)
    assert codes_by_path(named.stdout) == {"a/x.py": {"MDL005"}, "b/z.py": {"MDL004", "MDL006"},
                                           "top.py": {"MDL004"}}
    # Run from inside a subfolder: the config is found by walking up from the file.
    inside = check("x.py", cwd=tmp_path / "a")
    assert codes_by_path(inside.stdout) == {"x.py": {"MDL005"}}


def test_command_line_selection_overrides_the_config(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": '[tool.modelint]\nselect = ["MDL004"]\nignore = ["MDL006"]\n',
                     "m.py": THREE_BUGS})
    assert codes_by_path(check("--select", "MDL005", "m.py", cwd=tmp_path).stdout) == {"m.py": {"MDL005"}}
    widened = check("--extend-select", "MDL005", "m.py", cwd=tmp_path)
    assert codes_by_path(widened.stdout) == {"m.py": {"MDL004", "MDL005"}}


def test_per_file_ignores_exclude_extend_exclude(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    write(tmp_path, {
        "pyproject.toml": (
            "[tool.modelint]\n"
            'extend-exclude = ["generated", "legacy_*.py"]\n'
            "[tool.modelint.per-file-ignores]\n"
            '"tests/*" = ["MDL005"]\n'
            '"scripts/run.py" = ["MDL00"]\n'
        ),
        "main.py": THREE_BUGS,
        "tests/test_m.py": THREE_BUGS,
        "scripts/run.py": THREE_BUGS,
        "scripts/other.py": THREE_BUGS,
        "generated/g.py": THREE_BUGS,
        "legacy_model.py": THREE_BUGS,
        "build/b.py": THREE_BUGS,  # in the default exclude list
        # A project with `exclude` replaces the defaults (so build/ is checked there).
        "sub/modelint.toml": 'exclude = ["skip"]\n',
        "sub/skip/s.py": THREE_BUGS,
        "sub/build/b.py": THREE_BUGS,
    })
    result = check("--jobs", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert codes_by_path(result.stdout) == {
        "main.py": ALL_THREE,
        "tests/test_m.py": {"MDL004", "MDL006"},
        "scripts/other.py": ALL_THREE,
        "sub/build/b.py": ALL_THREE,
    }


def test_explicit_config_option(tmp_path: Path) -> None:
    write(tmp_path, {
        "pyproject.toml": '[tool.modelint]\nselect = ["MDL004"]\n',
        "other/settings.toml": 'select = ["MDL006"]\n',
        "m.py": THREE_BUGS,
        "sub/pyproject.toml": '[tool.modelint]\nselect = ["MDL005"]\n',
        "sub/n.py": THREE_BUGS,
    })
    result = check("--config", "other/settings.toml", "--jobs", "1", cwd=tmp_path)
    assert codes_by_path(result.stdout) == {"m.py": {"MDL006"}, "sub/n.py": {"MDL006"}}


# --- errors: exit 2, one line naming the file, no traceback ---------------------------------------------------------

def _assert_config_error(result, *needles: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("name", "content", "needles"), [
    ("pyproject.toml", '[tool.modelint]\nselcet = ["MDL005"]\n', ["selcet", "did you mean", "select"]),
    ("pyproject.toml", '[tool.modelint]\nextend_exclude = ["x"]\n', ["extend_exclude", "extend-exclude"]),
    ("modelint.toml", 'per-file-ignore = {}\n', ["per-file-ignore", "per-file-ignores"]),
    ("pyproject.toml", '[tool.modelint]\nfrobnicate = true\n', ["frobnicate"]),
])
def test_unknown_key(tmp_path: Path, name: str, content: str, needles: list[str]) -> None:
    write(tmp_path, {name: content, "m.py": EVAL_BUG})
    line = _assert_config_error(check("m.py", cwd=tmp_path), name, *needles)
    assert "unknown key" in line


@pytest.mark.parametrize("content", [
    '[tool.modelint]\nselect = "MDL005"\n',
    '[tool.modelint]\nignore = [5]\n',
    '[tool.modelint]\nexclude = "build"\n',
    '[tool.modelint]\nextend-exclude = [true]\n',
    '[tool.modelint]\nper-file-ignores = ["tests/*"]\n',
    '[tool.modelint]\nper-file-ignores = {"tests/*" = "MDL005"}\n',
    '[tool.modelint]\nrespect-gitignore = "yes"\n',
    "[tool]\nmodelint = 3\n",
])
def test_wrong_types(tmp_path: Path, content: str) -> None:
    write(tmp_path, {"pyproject.toml": content, "m.py": EVAL_BUG})
    _assert_config_error(check("m.py", cwd=tmp_path), "pyproject.toml")


@pytest.mark.parametrize("content", ["[tool.modelint\nselect = []\n", '[tool.modelint]\nselect = ["MDL005"\n',
                                     "[tool.modelint]\nselect = [] = 1\n"])
def test_invalid_toml(tmp_path: Path, content: str) -> None:
    write(tmp_path, {"pyproject.toml": content, "m.py": EVAL_BUG})
    _assert_config_error(check("m.py", cwd=tmp_path), "pyproject.toml", "TOML")


@pytest.mark.parametrize(("content", "code"), [
    ('[tool.modelint]\nselect = ["MDL999"]\n', "MDL999"),
    ('[tool.modelint]\nignore = ["MDL005", "XYZ"]\n', "XYZ"),
    ('[tool.modelint]\nextend-select = ["MDL0050"]\n', "MDL0050"),
    ('[tool.modelint.per-file-ignores]\n"tests/*" = ["E501"]\n', "E501"),
])
def test_unknown_code_in_config(tmp_path: Path, content: str, code: str) -> None:
    write(tmp_path, {"pyproject.toml": content, "m.py": EVAL_BUG})
    _assert_config_error(check("m.py", cwd=tmp_path), "pyproject.toml", code)


def test_bad_nested_config_found_during_the_walk(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": EVAL_BUG, "inner/modelint.toml": 'selectt = ["MDL005"]\n', "inner/n.py": EVAL_BUG})
    _assert_config_error(check("--jobs", "1", cwd=tmp_path), "modelint.toml", "selectt")


def test_config_option_errors(tmp_path: Path) -> None:
    write(tmp_path, {"m.py": EVAL_BUG, "empty.toml": "", "noTable/pyproject.toml": '[project]\nname = "x"\n',
                     "bad.toml": 'select = ["MDL005"\n'})
    _assert_config_error(check("--config", "missing.toml", "m.py", cwd=tmp_path), "missing.toml")
    _assert_config_error(check("--config", "bad.toml", "m.py", cwd=tmp_path), "bad.toml", "TOML")
    _assert_config_error(check("--config", "noTable/pyproject.toml", "m.py", cwd=tmp_path), "pyproject.toml")
    # An empty modelint-style file is a valid config with nothing in it: every rule, default excludes.
    empty = check("--config", "empty.toml", "m.py", cwd=tmp_path)
    assert empty.returncode == 1 and codes_by_path(empty.stdout) == {"m.py": {"MDL005"}}
