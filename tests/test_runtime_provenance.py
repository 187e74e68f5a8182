"""Where the runtime planner finds a model's constructor and its arguments (parent side: no torch,
no user code run): `modelint.runtime.provenance` over a small project written to tmp_path."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from modelint.runtime.project_scan import Project
from modelint.runtime.provenance import Resolver


def builds(path: Path, line: int, key: str = "model") -> tuple[list[dict], Resolver]:
    project = Project(str(path), ast.parse(path.read_text()))
    resolver = Resolver(project)
    return resolver.builds_at(project.index(str(path)), key, line), resolver


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def values(spec: dict) -> dict:
    return {key: arg.get("value") for key, arg in spec["kwargs"].items()} | \
        {str(n): arg.get("value", arg.get("expr")) for n, arg in enumerate(spec["args"])}


def test_argparse_defaults_constants_and_arithmetic(tmp_path: Path) -> None:
    path = write(tmp_path, "train.py", """
        import argparse
        from models import Net
        LAYERS = 3

        def main():
            parser = argparse.ArgumentParser()
            parser.add_argument("--hidden-size", type=int, default=64)
            parser.add_argument("--data", required=True)
            args = parser.parse_args()
            model = Net(args.hidden_size, depth=LAYERS * 2, data=args.data).to("cpu")
            model(1)
        """)
    write(tmp_path, "models.py", "class Net:\n    pass\n")
    [spec], _ = builds(path, 11)
    assert spec["callee"] == {"file": str(tmp_path / "models.py"), "name": "Net"}
    assert values(spec) == {"0": "64", "depth": "6", "data": None}
    assert spec["kwargs"]["data"] == {"expr": "args.data"}  # no default: left to the probe child


def test_config_class_defaults_and_self_attributes(tmp_path: Path) -> None:
    path = write(tmp_path, "tab.py", """
        from dataclasses import dataclass
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self, n_d, n_steps):
                super().__init__()

        @dataclass
        class Model:
            n_d: int = 8
            n_steps: int = 3

            def fit(self, input_dim):
                self.network = Net(self.n_d, n_steps=self.n_steps + 1)

            def predict(self, x):
                return self.network(x)
        """)
    [spec], _ = builds(path, 17, "self.network")
    assert spec["callee"]["name"] == "Net" and values(spec) == {"0": "8", "n_steps": "4"}


def test_a_parameter_is_followed_to_its_callers_in_other_files(tmp_path: Path) -> None:
    helper = write(tmp_path, "helpers.py", """
        def evaluate(model, batch):
            return model(batch)
        """)
    write(tmp_path, "train.py", """
        from helpers import evaluate
        from nets import Net
        WIDTH = 8
        net = Net(WIDTH)
        evaluate(net, None)
        """)
    write(tmp_path, "other.py", """
        def evaluate(model, batch):  # the same name, another function: not a caller of helpers.evaluate
            return model(batch)
        evaluate(Unrelated(), None)
        """)
    write(tmp_path, "nets.py", "class Net:\n    pass\n")
    found, _ = builds(helper, 2)
    assert [(s["callee"]["name"], values(s)) for s in found] == [("Net", {"0": "8"})]


def test_loaded_models_and_library_factories(tmp_path: Path) -> None:
    path = write(tmp_path, "predict.py", """
        import torch
        import torchvision

        def main(resume):
            if resume:
                model = torch.load(resume)
            else:
                model = torchvision.models.resnet18(num_classes=5)
            model(None)
        """)
    [spec], resolver = builds(path, 9)
    assert spec["callee"] == {"module": "torchvision", "name": "models.resnet18"}
    assert values(spec) == {"num_classes": "5"}
    assert any("torch.load" in note for note in resolver.notes)
