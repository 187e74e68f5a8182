"""Files that cannot be checked get one clear line each; the rest of the run is still reported.

Most cases share one run (a module-scoped project with every kind of bad file next to
good and buggy ones), so each assertion below reads the same output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers_cli import (CLEAN, EVAL_BUG, HEADER, TRAIN_BUG, check, findings, lines_for, symlink,
                         write)

BAD_FILES: dict[str, bytes] = {
    "syntax_torch.py": b"import torch\n\ndef evaluate(model:\n    model.eval()\n",
    "syntax_plain.py": b"def f(:\n    pass\n",
    "syntax_indent.py": b"import torch\nif True:\n        x = 1\n    y = 2\n",
    "not_utf8.py": b"import torch\nname = 'caf\xe9'\n",
    "not_utf8_line1.py": b"x = '\xff'\nimport torch\n",
    "nul.py": b"import torch\nx = 1\x00\n",
    "binary.py": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
    # Not UTF-8 and its declared codec does not exist: nothing to read it with.
    "bad_cookie.py": b"# -*- coding: no-such-codec -*-\nimport torch\nx = '\xff'\n",
}

GOOD_FILES: dict[str, bytes] = {
    "buggy.py": EVAL_BUG.encode(),
    "clean.py": CLEAN.encode(),
    # Valid: a latin-1 declaration with latin-1 bytes. `s = "café"; ` is 12 code points.
    "latin1.py": b"# -*- coding: latin-1 -*-\n" + HEADER.encode() + b"model = nn.Linear(2, 2)\n"
                 + b's = "caf\xe9"; model.eval\n',
    "crlf.py": (HEADER + "\nmodel = nn.Linear(2, 2)\nx = '''a\nb'''\nmodel.eval\n").replace("\n", "\r\n").encode(),
    "bom.py": b"\xef\xbb\xbf" + EVAL_BUG.encode(),
    "bom_line1.py": b"\xef\xbb\xbfimport torch; import torch.nn as nn; model = nn.Linear(2, 2); model.eval\n",
    "tabs.py": (HEADER + "if True:\n\tmodel = nn.Linear(2, 2)\n\tmodel.eval\n").encode(),
    # Columns count Unicode code points, as ruff does (not bytes, not UTF-16 units).
    "unicode.py": (HEADER + "modèl = nn.Linear(2, 2)\ns = \"日本語\"; modèl.eval\n").encode(),
    "astral.py": (HEADER + "model = nn.Linear(2, 2)\ns = \"🙂🙂\"; model.eval\n").encode(),
    "deep_parens.py": (HEADER + "x = " + "(" * 1000 + "1" + ")" * 1000 + "\n").encode(),
    # A codec this Python lacks, over plain UTF-8 (future-fstrings, in older repositories): read as UTF-8.
    "codec_cookie.py": b"# -*- coding: future_fstrings -*-\n" + HEADER.encode() + b"model = nn.Linear(2, 2)\n"
                       + b"model.eval\n",
}

# file -> (row, column, code) of the one line it must get.
EXPECTED_GOOD = {
    "buggy.py": (4, 1, "MDL005"),
    "latin1.py": (5, 13, "MDL005"),
    "crlf.py": (7, 1, "MDL005"),
    "bom.py": (4, 1, "MDL005"),
    "bom_line1.py": (1, 63, "MDL005"),
    "tabs.py": (5, 2, "MDL005"),
    "unicode.py": (4, 12, "MDL005"),
    "astral.py": (4, 11, "MDL005"),
    "codec_cookie.py": (5, 1, "MDL005"),
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mixed")
    write(root, {**BAD_FILES, **GOOD_FILES})
    links = symlink("nowhere.py", root / "broken_link.py")
    links = links and symlink("loop_b.py", root / "loop_a.py") and symlink("loop_a.py", root / "loop_b.py")
    result = check("--jobs", "1", ".", "missing.py", "missing_dir", cwd=root)
    return root, result, links


def test_the_run_goes_on_and_exits_1(mixed) -> None:
    _, result, _ = mixed
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr == ""
    assert "could not be checked" in result.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED_GOOD))
def test_good_files_are_reported_with_the_right_position(mixed, name: str) -> None:
    _, result, _ = mixed
    found = [f[1:] for f in findings(result.stdout) if f[0] == name]
    assert found == [EXPECTED_GOOD[name]], result.stdout


def test_clean_file_has_no_line(mixed) -> None:
    _, result, _ = mixed
    assert lines_for(result.stdout, "clean.py") == []


@pytest.mark.parametrize(("name", "code", "words"), [
    ("syntax_torch.py", "E999", ["SyntaxError"]),
    ("syntax_plain.py", "E999", ["SyntaxError"]),
    ("syntax_indent.py", "E999", []),
    ("not_utf8.py", "E902", ["utf-8"]),
    ("not_utf8_line1.py", "E902", ["utf-8"]),
    ("nul.py", "E902", ["NUL"]),
    ("binary.py", "E902", ["NUL"]),
    ("bad_cookie.py", "E902", ["no-such-codec"]),
    ("missing.py", "E902", ["no such file"]),
    ("missing_dir", "E902", ["no such file"]),
])
def test_bad_file_gets_one_clear_line(mixed, name: str, code: str, words: list[str]) -> None:
    _, result, _ = mixed
    lines = lines_for(result.stdout, name)
    assert len(lines) == 1, result.stdout
    [(_, row, column, found_code)] = findings(lines[0])
    assert found_code == code
    if code == "E902":
        assert (row, column) == (1, 1)
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("name", ["syntax_torch.py", "syntax_plain.py", "syntax_indent.py"])
def test_syntax_error_position_and_message_match_cpython(mixed, name: str) -> None:
    root, result, _ = mixed
    with pytest.raises(SyntaxError) as expected:
        compile((root / name).read_bytes(), name, "exec")
    [line] = lines_for(result.stdout, name)
    [(_, row, column, _)] = findings(line)
    assert (row, column) == (expected.value.lineno, expected.value.offset), line
    assert expected.value.msg in line


@pytest.mark.parametrize("name", ["broken_link.py", "loop_a.py", "loop_b.py"])
def test_bad_symlinks_get_an_e902_line(mixed, name: str) -> None:
    _, result, links = mixed
    if not links:
        pytest.skip("symbolic links are not available here")
    lines = lines_for(result.stdout, name)
    assert len(lines) == 1, result.stdout
    assert findings(lines[0])[0][3] == "E902"
    assert ("loop" if name.startswith("loop") else "broken") in lines[0]


def test_deep_nesting_is_a_normal_result_or_a_clear_error(mixed) -> None:
    _, result, _ = mixed
    lines = lines_for(result.stdout, "deep_parens.py")
    assert len(lines) <= 1
    if lines:
        assert findings(lines[0])[0][3] in ("E999", "E903")


# --- runs of their own ---------------------------------------------------------------------------------------------

def test_exit_2_when_nothing_could_be_checked(tmp_path: Path) -> None:
    write(tmp_path, {"a.py": BAD_FILES["syntax_torch.py"], "b.py": BAD_FILES["not_utf8.py"]})
    result = check("--jobs", "1", "a.py", "b.py", "nope.py", cwd=tmp_path)
    assert result.returncode == 2
    assert {f[0]: f[3] for f in findings(result.stdout)} == {"a.py": "E999", "b.py": "E902", "nope.py": "E902"}
    only_missing = check("nope.py", cwd=tmp_path)
    assert only_missing.returncode == 2
    assert len(findings(only_missing.stdout)) == 1


def test_explicit_symlink_loop_and_broken_link(tmp_path: Path) -> None:
    if not (symlink("loop2.py", tmp_path / "loop1.py") and symlink("loop1.py", tmp_path / "loop2.py")
            and symlink("gone.py", tmp_path / "broken.py")):
        pytest.skip("symbolic links are not available here")
    write(tmp_path, {"buggy.py": TRAIN_BUG})
    (tmp_path / "sub").mkdir()
    symlink("..", tmp_path / "sub" / "up")  # a folder loop: walked once
    result = check("--jobs", "1", "loop1.py", "broken.py", "buggy.py", "sub", cwd=tmp_path)
    assert result.returncode == 1
    found = {f[0]: f[3] for f in findings(result.stdout)}
    assert found["loop1.py"] == "E902" and found["broken.py"] == "E902"
    assert "loop" in lines_for(result.stdout, "loop1.py")[0]
    assert "broken" in lines_for(result.stdout, "broken.py")[0]
    # sub/up leads back to buggy.py, which was named first: linted once, under that name.
    assert [f for f in findings(result.stdout) if f[3] == "MDL006"] == [("buggy.py", 4, 1, "MDL006")]
    assert lines_for(result.stdout, "sub/up/broken.py") == []


def test_a_linked_folder_inside_the_tree_is_reported_under_its_real_name(tmp_path: Path) -> None:
    write(tmp_path, {"src/buggy.py": TRAIN_BUG})
    (tmp_path / "probing").mkdir()
    if not symlink(os.path.join("..", "src"), tmp_path / "probing" / "src"):
        pytest.skip("symbolic links are not available here")
    result = check("--jobs", "1", ".", cwd=tmp_path)
    assert [f[0] for f in findings(result.stdout) if f[3] == "MDL006"] == ["src/buggy.py"]
    # Named on its own, the link's folder is linted under the name given.
    named = check("--jobs", "1", "probing", cwd=tmp_path)
    assert [f[0] for f in findings(named.stdout) if f[3] == "MDL006"] == ["probing/src/buggy.py"]


def test_stdin_that_is_not_utf8(tmp_path: Path) -> None:
    result = check("--stdin-filename", "piped.py", cwd=tmp_path, stdin=b"\xff\xfeimport torch\n")
    assert result.returncode == 2
    [line] = result.stdout.splitlines()[:1]
    assert line.startswith("piped.py:1:1: E902 ") and "utf-8" in line


def test_stdin_syntax_error(tmp_path: Path) -> None:
    result = check("--stdin-filename", "piped.py", cwd=tmp_path, stdin="import torch\nmodel.eval(\n")
    assert result.returncode == 2
    assert findings(result.stdout)[0][3] == "E999"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    write(tmp_path, {"secret.py": EVAL_BUG, "locked/inner.py": EVAL_BUG, "buggy.py": TRAIN_BUG})
    (tmp_path / "secret.py").chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        result = check("--jobs", "1", cwd=tmp_path)
    finally:
        (tmp_path / "secret.py").chmod(0o644)
        (tmp_path / "locked").chmod(0o755)
    assert result.returncode == 1
    found = {f[0]: f[3] for f in findings(result.stdout)}
    assert found == {"secret.py": "E902", "locked": "E902", "buggy.py": "MDL006"}, result.stdout


def test_permission_errors_emulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as test_unreadable_file_and_folder, in process, with EACCES raised by hand (works as root).

    Path.is_file() raises PermissionError inside a folder that cannot be searched; discovery
    and config lookup must treat that as "cannot read folder", never crash.
    """
    import builtins
    import errno

    from modelint import source
    from modelint.config import ConfigResolver
    from modelint.runner import Overrides, run_paths

    write(tmp_path, {"secret.py": EVAL_BUG, "locked/inner.py": EVAL_BUG, "buggy.py": TRAIN_BUG})
    locked, secret = str(tmp_path / "locked"), str(tmp_path / "secret.py")
    real_stat, real_scandir, real_open = os.stat, os.scandir, builtins.open

    def denied(path) -> PermissionError:
        return PermissionError(errno.EACCES, "Permission denied", str(path))

    def stat(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(os.fspath(path))) == locked:
            raise denied(path)
        return real_stat(path, *args, **kwargs)

    def scandir(path="."):
        if os.path.abspath(os.fspath(path)) == locked:
            raise denied(path)
        return real_scandir(path)

    def open_(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)) in (secret, locked):
            raise denied(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(builtins, "open", open_)
    run = run_paths(["."], ConfigResolver(), Overrides(), jobs=1)
    found = {(f.path.replace(os.sep, "/"), f.code) for f in run.findings}
    assert found == {("secret.py", "E902"), ("locked", "E902"), ("buggy.py", "MDL006")}
    messages = {f.path: f.message for f in run.findings}
    assert "Permission denied" in messages["secret.py"] and "cannot read folder" in messages["locked"]
    assert run.files_checked == 1
    assert source  # imported before the patch: it reads through the patched builtins.open


def test_long_flat_expression_does_not_take_the_run_down(tmp_path: Path) -> None:
    """1,000 chained `+` nest 1,000 deep in the syntax tree: linted like any file, never a crash."""
    write(tmp_path, {"chain.py": HEADER + "x = " + " + ".join(["a"] * 1000) + "\n", "buggy.py": TRAIN_BUG})
    result = check("--jobs", "1", "chain.py", "buggy.py", cwd=tmp_path)
    assert result.returncode == 1
    assert ("buggy.py", 4, 1, "MDL006") in findings(result.stdout)
    assert lines_for(result.stdout, "chain.py") == []


def test_very_deep_nesting_does_not_crash(tmp_path: Path) -> None:
    write(tmp_path, {"deep.py": HEADER + "x = " + "[" * 5000 + "]" * 5000 + "\n", "buggy.py": TRAIN_BUG})
    result = check("--jobs", "1", "deep.py", "buggy.py", cwd=tmp_path)
    assert result.returncode == 1
    assert ("buggy.py", 4, 1, "MDL006") in findings(result.stdout)
    [line] = lines_for(result.stdout, "deep.py")
    assert findings(line)[0][3] == "E999" and "too many nested parentheses" in line


def test_a_file_without_summary_in_a_later_round_loses_no_finding(tmp_path, monkeypatch) -> None:
    """A file analysed again with what other files' helpers do may come back without a summary (it timed out,
    or failed, that time): the rounds go on without it, and the run keeps every file's findings."""
    from dataclasses import replace

    from modelint import across_files, runner
    from modelint.config import ConfigResolver

    (tmp_path / "helpers.py").write_text(
        "import torch\n\n\ndef evaluate(model, loader):\n    with torch.no_grad():\n"
        "        return [model(x).argmax(1) for x in loader]\n")
    (tmp_path / "train.py").write_text(
        "import torch\n\nfrom helpers import evaluate\n\n\ndef main(model, loader):\n    model.train()\n"
        "    print(evaluate(model, loader))\n")
    real = across_files._lint_all
    calls = []

    def lint_all(work, workers, index=None, cache_dir=None):
        results = real(work, workers, index, cache_dir)
        calls.append(index)
        return [replace(r, summary=None) if index is not None else r for r in results]

    monkeypatch.setattr(across_files, "_lint_all", lint_all)
    run = runner.run_paths([str(tmp_path)], ConfigResolver(), runner.Overrides(), jobs=1)
    assert any(index is not None for index in calls)  # (a second round ran)
    assert [(f.path.rsplit("/", 1)[-1], f.code) for f in run.findings] == [("helpers.py", "MDL001")]


def test_script_forward_of_an_unbound_name_beside_a_module_class_raises_nothing(tmp_path: Path) -> None:
    """A notebook-like script: a module class whose `__init__` runs its layers over a loop, then a module-level
    `model.forward(x)` of a name bound nowhere, under no_grad. Found by a precision set: the rule asked
    whether the script had callers and failed with an internal error (MDL000)."""
    from modelint import engine
    from modelint.registry import all_rules

    path = tmp_path / "darknet.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass Darknet(nn.Module):\n    def __init__(self, blocks):\n"
        "        for block, module in zip(blocks, self.module_list):\n            x = module(x)\n"
        "            x = torch.cat([outputs[int(i)] for i in block.split(',')], 1)\n\n\n"
        "with torch.no_grad():\n    out = model.forward(dummy_img)\n")
    result = engine.lint_path(str(path), frozenset(all_rules()))
    assert not [f for f in result.findings if f.code == "MDL000"]


