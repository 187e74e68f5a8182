"""The runtime checker on fixtures/runtime/: flagged files and their fixed twins.

- every probe-able finding of a flagged file (`name.py`, not `notrun_*`) is `confirmed` on CPU;
- every line marked `# fixed: CODE` in a twin (`name_fixed.py`) is `not reproduced`;
- `notrun_*` files give `not run` with a reason, within the timeout;
- the same on CUDA when there is one (skipped otherwise);
- the static path never imports torch, and `--runtime` without torch is one line and exit 2.

torch comes from the test extra (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch", reason="the runtime checker's tests need torch (the test extra installs it)")

from modelint import cli  # noqa: E402
from modelint.runtime import PROBED_CODES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "fixtures" / "runtime"
FLAGGED = sorted(p for p in RUNTIME.glob("*.py") if not p.stem.endswith("_fixed") and not p.stem.startswith("notrun_"))
TWINS = sorted(RUNTIME.glob("*_fixed.py"))
NOT_RUN = sorted(RUNTIME.glob("notrun_*.py"))
_FIXED = re.compile(r"#\s*fixed:\s*(MDL\d{3})")
CUDA = torch.cuda.is_available()


def modelint(*args: str, timeout: float = 600) -> tuple[int, str, str]:
    completed = subprocess.run([sys.executable, "-m", "modelint", *args], cwd=REPO, capture_output=True, text=True,
                               timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
    return completed.returncode, completed.stdout, completed.stderr


def twin_lines(path: Path) -> list[int]:
    return [row for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if _FIXED.search(line)]


_CHECKED: dict[str, list[dict]] = {}


def checked(device: str) -> list[dict]:
    """`check --runtime` over the flagged and not-run fixtures, once per device."""
    if device not in _CHECKED:
        code, out, err = modelint("check", "--runtime", "--device", device, "--runtime-timeout", "20", "--no-cache",
                                  "--format", "json", *(str(p.relative_to(REPO)) for p in FLAGGED + NOT_RUN))
        assert code == 1, err
        _CHECKED[device] = json.loads(out)
    return _CHECKED[device]


def probed(findings: list[dict], path: Path) -> list[dict]:
    return [f for f in findings if Path(f["filename"]).name == path.name and f["code"] in PROBED_CODES]


def test_fixture_set_is_complete() -> None:
    assert len(FLAGGED) >= 15 and len(NOT_RUN) >= 3
    assert {p.stem + "_fixed" for p in FLAGGED} == {p.stem for p in TWINS}
    codes = {f"MDL{m}" for p in FLAGGED for m in re.findall(r"expect:\s*MDL(\d{3})", p.read_text())}
    assert codes >= PROBED_CODES, sorted(PROBED_CODES - codes)
    for twin in TWINS:
        assert twin_lines(twin), f"{twin.name} marks no `# fixed: CODE` line"


def _confirmed_share(device: str) -> None:
    findings = checked(device)
    verdicts = {}
    for path in FLAGGED:
        items = probed(findings, path)
        assert items, f"{path.name}: no probe-able finding"
        for finding in items:
            runtime = finding["runtime"]
            assert runtime["device"].startswith(device) or device == "auto"
            verdicts[f"{path.name}:{finding['location']['row']} {finding['code']}"] = runtime
    misses = {k: v["reason"] for k, v in verdicts.items() if v["verdict"] != "confirmed"}
    share = 1 - len(misses) / len(verdicts)
    assert share >= 0.95, f"{share:.0%} confirmed; not confirmed: {json.dumps(misses, indent=1)}"
    for runtime in verdicts.values():
        if runtime["verdict"] == "confirmed":
            assert runtime["max_abs_diff"] is not None and runtime["reason"]


def test_confirmable_fixtures_are_confirmed_on_cpu() -> None:
    _confirmed_share("cpu")


def _twins_verified(*options: str) -> dict[str, dict]:
    """`verify` over every fixed twin's `# fixed:` lines in one run (one torch import per child, two
    children at a time), as `file:line` -> runtime verdict."""
    targets = [f"{twin.relative_to(REPO)}:{line}" for twin in TWINS for line in twin_lines(twin)]
    code, out, err = modelint("verify", "--format", "json", "--runtime-timeout", "20", *options, *targets)
    assert code == 0, out + err
    rows = json.loads(out)
    assert len(rows) == len(targets)
    return {f"{Path(row['filename']).name}:{row['location']['row']}": row["runtime"] for row in rows}


def test_fixed_twins_are_not_reproduced() -> None:
    verdicts = _twins_verified()
    assert {name.split(":")[0] for name in verdicts} == {twin.name for twin in TWINS}
    wrong = {name: runtime for name, runtime in verdicts.items() if runtime["verdict"] != "not reproduced"}
    assert not wrong, json.dumps(wrong, indent=1)


def test_verify_confirms_a_flagged_line() -> None:
    path = RUNTIME / "gat_functional_dropout.py"
    line = next(r for r, text in enumerate(path.read_text().splitlines(), 1) if "expect: MDL008" in text)
    code, out, _ = modelint("verify", f"{path.relative_to(REPO)}:{line}")
    assert code == 1
    assert f":{line}:" in out and "runtime: confirmed on cpu" in out


def test_constructor_with_unknown_arguments_is_not_run() -> None:
    [finding] = probed(checked("cpu"), RUNTIME / "notrun_tag_mapping_constructor.py")
    assert finding["runtime"]["verdict"] == "not run"
    reason = finding["runtime"]["reason"]
    assert "constructor needs arguments: BiLSTMTagger(tag_to_ix)" in reason
    assert "# modelint: probe BiLSTMTagger(...)" in reason


def test_a_configuration_argument_is_guessed_field_by_field() -> None:
    [finding] = probed(checked("cpu"), RUNTIME / "config_constructor_guessed.py")
    runtime = finding["runtime"]
    assert runtime["verdict"] == "confirmed", runtime
    assert "cfg" in runtime["guessed"] and "config(in_channels=3" in runtime["constructed"], runtime


def test_model_built_from_an_argument_says_what_to_add() -> None:
    [finding] = probed(checked("cpu"), RUNTIME / "notrun_model_built_by_a_factory_argument.py")
    assert finding["runtime"]["verdict"] == "not run"
    assert "no construction found" in finding["runtime"]["reason"]
    assert "# modelint: probe ClassName(...)" in finding["runtime"]["reason"]


def test_model_only_passed_in_is_witnessed_on_a_stand_in() -> None:
    # Nothing builds the model: the function is called with a stand-in and the line watched, and the
    # verdict says that it checks the code path, not the user's model.
    for name in ("model_is_a_parameter.py", "model_used_by_a_closure.py"):
        [finding] = probed(checked("cpu"), RUNTIME / name)
        runtime = finding["runtime"]
        assert runtime["verdict"] == "confirmed", runtime
        assert "was in training mode" in runtime["reason"] and "not your model" in runtime["reason"], runtime


def test_verdict_names_the_constructor_arguments_and_the_guesses() -> None:
    findings = checked("cpu")
    [from_defaults] = probed(findings, RUNTIME / "argparse_defaults_constructor.py")
    assert from_defaults["runtime"]["constructed"] == "KeywordNet(n_mels=40, channels=32, n_classes=12, dropout=0.3)"
    assert from_defaults["runtime"]["guessed"] == []
    [guessed] = probed(findings, RUNTIME / "guessed_vocab_sizes.py")
    assert guessed["runtime"]["guessed"] == ["vocab_size", "n_classes"]
    code, out, _ = modelint("check", "--runtime", "--no-cache", str((RUNTIME / "guessed_vocab_sizes.py").relative_to(REPO)))
    assert "runtime: confirmed on cpu with ReviewClassifier(vocab_size=" in out and "(guessed: vocab_size, n_classes)" in out


def test_script_that_exits_at_import_is_probed_through_its_definitions() -> None:
    [finding] = probed(checked("cpu"), RUNTIME / "script_exits_at_import.py")
    assert finding["runtime"]["verdict"] == "confirmed"
    assert "sys.exit(" in finding["runtime"]["import"] and "definitions only" in finding["runtime"]["reason"]


def test_model_built_in_another_file_of_the_project(tmp_path: Path) -> None:
    """The finding is in a helper; the model is built by its caller in another file, with a constant."""
    (tmp_path / "nets.py").write_text(
        "import torch.nn as nn\n\n\nclass Scorer(nn.Module):\n"
        "    def __init__(self, n_features, hidden):\n        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.Dropout(0.5), nn.Linear(hidden, 1))\n\n"
        "    def forward(self, x):\n        return self.body(x)\n")
    (tmp_path / "helpers.py").write_text(
        "import torch\n\n\ndef score(model, rows):\n    with torch.no_grad():\n"
        "        return model(rows)  # expect: MDL001\n")
    (tmp_path / "train.py").write_text(
        "import torch\n\nfrom helpers import score\nfrom nets import Scorer\n\nWIDTH = 12\n\n\n"
        "def main(rows, epochs=3):\n    model = Scorer(WIDTH, WIDTH * 4)\n"
        "    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n    for _ in range(epochs):\n"
        "        model.train()\n        optimizer.zero_grad()\n        model(rows).pow(2).mean().backward()\n"
        "        optimizer.step()\n        print(score(model, rows))\n")
    completed = subprocess.run([sys.executable, "-m", "modelint", "check", "--runtime", "--no-cache", "--format",
                                "json", "."], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    [finding] = [f for f in json.loads(completed.stdout) if f["code"] == "MDL001"]
    assert finding["filename"].endswith("helpers.py")
    assert finding["runtime"]["verdict"] == "confirmed", finding["runtime"]
    assert finding["runtime"]["constructed"] == "Scorer(n_features=12, hidden=48)"


def test_endless_import_is_not_run_within_the_timeout() -> None:
    started = time.monotonic()
    code, out, _ = modelint("check", "--runtime", "--runtime-timeout", "5", "--no-cache", "--format", "json",
                            str((RUNTIME / "notrun_serves_forever.py").relative_to(REPO)))
    assert time.monotonic() - started < 60
    [finding] = probed(json.loads(out), RUNTIME / "notrun_serves_forever.py")
    assert finding["runtime"]["verdict"] == "not run"
    assert "timed out after 5 s" in finding["runtime"]["reason"]


def test_user_code_has_no_network(tmp_path: Path) -> None:
    (tmp_path / "phones_home.py").write_text(
        "import socket\nimport torch\nimport torch.nn as nn\n"
        "socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
        "model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))\n"
        "with torch.no_grad():\n    print(model(torch.randn(2, 4)).argmax(1))\n")
    code, out, _ = modelint("check", "--runtime", "--no-cache", "--format", "json", str(tmp_path / "phones_home.py"))
    [finding] = json.loads(out)
    assert finding["code"] == "MDL001"
    # The connection fails at import; the probe goes on with the file's definitions and says why.
    refused = finding["runtime"]["import"]
    assert "network access is disabled" in refused or "Network is unreachable" in refused


def test_user_code_runs_only_when_asked(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "side_effect.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nimport torch\nimport torch.nn as nn\n"
        "model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))\n"
        "with torch.no_grad():\n    print(model(torch.randn(2, 4)).argmax(1))\n")
    code, _, _ = modelint("check", "--no-cache", str(tmp_path / "side_effect.py"))
    assert code == 1 and not marker.exists()
    code, _, _ = modelint("check", "--runtime", "--no-cache", str(tmp_path / "side_effect.py"))
    assert code == 1 and marker.exists()


def test_text_output_appends_the_verdict() -> None:
    code, out, _ = modelint("check", "--runtime", "--no-cache", str((RUNTIME / "training_flag_false.py")
                                                                       .relative_to(REPO)))
    assert code == 1
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if ": MDL010 " in line)
    assert any(line.startswith("    runtime: confirmed on cpu: ") for line in lines[header + 1:header + 4])


def test_static_path_never_imports_torch() -> None:
    script = ("import sys\nfrom modelint import cli\n"
              "try:\n    cli.main(['check', '--no-cache', '--format', 'json', 'fixtures/runtime'])\n"
              "except SystemExit:\n    pass\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_runtime_without_torch_is_one_line_and_exit_2(monkeypatch) -> None:
    monkeypatch.setattr("modelint.runtime.torch_available", lambda: False)
    runner = CliRunner()
    for args in (["check", "--runtime", str(RUNTIME / "training_flag_false.py")],
                 ["verify", str(RUNTIME / "training_flag_false.py")]):
        result = runner.invoke(cli.main, args)
        assert result.exit_code == 2
        assert result.output.strip().count("\n") == 0
        assert "pip install 'modelint[runtime]'" in result.output


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_not_run() -> None:
    code, out, _ = modelint("check", "--runtime", "--device", "cuda", "--no-cache", "--format", "json",
                            str((RUNTIME / "training_flag_false.py").relative_to(REPO)))
    [finding] = json.loads(out)
    assert finding["runtime"]["verdict"] == "not run"
    assert "CUDA is not available" in finding["runtime"]["reason"]


@pytest.mark.skipif(not CUDA, reason="no CUDA device here")
def test_confirmable_fixtures_are_confirmed_on_cuda() -> None:
    _confirmed_share("cuda")


@pytest.mark.skipif(not CUDA, reason="no CUDA device here")
def test_fixed_twins_are_not_reproduced_on_cuda() -> None:
    verdicts = _twins_verified("--device", "cuda")
    wrong = {name: runtime for name, runtime in verdicts.items()
             if runtime["verdict"] != "not reproduced" or not runtime["device"].startswith("cuda")}
    assert not wrong, json.dumps(wrong, indent=1)


def test_file_inside_a_package_keeps_its_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "project" / "models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text(
        "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self, dim=8):\n        super().__init__()\n"
        "        self.net = nn.Sequential(nn.Dropout(0.5), nn.Linear(dim, 2))\n\n"
        "    def forward(self, x):\n        return self.net(x)\n")
    (package / "predict.py").write_text(
        "import torch\n\nfrom .layers import Head\n\n\ndef predict(batch):\n    head = Head(dim=8)\n"
        "    with torch.no_grad():\n        return head(batch)\n")
    completed = subprocess.run([sys.executable, "-m", "modelint", "check", "--runtime", "--no-cache", "--format",
                                "json", "models/predict.py"], cwd=tmp_path / "project", capture_output=True,
                               text=True, timeout=600)
    [finding] = json.loads(completed.stdout)
    assert finding["code"] == "MDL001"
    assert finding["runtime"]["verdict"] == "confirmed", finding["runtime"]


def test_config_supplies_constructor_input_and_timeout(tmp_path: Path) -> None:
    source = (RUNTIME / "config_constructor_guessed.py").read_text()
    (tmp_path / "train.py").write_text(source)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.modelint.runtime]\ntimeout = 120\n"
        "probes = { ConvNet = \"ConvNet(argparse.Namespace(in_channels=3, width=8, dropout=0.5, classes=4))\" }\n"
        "inputs = { ConvNet = \"torch.randn(3, 3, 20, 20)\" }\n")
    completed = subprocess.run([sys.executable, "-m", "modelint", "check", "--runtime", "--no-cache", "--format",
                                "json", "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    [finding] = json.loads(completed.stdout)
    assert finding["runtime"]["verdict"] == "confirmed", finding["runtime"]
    assert finding["runtime"]["input"] == "hint torch.randn(3, 3, 20, 20)"


@pytest.mark.parametrize("table, complaint", [
    ("devices = \"cpu\"", "unknown key `devices` in [tool.modelint.runtime] (did you mean `device`?)"),
    ("device = \"tpu\"", "`runtime.device` must be"),
    ("timeout = -1", "`runtime.timeout` must be a positive number"),
    ("probes = [\"Net()\"]", "`runtime.probes` must be a table"),
])
def test_broken_runtime_config_is_one_line_and_exit_2(tmp_path: Path, table: str, complaint: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.modelint.runtime]\n{table}\n")
    (tmp_path / "a.py").write_text("import torch\n")
    completed = subprocess.run([sys.executable, "-m", "modelint", "check", "--no-cache", "a.py"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert complaint in completed.stderr and completed.stderr.count("\n") == 1, completed.stderr


def test_memory_hungry_import_hits_the_limit(tmp_path: Path) -> None:
    (tmp_path / "hungry.py").write_text(
        "import torch\nimport torch.nn as nn\nCACHE = bytearray(64 << 30)\n"
        "model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))\n"
        "with torch.no_grad():\n    print(model(torch.randn(2, 4)).argmax(1))\n")
    code, out, _ = modelint("check", "--runtime", "--no-cache", "--format", "json", str(tmp_path / "hungry.py"))
    [finding] = json.loads(out)
    # The 64 GiB allocation fails under the limit; the probe goes on with the file's definitions.
    assert "MemoryError" in finding["runtime"]["import"]


def test_notebook_cells_are_probed_as_the_module_the_linter_read() -> None:
    """A notebook's finding is probed on its joined cells, and the verdict speaks of cells, not of the
    joined module's rows."""
    code, out, err = modelint("check", "--runtime", "--runtime-timeout", "60", "--no-cache", "--format", "json",
                              "fixtures/notebooks/fashion_mnist.ipynb")
    assert code == 1, err
    finding = next(f for f in json.loads(out) if f["code"] == "MDL001")
    runtime = finding["runtime"]
    assert runtime["verdict"] == "confirmed", runtime
    assert "cell 4, line 4" in runtime["reason"], runtime["reason"]
