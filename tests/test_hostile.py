"""Hostile input: huge, deep, binary, looping, vanishing and unreadable files.

Every case runs next to a file with a known finding (`sentinel.py`, MDL006 at 4:1)
and checks that that finding is still reported, that the exit code is right, that
the bad file gets a clear line (E999/E902) or normal findings -- never MDL000,
never a traceback -- and that nothing hangs: every CLI run has a hard time limit.

The CLI runs as `python -m modelint` with this checkout first on PYTHONPATH, so
the code under test is this working tree whatever copy is installed.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_cli import symlink

REPO = Path(__file__).resolve().parent.parent
HEADER = "import torch\nimport torch.nn as nn\n"
SENTINEL = HEADER + 'model = nn.Linear(2, 2)\nmodel.train("val")\n'  # MDL006 at 4:1
SENTINEL_FINDING = ("sentinel.py", 4, 1, "MDL006")
HANG = 60  # seconds: a run longer than this is a hang


class Run:
    def __init__(self, completed: subprocess.CompletedProcess, seconds: float, cpu: float, cwd: Path) -> None:
        self.returncode = completed.returncode
        self.stdout = completed.stdout.decode("utf-8", "replace")
        self.stderr = completed.stderr.decode("utf-8", "replace")
        self.seconds = seconds
        self.cpu = cpu
        self.cwd = cwd

    def findings(self) -> list[dict]:
        return json.loads(self.stdout) if self.stdout.strip() else []

    def by_file(self) -> dict[str, list[tuple[int, int, str]]]:
        out: dict[str, list[tuple[int, int, str]]] = {}
        for f in self.findings():
            name = self.relative(f["filename"])
            out.setdefault(name, []).append((f["location"]["row"], f["location"]["column"], f["code"]))
        return out

    def relative(self, filename: str) -> str:
        """The path as given relative to cwd; the folder is resolved, the file itself not (it may be a link loop)."""
        path = Path(filename)
        folder = os.path.realpath(self.cwd / path.parent)
        return Path(os.path.relpath(os.path.join(folder, path.name), os.path.realpath(self.cwd))).as_posix()

    def codes(self, name: str) -> set[str]:
        return {code for _, _, code in self.by_file().get(name, [])}

    def messages(self, name: str) -> list[str]:
        return [f["message"] for f in self.findings() if self.relative(f["filename"]) == name]

    def has_sentinel(self, name: str = "sentinel.py") -> bool:
        return (4, 1, "MDL006") in self.by_file().get(name, [])


def _limit_memory(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def modelint(*args: str, cwd: Path, stdin: bytes = b"", timeout: float = HANG, output: str = "json",
             memory_limit: int | None = None) -> Run:
    """`python -m modelint check --no-cache --format json ARGS` in cwd; a run past `timeout` fails as a hang.

    memory_limit: bytes of address space for the run (POSIX), so that a blow-up fails fast instead of
    taking the test machine's memory.
    """
    env = {**os.environ, "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("MODELINT_CACHE_DIR", None)
    command = [sys.executable, "-m", "modelint", "check", "--no-cache", "--format", output, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, timeout=timeout, env=env,
                                   preexec_fn=_limit_memory(memory_limit) if memory_limit else None)
    except subprocess.TimeoutExpired:
        pytest.fail(f"modelint {' '.join(args)} did not finish in {timeout:.0f} s (a hang)")
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run = Run(completed, seconds, cpu, cwd)
    assert run.returncode >= 0, f"killed by signal {-run.returncode}: {run.stderr[-2000:]}"
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr
    assert "panicked" not in run.stderr, run.stderr[-2000:]
    assert "internal error" not in run.stderr, run.stderr
    return run


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return root


def assert_no_internal_error(run: Run) -> None:
    crashed = [f for f in run.findings() if f["code"] == "MDL000"]
    assert not crashed, crashed


# --- a 50,000-line file -----------------------------------------------------------------------------------------------

BLOCK = '''

class Net{i}(nn.Module):
    def __init__(self, width=16, p=0.1):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(p))
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        x = self.body(x)
        return self.head(F.dropout(x, p=0.1, training=self.training))


def evaluate{i}(model, loader):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for inputs, targets in loader:
            total += F.cross_entropy(model(inputs), targets).item()
    return total / max(len(loader), 1)


def train{i}(model, loader, optimizer):
    model.train()
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()


def broken{i}(model, batch):
    model.eval  # expect: MDL005
    return model(batch)


model{i} = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
model{i}.eval  # expect: MDL005
model{i}.train("val")  # expect: MDL006
'''


def big_file(lines: int) -> tuple[str, list[tuple[int, int, str]]]:
    """Realistic torch code repeated up to `lines` lines, and the (row, column, code) it must get."""
    parts = [HEADER + "import torch.nn.functional as F\n"]
    count = parts[0].count("\n")
    i = 0
    while count < lines:
        block = BLOCK.format(i=i)
        parts.append(block)
        count += block.count("\n")
        i += 1
    text = "".join(parts)
    expected = []
    for row, line in enumerate(text.splitlines(), start=1):
        if "# expect: " in line:
            expected.append((row, len(line) - len(line.lstrip()) + 1, line.rsplit("# expect: ", 1)[1].strip()))
    return text, expected


def test_50000_line_file_is_linted_in_reasonable_time_with_every_finding(tmp_path: Path) -> None:
    text, expected = big_file(50_000)
    assert text.count("\n") >= 50_000 and len(expected) >= 3_000
    write(tmp_path, {"big.py": text, "sentinel.py": SENTINEL})
    run = modelint("big.py", "sentinel.py", cwd=tmp_path, timeout=180)
    assert run.returncode == 1, run.stderr
    assert sorted(run.by_file()["big.py"]) == expected
    assert run.has_sentinel()
    # CPU time, not wall time: the machines running the tests are shared. The wall time is in the message.
    assert run.cpu < 60, f"{run.cpu:.1f} s of CPU ({run.seconds:.1f} s wall) for 50,000 lines"


# --- deep nesting -----------------------------------------------------------------------------------------------------

N = 1000
DEEP = {
    "parens": "x = " + "(" * N + "1" + ")" * N + "\n",
    "brackets": "x = " + "[" * N + "]" * N + "\n",
    "mixed_brackets": "x = " + "[{(" * (N // 3) + "1" + ")}]" * (N // 3) + "\n",
    "calls": "x = " + "f(" * N + "1" + ")" * N + "\n",
    "attributes": "x = model" + ".eval" * N + "\n",
    "subscripts": "x = a" + "[0]" * N + "\n",
    "unary_minus": "x = " + "-" * N + "1\n",
    "not_chain": "x = " + "not " * N + "y\n",
    "plus_chain": "x = " + " + ".join(["a"] * N) + "\n",
    "implicit_string_concatenation": "x = " + " ".join(['"a"'] * N) + "\n",
    "lambdas": "f = " + "lambda: " * N + "1\n",
    "conditional_expressions": "x = " + "a if b else " * N + "c\n",
    "power": "x = " + "2 ** " * N + "2\n",
    "comparisons": "x = a" + " < a" * N + "\n",
    "elif_chain": "if a:\n    pass\n" + "elif a:\n    pass\n" * N,
    "nested_ifs": "".join(" " * i + "if x:\n" for i in range(N)) + " " * N + "model.eval()\n",
    "nested_withs": "".join(" " * i + "with torch.no_grad():\n" for i in range(N)) + " " * N + "pass\n",
    "nested_defs": "".join(" " * i + f"def f{i}(model):\n" for i in range(N)) + " " * N + "model.eval()\n",
    "nested_ifs_99": "".join(" " * i + "if x:\n" for i in range(99)) + " " * 99 + "model.eval\n",
}


# Past libcst's own limits: its native parser segfaulted (the whole run died) on most of these.
VERY_DEEP = {
    "brackets_5000": "x = " + "[" * 5000 + "]" * 5000 + "\n",
    "unclosed_brackets_1990": "x = " + "[" * 1990 + "\n",
    "calls_3000": "x = " + "f(" * 3000 + "1" + ")" * 3000 + "\n",
    "unary_minus_10000": "x = " + "-" * 10_000 + "1\n",
    "not_chain_10000": "x = " + "not " * 10_000 + "y\n",
    "and_chain_8000": "x = " + " and ".join(["a"] * 8000) + "\n",
    "lambdas_10000": "f = " + "lambda: " * 10_000 + "1\n",
    "power_10000": "x = " + "2 ** " * 10_000 + "2\n",
    "elif_chain_10000": "if a:\n    pass\n" + "elif a:\n    pass\n" * 10_000,
    "implicit_string_concatenation_5000": "x = " + " ".join(['"a"'] * 5000) + "\n",
}
TAIL = "model = nn.Linear(2, 2)\nmodel.eval\n"  # MDL005 on its last line


def _cpython_verdict(text: str) -> BaseException | None:
    try:
        compile(text, "deep.py", "exec", dont_inherit=True)
    except (SyntaxError, RecursionError, MemoryError) as error:
        return error
    return None


@pytest.mark.parametrize("body", [*DEEP.values(), *VERY_DEEP.values()], ids=[*DEEP, *VERY_DEEP])
def test_deep_nesting_gives_a_clear_answer(tmp_path: Path, body: str) -> None:
    """Fully linted (the finding after the deep part is there), or exactly one clear line: CPython's own
    SyntaxError, at its position, when CPython rejects the file (E999), else "not checked" (E903)."""
    text = HEADER + body + TAIL
    write(tmp_path, {"deep.py": text, "sentinel.py": SENTINEL})
    run = modelint("--jobs", "1", "deep.py", "sentinel.py", cwd=tmp_path)
    assert_no_internal_error(run)
    assert run.has_sentinel(), run.stdout
    assert run.returncode == 1, run.stdout
    found = run.by_file().get("deep.py", [])
    codes = {code for _, _, code in found}
    error = _cpython_verdict(text)
    if isinstance(error, SyntaxError):
        [message] = run.messages("deep.py")
        assert found == [(error.lineno, error.offset, "E999")] and error.msg in message, (found, message)
    elif error is not None:  # RecursionError, MemoryError: Python cannot compile it either
        assert codes == {"E999"} and len(found) == 1, found
    elif codes & {"E999", "E903"}:
        [message] = run.messages("deep.py")
        assert codes == {"E903"} and len(found) == 1 and message.startswith("not checked: "), (found, message)
    else:
        assert (text.count("\n"), 1, "MDL005") in found, found


def test_deep_nesting_inside_a_folder_run_with_worker_processes(tmp_path: Path) -> None:
    """Enough files for the process pool; the deep ones must not take a worker (or the run) down."""
    files: dict[str, str] = {f"pkg/sentinel_{i:02}.py": SENTINEL for i in range(30)}
    files["pkg/deep_parens.py"] = HEADER + DEEP["parens"]
    files["pkg/deep_ifs.py"] = HEADER + DEEP["nested_ifs"]
    files["pkg/deep_ifs_99.py"] = HEADER + DEEP["nested_ifs_99"]
    write(tmp_path, files)
    run = modelint("--jobs", "2", "pkg", cwd=tmp_path)
    assert_no_internal_error(run)
    found = run.by_file()
    for i in range(30):
        assert found[f"pkg/sentinel_{i:02}.py"] == [(4, 1, "MDL006")]
    assert run.codes("pkg/deep_ifs.py") == {"E999"}
    assert run.codes("pkg/deep_ifs_99.py") == {"MDL005"}
    assert run.returncode == 1


def test_time_limit_in_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file past its time limit (here 0.5 s per 500,000 characters) gets one E903 line; the others are intact."""
    text, _ = big_file(20_000)
    files: dict[str, str] = {f"pkg/sentinel_{i:02}.py": SENTINEL for i in range(30)}
    files["pkg/slow.py"] = text
    write(tmp_path, files)
    monkeypatch.setenv("MODELINT_TIMEOUT", "0.5")
    run = modelint("--jobs", "2", "pkg", cwd=tmp_path)
    assert_no_internal_error(run)
    found = run.by_file()
    for i in range(30):
        assert found[f"pkg/sentinel_{i:02}.py"] == [(4, 1, "MDL006")]
    assert found["pkg/slow.py"] == [(1, 1, "E903")]
    [message] = run.messages("pkg/slow.py")
    assert "time limit" in message and "MODELINT_TIMEOUT" in message
    assert run.returncode == 1


