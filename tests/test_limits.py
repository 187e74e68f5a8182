"""modelint.limits and the iterative walks: what keeps one hostile file from taking a run down.

The end-to-end cases (deep, huge, binary files next to a sentinel, through the CLI) are in
test_hostile.py; these are the parts, in process.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import libcst as cst
import pytest

from modelint import engine, limits
from modelint.facts.collector import Collector
from modelint.facts.walk import FastVisitor, iter_nodes
from modelint.finding import NOT_ANALYSED, SYNTAX_ERROR
from modelint.registry import all_rules

CODES = frozenset(all_rules())
FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").rglob("*.py"))
HEADER = "import torch\nimport torch.nn as nn\n"


# --- the walks ------------------------------------------------------------------------------------------------------

def _attribute_chain(depth: int) -> cst.Module:
    """`model.a.a.a...` built node by node: deeper than any parser would hand over."""
    expr: cst.BaseExpression = cst.Name("model")
    for _ in range(depth):
        expr = cst.Attribute(value=expr, attr=cst.Name("a"))
    return cst.Module(body=[cst.SimpleStatementLine(body=[cst.Expr(value=cst.Call(func=expr))])])


def test_walks_do_not_recurse() -> None:
    module = _attribute_chain(50_000)
    collector = Collector()
    collector.walk(module)
    assert len(collector.calls) == 1 and collector.calls[0].text.count(".") == 50_000
    assert sum(1 for _ in iter_nodes(module)) > 100_000
    assert sum(1 for _ in iter_nodes(module, source_order=True)) > 100_000


class _Recorder(FastVisitor):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.lambdas: set[int] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.events.append(("visit", id(node)))
        return True

    def on_leave(self, node: cst.CSTNode) -> None:
        self.events.append(("leave", id(node)))

    def leave_Call(self, node: cst.Call) -> None:
        self.events.append(("leave_Call", id(node)))

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        self.lambdas.add(id(node))
        return False  # children skipped, on_leave still called


@pytest.mark.parametrize("path", FIXTURES[::7], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_walk_orders(path: Path) -> None:
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    recorder = _Recorder()
    recorder.walk(module)
    visits = [node for kind, node in recorder.events if kind == "visit"]
    # The visitor and iter_nodes meet the same nodes in the same order (lambdas aside).
    assert [node for node in visits if node not in recorder.lambdas] == \
        [id(node) for node in iter_nodes(module, skip_lambdas=True)]
    # Every node is left after its children, once; leave_Call before on_leave.
    assert sorted(node for kind, node in recorder.events if kind == "leave") == sorted(visits)
    for i, (kind, node) in enumerate(recorder.events):
        if kind == "leave_Call":
            assert recorder.events[i + 1] == ("leave", node)
    # source_order: the order libcst's own visitor (and the text) has.
    seen: list[int] = []

    class _Order(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            seen.append(id(node))
            return True

    module.visit(_Order())
    ours = [id(node) for node in iter_nodes(module, source_order=True)]
    kept = set(ours)
    assert [node for node in seen if node in kept] == ours


# --- the look before libcst -----------------------------------------------------------------------------------------

def test_shape_ignores_brackets_in_strings_and_comments() -> None:
    text = 'x = "(((((" + \'[[[[\' + """\n{{{{\n"""  # ((((\ny = f(g(h(1)))\n'
    assert limits.shape(text).brackets == 3
    assert limits.shape("if a:\n    pass\n" + "elif a:\n    pass\n" * 7).elifs == 7
    assert limits.shape("x = (1 +\n     2 +\n     3)\ny = 1\n").logical_line == len("x = (1 +\n     2 +\n     3)\n")


@pytest.mark.parametrize("path", FIXTURES[::5], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ordinary_files_take_the_fast_path(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text) <= limits.SHORT or limits.shape(text).ordinary
    assert limits.check(text) is None


def test_parsing_skips_node_validation_and_restores_it() -> None:
    """The parser builds valid nodes only: libcst's check of each is skipped while parsing, and is back for the
    nodes a fix builds by hand."""
    module = engine.parse("y = f(x)\n")
    assert module.code == "y = f(x)\n"
    with pytest.raises(cst.CSTValidationError):
        cst.Name("x", lpar=[cst.LeftParen()])  # (a parenthesis without its closing one)
    with pytest.raises(limits.Verdict):
        engine.parse("def f(:\n")
    with pytest.raises(cst.CSTValidationError):
        cst.Name("x", lpar=[cst.LeftParen()])


def test_words_in_docstrings_and_comments_do_not_make_a_file_relevant() -> None:
    """A tokenizer whose docs say "torch tensors" is checked for syntax only; the same words in code are not."""
    docs = '"""Returns torch tensors for training."""\n# no_grad is for the caller\ndef split(text):\n' \
           '    return text.split()\n'
    assert engine.lint_source(docs, "tok.py", CODES).summary is None
    assert limits.code_only(docs).count("torch") == 0
    code = "import torch\n\ndef split(text):\n    return torch.tensor(text)\n"
    assert limits.code_only(code).count("torch") == 2


def test_cpython_message_and_position_when_libcst_fails() -> None:
    text = HEADER + "\ndef evaluate(model:\n    model.eval()\n"
    [finding] = engine.lint_source(text, "bad.py", CODES).findings
    with pytest.raises(SyntaxError) as expected:
        compile(text, "bad.py", "exec")
    assert finding.code == SYNTAX_ERROR
    assert (finding.location.row, finding.location.column) == (expected.value.lineno, expected.value.offset)
    assert finding.message == f"SyntaxError: {expected.value.msg}"


def test_syntax_error_position_is_the_texts_not_the_files_on_disk(tmp_path: Path, monkeypatch) -> None:
    """Given the name of a file that exists, CPython places the error on that file's line: not ours to read."""
    (tmp_path / "cell.py").write_text('{\n "cells": [\n', encoding="utf-8")  # what a notebook looks like
    monkeypatch.chdir(tmp_path)
    [finding] = engine.lint_source("import torch\nfor epoch in range(3)\n    pass\n", "cell.py", CODES).findings
    assert (finding.code, finding.location.row, finding.location.column) == (SYNTAX_ERROR, 2, 22)


@pytest.mark.parametrize("header", [HEADER, ""], ids=["torch", "no_torch"])  # libcst, or only CPython's parser
def test_too_many_tokens(header: str) -> None:
    text = header + "x = [" + "0, " * (limits.MAX_TOKENS // 2 + 10) + "]\n"
    start = time.perf_counter()
    [finding] = engine.lint_source(text, "big.py", CODES).findings
    assert finding.code == NOT_ANALYSED and "too large" in finding.message
    assert time.perf_counter() - start < 10


def test_too_deep_for_libcst_but_not_for_cpython() -> None:
    text = HEADER + "x = " + " and ".join(["a"] * (limits.MAX_DEPTH + 10)) + "\n"
    compile(text, "deep.py", "exec")  # CPython takes it: its BoolOp is flat, libcst nests one level per `and`
    [finding] = engine.lint_source(text, "deep.py", CODES).findings
    assert finding.code == NOT_ANALYSED and "nested too deeply" in finding.message


def test_recursion_limit_is_restored() -> None:
    before = sys.getrecursionlimit()
    # 600 levels: past the default recursion limit for libcst's code generation (3 frames a level), within
    # what Python 3.12's own C recursion limit leaves it (~750).
    findings = engine.lint_source(HEADER + "model = nn.Linear(2, 2)\nx = " + "-" * 600 + "1\nmodel.eval\n", "d.py",
                                  CODES).findings
    assert [f.code for f in findings] == ["MDL005"]
    assert sys.getrecursionlimit() == before


# --- the time limit -------------------------------------------------------------------------------------------------

def test_time_limit_interrupts_and_restores_the_alarm() -> None:
    if not hasattr(signal, "setitimer"):
        pytest.skip("no SIGALRM here")
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(limits.Timeout):
        with limits.time_limit(0.2):
            time.sleep(5)
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_time_limit_gives_an_e903_line(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(signal, "setitimer"):
        pytest.skip("no SIGALRM here")

    def forever(*args, **kwargs):
        while True:
            pass

    monkeypatch.setenv(limits.TIMEOUT_ENV, "0.3")
    monkeypatch.setattr(engine, "_analyse", forever)
    start = time.perf_counter()
    [finding] = engine.lint_source(HEADER + "model.eval\n", "slow.py", CODES).findings
    assert time.perf_counter() - start < 5
    assert finding.code == NOT_ANALYSED and "time limit" in finding.message and limits.TIMEOUT_ENV in finding.message


@pytest.mark.parametrize(("raw", "size", "seconds"), [
    (None, 10, limits.DEFAULT_TIMEOUT),
    (None, 3 * limits.TIMEOUT_CHARS, 3 * limits.DEFAULT_TIMEOUT),
    ("5", 10, 5.0),
    ("0", 10, 0.0),
    ("nonsense", 10, limits.DEFAULT_TIMEOUT),
])
def test_timeout_setting(monkeypatch: pytest.MonkeyPatch, raw: str | None, size: int, seconds: float) -> None:
    if raw is None:
        monkeypatch.delenv(limits.TIMEOUT_ENV, raising=False)
    else:
        monkeypatch.setenv(limits.TIMEOUT_ENV, raw)
    assert limits.timeout_seconds(size) == seconds


def test_no_time_limit_outside_the_main_thread() -> None:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(engine.lint_source(HEADER + "model.eval\n", "t.py", CODES)))
    thread.start()
    thread.join()
    assert out and out[0].checked


def test_a_timed_out_file_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How long a file takes depends on the machine's load: the next run tries again."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("no SIGALRM here")
    from modelint import workers

    path = tmp_path / "m.py"
    path.write_text(HEADER + "model = nn.Linear(2, 2)\nmodel.eval\n", encoding="utf-8")
    real = engine._analyse

    def forever(*args, **kwargs):
        while True:
            pass

    monkeypatch.setenv(limits.TIMEOUT_ENV, "0.3")
    monkeypatch.setattr(engine, "_analyse", forever)
    [first] = workers.lint_many([(str(path), CODES)], cache_dir=str(tmp_path / "cache"))
    assert [f.code for f in first.findings] == [NOT_ANALYSED]
    monkeypatch.setattr(engine, "_analyse", real)
    [second] = workers.lint_many([(str(path), CODES)], cache_dir=str(tmp_path / "cache"))
    assert [f.code for f in second.findings] == ["MDL005"]
