"""Fuzzing the engine: generated programs and mangled fixtures never crash it or misplace a finding.

For every program, `lint_source` with every rule must return normally, report no
MDL000 (a rule that failed), and place every finding, note and fix edit inside
the file: 1 <= row <= lines + 1, 1 <= column <= length of that line + 1, end not
before start.

Generated programs: hypothesmith programs (from the grammar and from libcst
nodes; all valid Python, checked with `compile`) are slow to make (~0.1 s and
~0.4 s each here), so each one is also linted in several cheap variants that stay
valid Python and give the rules something to chew on: with torch imports, with
its names renamed to model/torch/nn/self... and its attributes to
eval/train/no_grad/backward..., inside an evaluation function, inside an
`nn.Module.forward`, under `torch.no_grad()`, interleaved with mode calls, with
CRLF line ends and without a final newline. Only distinct programs that compile
are counted. The default run lints >= 2,000 of them (about a minute here); the
slow run (`MODELINT_SLOW=1 python -m pytest -m slow tests/test_fuzz.py -s`)
lints >= 20,000 and prints the count.

Fixture mutations: every `fixtures/**/*.py` file, mangled (lines deleted,
adjacent lines swapped, duplicated, indentation changed, tabs for spaces,
truncated at a line or mid-token, several at once); these need not be valid
Python: an E999 line is a fine answer, a crash or a bad position is not.
"""

from __future__ import annotations

import ast
import io
import keyword
import os
import random
import re
import textwrap
import tokenize
import warnings
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
hypothesmith = pytest.importorskip("hypothesmith")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from modelint import engine  # noqa: E402
from modelint.finding import INTERNAL_ERROR, SYNTAX_ERROR  # noqa: E402
from modelint.registry import all_rules  # noqa: E402

CODES = frozenset(all_rules())
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")
FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").rglob("*.py"))
SLOW = os.environ.get("MODELINT_SLOW") == "1"
PREFIX = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
NAMES = ["model", "net", "self", "torch", "nn", "F", "x", "loss", "optimizer", "module", "super", "model.module"]
ATTRS = ["eval", "train", "training", "no_grad", "enable_grad", "inference_mode", "set_grad_enabled", "backward",
         "dropout", "Dropout", "Module", "requires_grad_", "zero_grad", "step", "forward", "apply", "modules",
         "children", "training", "nn", "functional", "module"]
MODE_LINES = ["model.eval()", "model.train()", "model.train(False)", "model.eval", "torch.no_grad()",
              "loss.backward()", "model.training = False", "y = model(x)", "F.dropout(x)"]
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def physical_lines(text: str) -> list[str]:
    """Lines as Python's tokenizer (and libcst) count them: split on \\r\\n, \\r and \\n only."""
    return _LINE_BREAK.split(text)


def _inside(location, lines: list[str], within_line: bool = True) -> bool:
    """1 <= row <= lines + 1 and column >= 1; with within_line, also column <= length of that line + 1."""
    if not 1 <= location.row <= len(lines) + 1 or location.column < 1:
        return False
    if within_line and location.row <= len(lines):
        return location.column <= len(lines[location.row - 1]) + 1
    return True


def assert_sane(text: str, path: str = "fuzz.py") -> list:
    """Lint `text` with every rule; fail on an escaped exception, an MDL000 or a position outside the file."""
    result = engine.lint_source(text, path, CODES)
    lines = physical_lines(text)
    for finding in result.findings:
        where = f"{finding.code} {finding.location}-{finding.end_location}: {finding.message}\n--- source ---\n{text}"
        assert finding.code != INTERNAL_ERROR, where
        assert _inside(finding.location, lines), "start outside the file: " + where
        assert _inside(finding.end_location, lines), "end outside the file: " + where
        assert finding.end_location >= finding.location, "end before start: " + where
        for related in finding.related:
            if related.path == path:
                assert _inside(related.location, lines), "note outside the file: " + where
        if finding.fix is not None:
            for edit in finding.fix.edits:
                assert _inside(edit.start, lines) and _inside(edit.end, lines), "fix edit outside the file: " + where
                assert edit.end >= edit.start, "fix edit ends before it starts: " + where
    return result.findings