# --- a 5 MB single-line file ----------------------------------------------------------------------------------------

MB5 = 5 * 1024 * 1024
ONE_LINE = "import torch; import torch.nn as nn; model = nn.Linear(2, 2); model.eval; "  # MDL005 at 1:63


@pytest.mark.parametrize("kind", ["string", "comment", "numbers"])
def test_5mb_single_line_file(tmp_path: Path, kind: str) -> None:
    """Linted when libcst can take it; a list of 1.7 million numbers (~3.5 million tokens: libcst alone would
    need ~77 s and 6.7 GB) is over the size limit and gets one E903 line instead, fast, next to the others'."""
    tail = {
        "string": 's = "' + "a" * MB5 + '"',
        "comment": "# " + "z" * MB5,
        "numbers": "x = [" + "0, " * (MB5 // 3) + "]",
    }[kind]
    write(tmp_path, {"oneline.py": ONE_LINE + tail, "sentinel.py": SENTINEL})
    assert (tmp_path / "oneline.py").stat().st_size >= MB5
    run = modelint("--jobs", "1", "oneline.py", "sentinel.py", cwd=tmp_path, memory_limit=3 << 30)
    assert_no_internal_error(run)
    assert run.has_sentinel()
    if kind == "numbers":
        assert run.by_file()["oneline.py"] == [(1, 1, "E903")]
        [message] = run.messages("oneline.py")
        assert message.startswith("not checked: the file is too large to analyse"), message
        assert run.cpu < 20, f"{run.cpu:.1f} s of CPU to turn the file down"
    else:
        assert run.by_file()["oneline.py"] == [(1, 63, "MDL005")]
    assert run.returncode == 1


# --- binary garbage, symlink loops, unreadable files: one folder --------------------------------------------------

def _garbage(seed: int, size: int, alphabet: bytes | None = None) -> bytes:
    rng = random.Random(seed)
    if alphabet is None:
        return bytes(rng.randrange(256) for _ in range(size))
    return bytes(rng.choice(alphabet) for _ in range(size))


BINARY = {
    "random_bytes.py": _garbage(1, 4096),  # NUL bytes among them
    "high_bytes.py": _garbage(2, 4096, bytes(range(0x80, 0x100))),  # no NUL, not UTF-8
    "png.py": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + _garbage(3, 512),
    "elf.py": b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + _garbage(4, 512),
    "zip.py": b"PK\x03\x04" + _garbage(5, 512),
    "utf16.py": "import torch\nmodel.eval\n".encode("utf-16"),
}


def test_binary_files_with_py_names(tmp_path: Path) -> None:
    printable = "".join(chr(c) for c in range(0x20, 0x7f)) + "\n\t()[]{}:;.,'\"\\#éß漢字🙂"
    rng = random.Random(6)
    files: dict[str, str | bytes] = {**BINARY, "sentinel.py": SENTINEL}
    # Valid UTF-8 without NUL, mentioning torch so that libcst parses it: E999 (or nothing), never a crash.
    files["text_garbage.py"] = "import torch\n" + "".join(rng.choice(printable) for _ in range(4096))
    write(tmp_path, files)
    run = modelint(".", cwd=tmp_path)
    assert_no_internal_error(run)
    assert run.has_sentinel()
    for name in BINARY:
        assert run.codes(name) == {"E902"}, (name, run.by_file().get(name))
        [message] = run.messages(name)
        assert message.strip()
    assert run.codes("text_garbage.py") <= {"E999"}
    assert run.returncode == 1


def test_symlink_loops_inside_a_walked_folder(tmp_path: Path) -> None:
    write(tmp_path, {"proj/sentinel.py": SENTINEL, "proj/pkg/mod.py": SENTINEL, "proj/pkg/clean.py": HEADER})
    proj = tmp_path / "proj"
    if not (symlink("..", proj / "pkg" / "up") and symlink(".", proj / "pkg" / "here")
            and symlink("loop_b.py", proj / "loop_a.py") and symlink("loop_a.py", proj / "loop_b.py")
            and symlink(str(proj), proj / "pkg" / "absolute_root") and symlink("gone.py", proj / "broken.py")):
        pytest.skip("symbolic links are not available here")
    (proj / "pkg" / "dir_a").mkdir()
    symlink("../dir_b", proj / "pkg" / "dir_a" / "to_b")
    (proj / "pkg" / "dir_b").mkdir()
    symlink("../dir_a", proj / "pkg" / "dir_b" / "to_a")
    run = modelint("proj", cwd=tmp_path)
    assert_no_internal_error(run)
    found = run.by_file()
    assert found["proj/sentinel.py"] == [(4, 1, "MDL006")]
    assert found["proj/pkg/mod.py"] == [(4, 1, "MDL006")]
    # Each real file once, whatever number of paths lead to it.
    assert sum(1 for findings in found.values() for f in findings if f[2] == "MDL006") == 2, found
    for name in ("proj/loop_a.py", "proj/loop_b.py", "proj/broken.py"):
        assert run.codes(name) == {"E902"}, (name, found)
    assert run.returncode == 1


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    write(tmp_path, {"secret.py": SENTINEL, "locked/inner.py": SENTINEL, "sentinel.py": SENTINEL})
    (tmp_path / "secret.py").chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        run = modelint(".", cwd=tmp_path)
    finally:
        (tmp_path / "secret.py").chmod(0o644)
        (tmp_path / "locked").chmod(0o755)
    assert_no_internal_error(run)
    assert run.has_sentinel()
    assert run.codes("secret.py") == {"E902"}
    assert run.codes("locked") == {"E902"}
    assert run.returncode == 1


# --- files that change between discovery and linting ----------------------------------------------------------------

@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("change", ["deleted", "became_a_folder", "became_binary"])
def test_file_changed_between_discovery_and_linting(tmp_path: Path, monkeypatch, jobs: int, change: str) -> None:
    from modelint import runner
    from modelint.config import ConfigResolver

    # 30 files: enough for the process pool when jobs=2.
    write(tmp_path, {f"pkg/m{i:02}.py": SENTINEL for i in range(30)})
    victim = tmp_path / "pkg" / "m07.py"
    discover = runner.discover

    def discover_then_change(*args, **kwargs):
        found = discover(*args, **kwargs)
        assert any(Path(f).resolve() == victim.resolve() for f in found.files)
        victim.unlink()
        if change == "became_a_folder":
            victim.mkdir()
        elif change == "became_binary":
            victim.write_bytes(BINARY["random_bytes.py"])
        return found

    monkeypatch.setattr(runner, "discover", discover_then_change)
    monkeypatch.chdir(tmp_path)
    run = runner.run_paths(["pkg"], ConfigResolver(), runner.Overrides(), jobs=jobs)
    by_path = {Path(r.path).resolve(): r for r in run.results}
    lost = by_path[victim.resolve()]
    assert not lost.checked
    assert [f.code for f in lost.findings] == ["E902"], lost.findings
    for i in range(30):
        path = (tmp_path / "pkg" / f"m{i:02}.py").resolve()
        if path != victim.resolve():
            assert [(f.code, f.location.row, f.location.column) for f in by_path[path].findings] == [("MDL006", 4, 1)]
    assert run.internal_errors == 0


# --- stdin ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\n", b"   \n\n", b"# just a comment", b"\xef\xbb\xbf"],
                         ids=["empty", "newline", "blank_lines", "comment", "bom_only"])
