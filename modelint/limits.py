"""What modelint refuses to analyse, and how long it may spend on one file.

libcst, modelint's parser, is a native extension with limits of its own: it
segfaults (the whole process dies) on a few thousand nested brackets or chained
`and`s, and needs minutes and gigabytes for a multi-megabyte literal. A file gets a
cheap look before libcst sees it:

- the fast path, taken by ordinary code: bracket depth, the longest logical line
  (strings and comments count as one character) and the number of `elif`s, from
  one regular-expression pass and one loop over the lines; small enough -> libcst,
  after a token count for files of more than MAX_TOKENS characters;
- otherwise CPython's own parser decides first (`compile(..., PyCF_ONLY_AST)`): a
  file it rejects gets its SyntaxError, position included (E999: `too many nested
  parentheses` past 200 brackets, its recursion limit on very deep expressions); a
  file it accepts is measured on its syntax tree (nesting as libcst would build it,
  where `a and b and c` nests) and its size, and one over a limit gets a single
  E903 line instead of a parse.

Around the analysis itself: the interpreter's recursion limit is raised (bounded)
for libcst's recursive code generation and position computation, and a per-file
time limit (POSIX, main thread: SIGALRM) turns a runaway into an E903 line.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from modelint.finding import NOT_ANALYSED, SYNTAX_ERROR, TIMED_OUT
from modelint.source import physical_lines

# A file of more than about this many tokens is not analysed (libcst needs ~2 KB of memory and
# ~20 us per token: a million tokens is ~2 GB and ~20 s for the parse alone). A 50,000-line
# file of ordinary torch code has ~415,000.
MAX_TOKENS = 1_000_000
# Deeper syntax trees (counted as libcst nests them) are not analysed. libcst's native parser
# segfaults at about 1,500 nested brackets and at 6,000-10,000 levels of other nesting; CPython
# itself refuses more than 200 nested brackets and (3.11, default recursion limit) about
# 3,000 levels of expression nesting.
MAX_DEPTH = 3_000
# The fast path: files whose bracket depth, longest logical line (characters) and number of
# `elif`s stay under these go straight to libcst; their nesting cannot come near MAX_DEPTH.
FAST_BRACKETS = 100
FAST_LOGICAL_LINE = 2_000
FAST_ELIFS = 500
# Shorter files cannot nest deeply enough to hurt (libcst's parser crashes from ~1,300 open brackets).
SHORT = 1_000
# Python frames libcst's code generation needs per nesting level (about 3), with room to spare.
RECURSION_LIMIT = 4 * MAX_DEPTH + 2_000
# Seconds for one file (parse, facts, rules, positions) per TIMEOUT_CHARS characters, and at least
# that (a 50,000-line file, 1.3 million characters, takes ~30 s on a 2-core development machine and
# gets 158 s). MODELINT_TIMEOUT overrides the 60; 0 turns the limit off.
DEFAULT_TIMEOUT = 60.0
TIMEOUT_CHARS = 500_000
TIMEOUT_ENV = "MODELINT_TIMEOUT"


@dataclass
class Verdict(Exception):
    """Why a file is not analysed: one line for the report (code E999 or E903)."""

    code: str
    message: str
    row: int = 1
    column: int = 1

    def __str__(self) -> str:
        return self.message


# Strings (any prefix letter is left behind, harmlessly) and comments; unterminated ones end
# where the tokenizer would give up. Unrolled loops: a few milliseconds per megabyte.
_STRINGS_AND_COMMENTS = re.compile(
    r'"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*(?:"""|\Z)'
    r"|'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*(?:'''|\Z)"
    r'|"[^"\\\r\n]*(?:\\(?:\r\n|.)[^"\\\r\n]*)*"?'
    r"|'[^'\\\r\n]*(?:\\(?:\r\n|.)[^'\\\r\n]*)*'?"
    r"|#[^\r\n]*",
    re.DOTALL,
)
_TOKEN = re.compile(r"\w+|[^\w\s]")
_ELIF = re.compile(r"\belif\b")


@dataclass(frozen=True)
class Shape:
    """What the fast pass sees: an upper bound of bracket nesting, the longest logical line, `elif`s."""

    brackets: int
    logical_line: int
    elifs: int
    stripped: str  # the text with every string and comment replaced by `_`

    @property
    def ordinary(self) -> bool:
        return (self.brackets <= FAST_BRACKETS and self.logical_line <= FAST_LOGICAL_LINE
                and self.elifs <= FAST_ELIFS)


def code_only(text: str) -> str:
    """`text` with every string and comment replaced by one `_`: the code alone, for a regular expression."""
    return _STRINGS_AND_COMMENTS.sub("_", text)


def shape(text: str, stripped: str | None = None) -> Shape:
    if stripped is None:
        stripped = code_only(text)
    depth = deepest = 0
    logical = longest = 0
    for line in stripped.split("\n"):
        opens = line.count("(") + line.count("[") + line.count("{")
        if opens or depth:
            # depth + opens bounds the nesting anywhere on the line
            if depth + opens > deepest:
                deepest = depth + opens
            depth += opens - line.count(")") - line.count("]") - line.count("}")
            if depth < 0:
                depth = 0
        logical += len(line) + 1
        if depth == 0 and not line.endswith(("\\", "\\\r")):
            if logical > longest:
                longest = logical
            logical = 0
    if logical > longest:
        longest = logical
    elifs = len(_ELIF.findall(stripped)) if "elif" in stripped else 0
    return Shape(deepest, longest, elifs, stripped)