def compiles(text: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(text, "fuzz.py", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return False
    return True


# --- variants of one generated program ------------------------------------------------------------------------------

def _rename(text: str, rng: random.Random) -> str | None:
    """Names -> torch-ish names, attributes -> mode API names (keywords and soft keywords kept)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    out = []
    previous = None
    for token in tokens:
        if token.type == tokenize.NAME and not keyword.iskeyword(token.string) \
                and not keyword.issoftkeyword(token.string) and rng.random() < 0.7:
            pool = ATTRS if previous is not None and previous.string == "." else NAMES
            replacement = rng.choice(pool)
            if previous is None or previous.string != ".":
                replacement = replacement.split(".")[0] if "." in replacement and rng.random() < 0.5 else replacement
            token = token._replace(string=replacement)
        out.append(token)
        previous = token if token.type not in (tokenize.NL, tokenize.COMMENT) else previous
    try:
        return tokenize.untokenize(out)
    except (ValueError, TypeError):
        return None


def _interleave(text: str, rng: random.Random) -> str | None:
    """Mode calls inserted before some top-level statements."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    starts = sorted({node.lineno for node in tree.body})
    if not starts:
        return None
    lines = text.splitlines(keepends=True)
    for row in sorted(rng.sample(starts, min(3, len(starts))), reverse=True):
        lines.insert(row - 1, rng.choice(MODE_LINES) + "\n")
    return "".join(lines)


def variants(source: str) -> list[str]:
    rng = random.Random(source)
    body = source if source.endswith("\n") or not source else source + "\n"
    indented = textwrap.indent(body, "    ") or "    pass\n"
    twice = textwrap.indent(body, "        ") or "        pass\n"
    renamed = _rename(body, rng) or body
    out = [
        source,
        PREFIX + body,
        PREFIX + renamed,
        PREFIX + "def evaluate(model, loader):\n" + textwrap.indent(renamed, "    ") + "    model.eval()\n",
        PREFIX + "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.drop = nn.Dropout()\n\n    def forward(self, x):\n" + twice,
        PREFIX + "model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())\nmodel.eval()\nwith torch.no_grad():\n"
        + indented,
        PREFIX + (_interleave(renamed, rng) or renamed),
        (PREFIX + renamed).replace("\n", "\r\n"),
        (PREFIX + renamed).rstrip("\n"),
        PREFIX + "def train_step(model, batch, optimizer):\n    model.train()\n" + textwrap.indent(renamed, "    "),
    ]
    return out


class Counter:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.examples = 0
        self.findings = 0

    def lint_variants(self, source: str) -> None:
        self.examples += 1
        for program in variants(source):
            if program in self.seen or not compiles(program):
                continue
            self.seen.add(program)
            self.findings += len(assert_sane(program))


def _run(strategy, examples: int, counter: Counter) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(strategy)
    def check(source: str) -> None:
        counter.lint_variants(source)

    check()


# Default run: ~250 grammar programs and ~60 libcst-node programs, each in ~10 variants.
GRAMMAR_EXAMPLES, NODE_EXAMPLES, MIN_PROGRAMS = 250, 60, 2000


def test_generated_programs() -> None:
    counter = Counter()
    _run(hypothesmith.from_grammar(), GRAMMAR_EXAMPLES, counter)
    _run(hypothesmith.from_node(), NODE_EXAMPLES, counter)
    print(f"fuzz: {counter.examples} hypothesmith programs, {len(counter.seen)} distinct valid programs linted, "
          f"{counter.findings} findings")
    assert len(counter.seen) >= MIN_PROGRAMS
    assert counter.findings > 0  # the variants do exercise the rules


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="slow fuzz run: set MODELINT_SLOW=1")
def test_generated_programs_slow() -> None:
    counter = Counter()
    _run(hypothesmith.from_grammar(), 12 * GRAMMAR_EXAMPLES, counter)
    _run(hypothesmith.from_node(), 12 * NODE_EXAMPLES, counter)
    print(f"slow fuzz: {counter.examples} hypothesmith programs, {len(counter.seen)} distinct valid programs linted, "
          f"{counter.findings} findings")
    assert len(counter.seen) >= 10 * MIN_PROGRAMS


# --- mangled fixtures -----------------------------------------------------------------------------------------------

def _mutate_once(lines: list[str], rng: random.Random) -> list[str]:
    lines = list(lines)
    if not lines:
        return lines
    i = rng.randrange(len(lines))
    kind = rng.randrange(9)
    if kind == 0:
        del lines[i]
    elif kind == 1 and i + 1 < len(lines):
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif kind == 2:
        lines.insert(i, lines[i])
    elif kind == 3:
        lines[i] = " " * rng.choice([1, 2, 3, 4, 8]) + lines[i]
    elif kind == 4:
        lines[i] = lines[i].lstrip() if rng.random() < 0.5 else lines[i][rng.randrange(1, 5):]
    elif kind == 5:
        # a whole block shifted: every line from i on, to the end of its indentation level
        depth = len(lines[i]) - len(lines[i].lstrip())
        shift = rng.choice([-4, -2, 2, 4])
        j = i
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) >= depth):
            lines[j] = (" " * shift + lines[j]) if shift > 0 else lines[j][min(-shift, len(lines[j]) - len(
                lines[j].lstrip())):]
            j += 1
    elif kind == 6:
        lines[i] = lines[i].replace("    ", "\t")
    elif kind == 7:
        lines = lines[: i + 1]
    else:
        cut = rng.randrange(len(lines[i]) + 1)
        lines = lines[:i] + [lines[i][:cut]]
    return lines