def test_stdin_filename_with_empty_input(tmp_path: Path, data: bytes) -> None:
    for output in ("json", "text"):
        run = modelint("--stdin-filename", "x.py", cwd=tmp_path, stdin=data, output=output)
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert run.stderr == ""
        if output == "json":
            assert run.findings() == []


# --- characters that str.splitlines() takes for line breaks and Python does not -------------------------------------

# A form feed (Emacs page breaks, in CPython's own sources), \v, \x1c-\x1e, \x85, \u2028, \u2029: Python counts
# lines at \n, \r\n and \r only; code that numbers lines with str.splitlines() is one line off after one of them.
ODD_BREAKS = ["\x0c", "\x0b", "\x1c", "\x85", "\u2028"]


@pytest.mark.parametrize("char", ODD_BREAKS, ids=[f"U+{ord(c):04X}" for c in ODD_BREAKS])
def test_noqa_after_an_odd_line_break_character(tmp_path: Path, char: str) -> None:
    write(tmp_path, {"odd.py": HEADER + f"# page{char}break\nmodel = nn.Linear(2, 2)\nmodel.eval  # noqa: MDL005\n",
                     "sentinel.py": SENTINEL})
    run = modelint("odd.py", "sentinel.py", cwd=tmp_path)
    assert run.has_sentinel()
    assert run.by_file().get("odd.py", []) == []