def approximate_tokens(stripped: str, limit: int) -> int:
    """Tokens of a string-and-comment-stripped text, counted up to a little past `limit`."""
    count = 0
    for count, _ in enumerate(_TOKEN.finditer(stripped), 1):
        if count > limit:
            break
    return count


def too_large(text: str, stripped: str | None = None) -> Verdict | None:
    """The E903 line for a file of more than MAX_TOKENS tokens (counted only past MAX_TOKENS characters)."""
    if len(text) <= MAX_TOKENS:
        return None
    if stripped is None:
        stripped = code_only(text)
    if approximate_tokens(stripped, MAX_TOKENS) <= MAX_TOKENS:
        return None
    return Verdict(NOT_ANALYSED, f"not checked: the file is too large to analyse (more than {MAX_TOKENS:,} tokens)")


def check(text: str, stripped: str | None = None) -> Verdict | None:
    """None if libcst may parse `text` (`stripped`: its `code_only`, when already made); else the line to
    report instead."""
    if len(text) <= SHORT:
        return None
    seen = shape(text, stripped)
    verdict = too_large(text, seen.stripped)
    if verdict is not None or seen.ordinary:
        return verdict
    tree = cpython_parse(text)
    if isinstance(tree, Verdict):
        return tree
    depth = nesting(tree)
    if depth > MAX_DEPTH:
        return Verdict(NOT_ANALYSED, f"not checked: the file is nested too deeply to analyse (about {depth:,} "
                                     f"levels; the limit is {MAX_DEPTH:,})")
    return None


def cpython_parse(text: str) -> ast.AST | Verdict:
    """CPython's parser on `text`: its tree, or its verdict as an E999 line inside the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning: invalid escape sequences and the like
            # Not the file's name: given one that exists, CPython reads that file's line to place the
            # error, which for a notebook, stdin or an editor's unsaved buffer is another text.
            return compile(text, "<unknown>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as error:  # IndentationError and TabError among them
        kind = "SyntaxError" if type(error) is SyntaxError else type(error).__name__
        return Verdict(SYNTAX_ERROR, f"{kind}: {error.msg}", *clamp(text, error.lineno, error.offset))
    except (RecursionError, MemoryError) as error:
        # CPython gives up on nesting this deep (RecursionError in the AST builder, MemoryError from
        # its parser's own stack guard): Python itself cannot compile the file.
        why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return Verdict(SYNTAX_ERROR, f"nested too deeply for Python's parser ({why})")
    except ValueError as error:  # NUL bytes and the like; the engine reports those earlier
        return Verdict(SYNTAX_ERROR, f"cannot parse: {error}")


def clamp(text: str, row: int | None, column: int | None) -> tuple[int, int]:
    """A 1-based (row, column) moved inside the file: rows past the end go to its last line."""
    lines = physical_lines(text) or [""]
    row = min(max(row or 1, 1), len(lines))
    column = min(max(column or 1, 1), len(lines[row - 1]) + 1)
    return row, column


# libcst nests `a and b and c` (one BoolOp in CPython's tree) one level per operator.
def nesting(tree: ast.AST) -> int:
    """How deep libcst's tree of this code would be, about (CPython's depth, BoolOps unfolded)."""
    deepest = 0
    stack = [(tree, 1)]
    pop, push = stack.pop, stack.append
    iter_fields = ast.iter_fields
    AST, BoolOp = ast.AST, ast.BoolOp
    while stack:
        node, depth = pop()
        if type(node) is BoolOp:
            depth += len(node.values) - 2
        if depth > deepest:
            deepest = depth
        depth += 1
        for _, value in iter_fields(node):
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, AST):
                        push((item, depth))
            elif isinstance(value, AST):
                push((value, depth))
    return deepest


@contextmanager
def deep_recursion() -> Iterator[None]:
    """A recursion limit for libcst's recursive code generation on trees up to MAX_DEPTH deep."""
    old = sys.getrecursionlimit()
    if old >= RECURSION_LIMIT:
        yield
        return
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


class Timeout(BaseException):
    """The per-file time limit ran out (a BaseException: `except Exception` in the analysis must not eat it)."""


def timeout_seconds(size: int = 0) -> float:
    """The time limit for a file of `size` characters (0: none)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        base = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        base = DEFAULT_TIMEOUT
    if not base > 0:  # 0, negative or nan: no limit
        return 0.0
    return base * max(1.0, size / TIMEOUT_CHARS)


def timeout_message(seconds: float) -> str:
    return (f"{TIMED_OUT}, {seconds:.3g} s ({TIMEOUT_ENV} sets it: seconds per {TIMEOUT_CHARS:,} characters, "
            f"{DEFAULT_TIMEOUT:g} by default)")


@contextmanager
def time_limit(seconds: float) -> Iterator[float]:
    """Raise Timeout in the block after `seconds`; yields the limit, 0 when off.

    POSIX and the main thread only (SIGALRM), and only when no other real-time timer is running (a test
    runner's, say); elsewhere the block runs without a limit. Native code (libcst's parse) is interrupted
    when it next runs Python code; the size limits keep its uninterruptible part short.
    """
    if (seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield 0.0
        return
    armed = True

    def expire(signum, frame) -> None:
        if armed:
            raise Timeout()

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield seconds
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