def fixture_mutations(text: str, rng: random.Random, count: int) -> list[str]:
    lines = text.splitlines()
    out = []
    for n in range(count):
        mangled = lines
        for _ in range(1 + (n % 3)):  # one, two or three mutations at once
            mangled = _mutate_once(mangled, rng)
        joined = "\n".join(mangled)
        out.append(joined + "\n" if rng.random() < 0.8 else joined)
    return out


MUTATIONS_PER_FIXTURE = 16


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mangled_fixtures(path: Path) -> None:
    rng = random.Random(f"{path.parent.name}/{path.name}")
    text = path.read_text(encoding="utf-8")
    for mangled in fixture_mutations(text, rng, MUTATIONS_PER_FIXTURE):
        assert_sane(mangled, path.name)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="slow fuzz run: set MODELINT_SLOW=1")
def test_mangled_fixtures_slow() -> None:
    count = 0
    for path in FIXTURES:
        rng = random.Random(f"slow/{path.parent.name}/{path.name}")
        for mangled in fixture_mutations(path.read_text(encoding="utf-8"), rng, 10 * MUTATIONS_PER_FIXTURE):
            assert_sane(mangled, path.name)
            count += 1
    print(f"slow fuzz: {count} mangled fixtures linted")


@pytest.mark.parametrize("text", [
    "    import torch.nn as nn\n\nx = 1\n",  # libcst's raw position: 2:5, past the end of the empty line 2
    "import torch\nmodel.eval(\n",  # truncated: libcst points one past the last line
    "import torch\nmodel.eval(",
    "import torch\r\nif True:\r\n",
    "import torch\n\x0cx = (\n",  # a form feed: str.splitlines() would see one line more
])
def test_syntax_error_position_is_inside_the_file(text: str) -> None:
    [finding] = engine.lint_source(text, "indented.py", CODES).findings
    assert finding.code == SYNTAX_ERROR
    assert _inside(finding.location, physical_lines(text)), finding.location


def test_no_exception_escapes_on_a_long_operator_chain() -> None:
    assert_sane("import torch\nx = " + " + ".join(["a"] * 1000) + "\n")


def test_fixture_mutations_are_counted() -> None:
    """The fixture half of the default run: at least this many mangled programs."""
    assert len(FIXTURES) * MUTATIONS_PER_FIXTURE >= 1000
