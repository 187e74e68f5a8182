"""The runtime witness: when nothing builds the model, the function around the flagged line is called
with a stand-in module and the line is watched for what the finding says (witness.py).

- a method of a trainer whose base class comes from a module that cannot be imported is still called
  (the base is a stand-in class, and the verdict says so);
- training in eval mode is confirmed once the mid-epoch evaluation has run;
- not seeing eval mode at a training step proves nothing (the evaluation may come after more steps
  than stand-in inputs give): `not run`, never `not reproduced`;
- the call runs in a scratch folder: what it writes under a relative path does not land in the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the runtime checker's tests need torch (the test extra installs it)")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
FILES = {
    "base": FIXTURES / "MDL002_missing_no_grad" / "bug_tuner_on_project_base_evaluates.py",
    "trainer": FIXTURES / "MDL003_training_in_eval_mode" / "bug_trainer_class.py",
    "rare": FIXTURES / "MDL003_training_in_eval_mode" / "bug_set_mode_helper_leaves_models_in_eval.py",
}
WRITER = '''import torch


def fit(model, loader, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    with open("predictions.txt", "w") as out, torch.no_grad():
        for x, _ in loader:
            out.write(str(model(x)))
'''


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("writer")
    (folder / "writer.py").write_text(WRITER)
    paths = [str(p) for p in FILES.values()] + [str(folder / "writer.py")]
    completed = subprocess.run([sys.executable, "-m", "modelint", "check", "--runtime", "--no-cache", "--format",
                                "json", "--select", "MDL001,MDL002,MDL003", "--runtime-timeout", "60", *paths],
                               cwd=REPO, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "NO_COLOR": "1"})
    assert completed.returncode == 1, completed.stderr
    found = {Path(f["filename"]).name: f["runtime"] for f in json.loads(completed.stdout)}
    found["writer folder"] = sorted(p.name for p in folder.iterdir())
    return found


def test_a_class_on_an_unimportable_base_is_still_called(verdicts) -> None:
    runtime = verdicts[FILES["base"].name]
    assert runtime["verdict"] == "confirmed", runtime
    assert "autograd on" in runtime["reason"] and "not your model" in runtime["reason"], runtime
    assert "stand-ins for BaseTuner" in runtime["reason"], runtime


def test_training_in_eval_mode_is_seen_after_the_mid_epoch_evaluation(verdicts) -> None:
    runtime = verdicts[FILES["trainer"].name]
    assert runtime["verdict"] == "confirmed", runtime
    assert "Trainer.train_epoch()" in runtime["reason"] and "was in eval mode" in runtime["reason"], runtime


def test_eval_mode_not_seen_at_a_training_step_is_no_verdict(verdicts) -> None:
    runtime = verdicts[FILES["rare"].name]
    assert runtime["verdict"] == "not run", runtime
    assert "always in training mode" in runtime["reason"], runtime


def test_the_called_function_writes_in_a_scratch_folder(verdicts) -> None:
    assert verdicts["writer.py"]["verdict"] == "confirmed", verdicts["writer.py"]
    assert verdicts["writer folder"] == ["writer.py"]
