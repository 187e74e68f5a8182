"""Runtime reach on the rule fixtures: the probes added for issue #14's "verdict for most findings".

- a functional call outside any nn.Module class (MDL008 in an evaluation function) is run on its own,
  on a stand-in tensor, against modelint's fix;
- an MDL009 finding is measured on its own container: another plain container with a Dropout in the
  same class cannot confirm it;
- a constructor parameter annotated as a dict gets a guessed mapping, reported as guessed;
- `model.training = False` on a helper's parameter that nothing builds is shown on a stand-in, and the
  verdict says so;
- pretrained weights that cannot be downloaded leave the module with random weights, and the verdict says so;
- a transformers `from_pretrained` checkpoint is built from a small configuration of the same class (or,
  without transformers, the reason names the package);
- a constructor parameter that takes a module nobody passes is not replaced by a stand-in for a forward pass.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the runtime checker's tests need torch (the test extra installs it)")

from modelint.runtime.build import GuessedMapping, _mapping_annotation, _type_in_name  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
FILES = {
    "functional": FIXTURES / "MDL008_functional_ignores_mode" / "bug_functional_model_evaluate.py",
    "evaluate": FIXTURES / "MDL008_functional_ignores_mode" / "bug_eval_function_dropout.py",
    "fpn": FIXTURES / "MDL009_unregistered_submodule" / "bug_fpn_lateral_tuple.py",
    "heads": FIXTURES / "MDL009_unregistered_submodule" / "bug_heads_dict_and_append.py",
    "flag": FIXTURES / "MDL010_training_flag_assigned" / "bug_predict_helper_flag.py",
}
_RESULT: list[dict] = []


def checked() -> list[dict]:
    if not _RESULT:
        completed = subprocess.run(
            [sys.executable, "-m", "modelint", "check", "--runtime", "--no-cache", "--format", "json",
             "--select", "MDL008,MDL009,MDL010", "--runtime-timeout", "60", *(str(p.relative_to(REPO)) for p in FILES.values())],
            cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
        assert completed.returncode == 1, completed.stderr
        _RESULT.extend(json.loads(completed.stdout))
    return _RESULT


def runtime_at(name: str, row: int) -> dict:
    found = [f for f in checked() if Path(f["filename"]).name == FILES[name].name and f["location"]["row"] == row]
    assert found, f"no finding at {FILES[name].name}:{row}"
    return found[0]["runtime"]


def test_functional_call_outside_a_module_is_run_on_its_own() -> None:
    for name, row in (("functional", 23), ("evaluate", 11)):
        runtime = runtime_at(name, row)
        assert runtime["verdict"] == "confirmed", runtime
        assert "stand-in tensor" in runtime["reason"] and "training=False" in runtime["reason"], runtime
        assert runtime["constructed"] is None  # no module was built: the call itself was measured


def test_an_unregistered_container_is_measured_on_its_own() -> None:
    lateral = runtime_at("fpn", 10)  # plain Conv2d layers: nothing that the mode changes
    assert lateral["verdict"] == "not reproduced", lateral
    assert "`self.lateral_convs` left unregistered" in lateral["reason"]
    assert runtime_at("fpn", 16)["verdict"] == "confirmed"  # Conv + BatchNorm
    heads = runtime_at("heads", 8)  # Linear heads, next to adapters with Dropout in a plain list
    assert heads["verdict"] == "not reproduced", heads
    adapters = runtime_at("heads", 9)
    assert adapters["verdict"] == "confirmed", adapters
    assert "tasks" in adapters["guessed"] and "tasks={'cls': 4}" in adapters["constructed"], adapters


def test_dict_annotations_are_recognised() -> None:
    assert _mapping_annotation(dict) and _mapping_annotation(typing.Dict[str, int])
    assert _mapping_annotation(typing.Optional[typing.Mapping[str, int]]) and _mapping_annotation("dict[str, int]")
    assert not _mapping_annotation(list) and not _mapping_annotation(inspect.Parameter.empty)
    assert not _mapping_annotation("int") and not _mapping_annotation(typing.List[int])


def test_a_guessed_mapping_holds_what_was_read() -> None:
    mapping = GuessedMapping(0)
    assert list(mapping) == [] and len(mapping) == 0  # nothing is invented for a mapping only iterated
    assert mapping["num_classes"] == 4 and mapping["hidden_dim"] == 16 and mapping["cls"] == 4
    assert list(mapping) == ["num_classes", "hidden_dim", "cls"]
    assert dict(mapping.items())["hidden_dim"] == 16 and mapping.get("other", 7) == 7
    with pytest.raises(AttributeError):
        mapping.hidden_dim  # noqa: B018 - a mapping, not a namespace
    assert GuessedMapping(1)["cls"] == 8


def test_a_flag_on_a_helper_parameter_is_shown_on_a_stand_in() -> None:
    runtime = runtime_at("flag", 13)
    assert runtime["verdict"] == "confirmed", runtime
    assert runtime["constructed"].startswith("StandIn(") and runtime["guessed"] == ["model (a stand-in)"]
    assert "measured on a stand-in" in runtime["reason"] and "not how much it changes your model" in runtime["reason"]


def run_modelint(*args: str, cwd: Path = REPO, env: dict | None = None) -> tuple[int, str, str]:
    completed = subprocess.run([sys.executable, "-m", "modelint", *args], cwd=cwd, capture_output=True, text=True,
                               timeout=300, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    return completed.returncode, completed.stdout, completed.stderr


def runtime_of(path: Path, code: str) -> dict:
    """The runtime verdict of the one `code` finding of a fixture, checked alone."""
    _code, out, _err = run_modelint("check", "--runtime", "--no-cache", "--format", "json", "--select", code,
                                    str(path.relative_to(REPO)))
    [finding] = json.loads(out)
    return finding["runtime"]


def test_pretrained_weights_that_cannot_be_downloaded_are_left_random(tmp_path: Path) -> None:
    script = tmp_path / "scorer.py"
    script.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Scorer(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.body = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))\n"
        "        self.load_state_dict(torch.hub.load_state_dict_from_url('https://weights.invalid/scorer.pth'))\n\n"
        "    def forward(self, x):\n        return self.body(x)\n\n\n"
        "def score(x):\n    model = Scorer()\n    model.train()\n    return model(x)\n")
    code, out, err = run_modelint("verify", f"{script}:18", "--format", "json", env={"TORCH_HOME": str(tmp_path)})
    [site] = json.loads(out)
    runtime = site["runtime"]
    assert runtime["verdict"] == "confirmed", (runtime, err)
    assert "pretrained weights not downloaded: measured with random weights" in runtime["reason"]
    assert "pretrained weights (random)" in runtime["guessed"]


def test_the_model_type_is_read_from_a_checkpoint_name() -> None:
    types = ["bert", "distilbert", "roberta", "xlm-roberta", "t5", "bart", "gpt2"]
    assert _type_in_name("distilbert-base-uncased-finetuned-sst-2-english", types) == "distilbert"
    assert _type_in_name("FacebookAI/roberta-base", types) == "roberta"
    assert _type_in_name("xlm-roberta-large", types) == "xlm-roberta"
    assert _type_in_name("google/flan-t5-base", types) == "t5"
    assert _type_in_name("gpt2-medium", types) == "gpt2"
    assert _type_in_name("sentence-transformers/all-MiniLM-L6-v2", types) is None


def test_a_hugging_face_checkpoint_is_built_from_a_small_config() -> None:
    runtime = runtime_of(FIXTURES / "MDL002_missing_no_grad" / "bug_sentence_embeddings_hf.py", "MDL002")
    try:
        import transformers  # noqa: F401
    except ImportError:
        assert runtime["verdict"] == "not run" and "`transformers` is not installed" in runtime["reason"], runtime
        return
    assert runtime["verdict"] == "confirmed", runtime
    assert "BertModel built from a small config of the same class" in runtime["constructed"], runtime
    assert "random weights" in runtime["constructed"] and runtime["guessed"][0].startswith("the checkpoint")


def test_a_module_parameter_nobody_passes_is_not_a_stand_in_for_a_forward_pass() -> None:
    runtime = runtime_of(FIXTURES / "MDL001_missing_eval_mode" / "bug_saved_mode_restored_without_eval.py", "MDL001")
    assert runtime["verdict"] == "not run", runtime
    assert "`student` takes a module and nothing in the project passes one" in runtime["reason"]
    assert "# modelint: probe MeanTeacher(YourNet(...))" in runtime["reason"]