@pytest.mark.parametrize("char", ODD_BREAKS, ids=[f"U+{ord(c):04X}" for c in ODD_BREAKS])
def test_fix_after_an_odd_line_break_character_lands_on_the_right_line(tmp_path: Path, char: str) -> None:
    # With lines from str.splitlines(): `model = nn()()()()()()()()()().Linear(2, 2)`, ten rounds over.
    write(tmp_path, {"odd.py": HEADER + f"# page{char}break\nmodel = nn.Linear(2, 2)\nmodel.eval\n"})
    run = modelint("--fix", "odd.py", cwd=tmp_path)
    fixed = (tmp_path / "odd.py").read_text(encoding="utf-8")
    assert fixed == HEADER + f"# page{char}break\nmodel = nn.Linear(2, 2)\nmodel.eval()\n"
    assert run.returncode == 0, run.stdout


def test_a_recursive_helper_is_no_reason_to_give_up_on_a_shallow_file(tmp_path: Path) -> None:
    """A helper that calls itself (`to_tensor(i)` for each item of a list), called where a module class's
    layers are looked for: the file is two levels deep, and gets its findings, not E903."""
    write(tmp_path, {"segmentation.py": (
        "import torch\nfrom torch import nn\n\n\ndef to_tensor(d):\n    if isinstance(d, (list, tuple)):\n"
        "        return [to_tensor(i) for i in d]\n    return torch.as_tensor(d)\n\n\n"
        "class SegmentationNetwork(nn.Module):\n    def predict(self, x):\n        if self.training:\n"
        "            print('predicting in training mode')\n        return self(to_tensor(x)).argmax(1)\n")})
    run = modelint("--jobs", "1", "segmentation.py", cwd=tmp_path)
    assert_no_internal_error(run)
    assert {code for _, _, code in run.by_file().get("segmentation.py", [])} == {"MDL002"}, run.stdout


def test_a_cycle_of_aliases_is_no_reason_to_give_up_on_a_shallow_file(tmp_path: Path) -> None:
    """`std = scale; fn = lambda c: std(); scale = std`: following what each alias names goes round the cycle;
    the file is two levels deep and gets its findings, not E903."""
    write(tmp_path, {"distributions.py": (
        "import torch\nfrom torch import nn\n\n\ndef make(scale):\n    std = scale\n    fn = lambda c: std()\n"
        "    scale = std\n    return fn\n\n\ndef score(loader):\n    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1))\n"
        "    net.eval()\n    return [net(x).sum().item() for x in loader]\n")})
    run = modelint("--jobs", "1", "distributions.py", cwd=tmp_path)
    assert_no_internal_error(run)
    assert {code for _, _, code in run.by_file().get("distributions.py", [])} == {"MDL002"}, run.stdout