def test_pre_python37_async_keyword_is_reported_and_the_rest_checked(tmp_path: Path) -> None:
    """`x.cuda(async=True)` (PyTorch's `non_blocking=` before 0.4) no longer parses: E999 at it, and the file's
    evaluation is still checked, with no fix offered (the file does not parse either way)."""
    source = (HEADER + "\n\ndef evaluate(model, loader):\n    model.eval()\n    for x, y in loader:\n"
              "        x = x.cuda(async=True)\n        print((model(x).argmax(1) == y).float().mean().item())\n")
    write(tmp_path, {"old_eval.py": source})
    result = check("--select", "MDL002", "--fix", "--unsafe-fixes", cwd=tmp_path)
    found = [(row, code) for _path, row, _col, code in findings(result.stdout)]
    rows = source.splitlines()
    assert found == [(rows.index("        x = x.cuda(async=True)") + 1, "E999"),
                     (rows.index("        print((model(x).argmax(1) == y).float().mean().item())") + 1, "MDL002")]
    assert (tmp_path / "old_eval.py").read_text() == source and "Traceback" not in result.stderr


def test_a_finding_a_caller_proves_in_a_pre_python37_async_file_keeps_its_position(tmp_path: Path) -> None:
    """train.py calls `evaluate()` of an `async=True` file with autograd on: the finding it proves there is
    placed on that file's tree as read with the keyword renamed, not lost because the file does not parse."""
    helper = (HEADER + "\n\ndef evaluate(model, loader):\n    model.eval()\n    for x, y in loader:\n"
              "        x = x.cuda(async=True)\n        print((model(x).argmax(1) == y).float().mean().item())\n")
    caller = ("import torch\nfrom old_eval import evaluate\n\n\ndef main(model, opt, train, val):\n"
              "    for x, y in train:\n        model.train()\n"
              "        loss = torch.nn.functional.cross_entropy(model(x), y)\n"
              "        opt.zero_grad()\n        loss.backward()\n        opt.step()\n        evaluate(model, val)\n")
    write(tmp_path, {"old_eval.py": helper, "train.py": caller})
    result = check("--select", "MDL002", cwd=tmp_path)
    found = [(Path(path).name, row, code) for path, row, _col, code in findings(result.stdout)]
    rows = helper.splitlines()
    assert ("old_eval.py", rows.index("        print((model(x).argmax(1) == y).float().mean().item())") + 1,
            "MDL002") in found
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(__import__("multiprocessing").get_context().get_start_method() != "fork",
                    reason="the patched engine reaches the workers only through fork")
def test_a_worker_process_that_dies_loses_only_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed on one file (the native parser crashing, the kernel out of memory) breaks the whole
    pool: the other files are analysed again and reported, the culprit gets one MDL000 line."""
    from modelint import workers

    real, parent = workers._lint_jobs, os.getpid()

    def lint_jobs(jobs, index=None, cache_dir=None):
        if os.getpid() != parent and any(job[0].endswith("culprit.py") for job in jobs):
            os.kill(os.getpid(), 9)
        return real(jobs, index, cache_dir)

    monkeypatch.setattr(workers, "_lint_jobs", lint_jobs)
    work = []
    for i in range(workers.PARALLEL_THRESHOLD):
        path = tmp_path / ("culprit.py" if i == 5 else f"m{i}.py")
        path.write_text(EVAL_BUG)
        work.append((str(path), frozenset({"MDL005"})))
    with workers.Workers(2) as pool:
        results = pool.lint(work)
    assert [r.path for r in results] == [job[0] for job in work]
    for result in results:
        codes = [f.code for f in result.findings]
        if result.path.endswith("culprit.py"):
            assert codes == ["MDL000"] and not result.checked
            assert "died (killed by signal 9)" in result.findings[0].message
        else:
            assert codes == ["MDL005"] and result.checked
