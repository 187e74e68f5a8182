"""Which function the runtime witness calls when nothing builds the model (no torch, no user code)."""
from __future__ import annotations

import ast
import textwrap

from modelint.runtime.witness_plan import witness_spec


def spec(source: str, marker: str, key: str, claim: str = "training"):
    text = textwrap.dedent(source)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if marker in row)
    return witness_spec(ast.parse(text), line, key, claim, "MDL001")


def test_a_top_level_function_receiving_the_model_is_called() -> None:
    found = spec("""
        def validate(model, loader):
            return [model(x) for x in loader]  # here
    """, "# here", "model")
    assert found["function"] == "validate" and found["owner"] is None and found["root"] == "model"


def test_a_closure_is_reached_through_the_function_around_it() -> None:
    found = spec("""
        def main(model, loader):
            def check():
                return model(loader)  # here
            return check()
    """, "# here", "model")
    assert found["function"] == "main" and found["root"] == "model"


def test_a_model_bound_by_the_closure_itself_cannot_be_handed_in() -> None:
    assert spec("""
        def main(loader):
            def check(model):
                return model(loader)  # here
            return check
    """, "# here", "model") is None


def test_a_method_watches_its_attribute_and_the_path_below_it() -> None:
    found = spec("""
        class Trainer:
            def validate(self):
                return self.model.encoder(self.batch)  # here
    """, "# here", "self.model.encoder")
    assert (found["owner"], found["function"], found["root"], found["path"]) == \
        ("Trainer", "validate", "self.model", ["encoder"])


def test_a_model_the_function_builds_or_indexes_is_not_witnessed() -> None:
    assert spec("""
        def run(build, loader):
            model = build()
            return model(loader)  # here
    """, "# here", "model") is None
    assert spec("""
        def run(models, loader):
            return models[0](loader)  # here
    """, "# here", "models[0]") is None


def test_module_level_code_and_lambdas_are_not_witnessed() -> None:
    assert spec("""
        out = model(x)  # here
    """, "# here", "model") is None
    assert spec("""
        def run(model, xs):
            return list(map(lambda x: model(x), xs))  # here
    """, "# here", "model") is None
