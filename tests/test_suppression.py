"""`# noqa` on a line, on the first line of a statement, and file-level `# modelint: noqa`."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_cli import HEADER, MODEL, check, codes_by_path, findings, write

# Each line that must still be reported ends in `# reported`; the test reads the
# expected (row, code) from those marks.
LINES = HEADER + MODEL + """\
model.eval  # noqa
model.eval  # noqa: MDL005
model.eval  # NOQA:MDL005
model.eval  # noqa: MDL004 (reported)
model.eval  # noqa: MDL001,MDL002 (reported)
model.eval  # noqa: MDL001, MDL005
model.eval  # noqa:MDL004 MDL005
model.eval  #noqa
torch.no_grad()  # noqa: MDL005 (reported)
torch.no_grad()  # type: ignore  # noqa: MDL004
model.train("val")  # noqa: MDL006
model.eval  # a comment that says noqa without the hash (reported)
result = print(  # noqa: MDL006
    1,
    model.train("val"),
)
other = print(  # noqa: MDL005
    model.train("val"),  # (reported)
)
with torch.no_grad():  # noqa: MDL006
    model.train("val")  # (reported)
if True:
    model.eval  # noqa
    model.eval  # (reported)
"""


def _expected(source: str) -> list[tuple[int, str]]:
    out = []
    for row, line in enumerate(source.splitlines(), 1):
        if "(reported)" in line:
            code = "MDL004" if "no_grad" in line else "MDL006" if "train(" in line else "MDL005"
            out.append((row, code))
    return out


def test_line_noqa(tmp_path: Path) -> None:
    write(tmp_path, {"lines.py": LINES, "crlf.py": LINES.replace("\n", "\r\n")})
    result = check("--jobs", "1", "lines.py", "crlf.py", cwd=tmp_path)
    assert result.returncode == 1
    expected = _expected(LINES)
    assert [(row, code) for path, row, _, code in findings(result.stdout) if path == "lines.py"] == expected
    assert [(row, code) for path, row, _, code in findings(result.stdout) if path == "crlf.py"] == expected


def test_noqa_on_the_first_line_of_a_multiline_statement(tmp_path: Path) -> None:
    source = HEADER + MODEL + 'outputs = [  # noqa: MDL006\n    1,\n    model.train(\n        "val"\n    ),\n]\n'
    write(tmp_path, {"m.py": source, "n.py": source.replace("  # noqa: MDL006", "")})
    result = check("--jobs", "1", "m.py", "n.py", cwd=tmp_path)
    assert findings(result.stdout) == [("n.py", 6, 5, "MDL006")]


FILE_LEVEL = HEADER + MODEL + "model.eval\ntorch.no_grad()\nmodel.train(\"val\")\n"


@pytest.mark.parametrize(("directive", "left"), [
    ("# modelint: noqa\n", set()),
    ("# modelint: noqa: MDL005\n", {"MDL004", "MDL006"}),
    ("# modelint: noqa: MDL005, MDL006\n", {"MDL004"}),
    ("#modelint:noqa:MDL004\n", {"MDL005", "MDL006"}),
    # Any case, as flake8's `# flake8: noqa` and ruff's `# ruff: noqa`; codes too.
    ("# MODELINT: NOQA\n", set()),
    ("# Modelint: NoQA: mdl005\n", {"MDL004", "MDL006"}),
    ("  # modelint: noqa  \n", set()),
])
def test_file_level_noqa(tmp_path: Path, directive: str, left: set[str]) -> None:
    # At the top, or anywhere on a line of its own.
    write(tmp_path, {"top.py": directive + FILE_LEVEL, "bottom.py": FILE_LEVEL + directive})
    result = check("--jobs", "1", "top.py", "bottom.py", cwd=tmp_path)
    assert result.returncode == (1 if left else 0)
    found = codes_by_path(result.stdout)
    assert found.get("top.py", set()) == left
    assert found.get("bottom.py", set()) == left


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_file_level_noqa_with_other_line_ends(tmp_path: Path, newline: str) -> None:
    source = (FILE_LEVEL + "# MODELINT: NOQA: MDL004\n").replace("\n", newline)
    write(tmp_path, {"ends.py": source})
    result = check("--jobs", "1", "ends.py", cwd=tmp_path)
    assert codes_by_path(result.stdout) == {"ends.py": {"MDL005", "MDL006"}}


def test_file_level_noqa_must_be_a_comment_of_its_own(tmp_path: Path) -> None:
    write(tmp_path, {
        # After code it is no file-level directive (and names no code of the finding).
        "trailing.py": HEADER + MODEL + "x = 1  # modelint: noqa\nmodel.eval\n",
        # Inside a docstring (documentation of modelint itself, say) it is text, not a directive.
        "docstring.py": '"""Silence a file with\n\n# modelint: noqa\n"""\n' + HEADER + MODEL + "model.eval\n",
        # Plain `# noqa` on a line of its own covers only that line.
        "plain.py": HEADER + MODEL + "# noqa\nmodel.eval\n",
    })
    result = check("--jobs", "1", "trailing.py", "docstring.py", "plain.py", cwd=tmp_path)
    assert codes_by_path(result.stdout) == {"trailing.py": {"MDL005"}, "docstring.py": {"MDL005"},
                                           "plain.py": {"MDL005"}}


def test_noqa_from_stdin(tmp_path: Path) -> None:
    source = HEADER + MODEL + "model.eval  # noqa: MDL005\ntorch.no_grad()\n"
    result = check("--stdin-filename", "piped.py", cwd=tmp_path, stdin=source)
    assert findings(result.stdout) == [("piped.py", 5, 1, "MDL004")]
