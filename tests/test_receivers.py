"""Receiver facts and the name bindings behind them (modelint.facts.receivers / bindings)."""

from __future__ import annotations

import textwrap

import libcst as cst

from modelint.config import ConfigResolver
from modelint.facts import FileFacts
from modelint.facts.name_values import literal_choices, reaching, scope_bindings, statement_parents
from modelint.runner import Overrides, run_paths

SOURCE = textwrap.dedent('''
    import copy
    import torch
    import torch.nn as nn
    import pytorch_lightning as pl
    from transformers import AutoModel, Trainer
    from somewhere import Strategy


    class Net(nn.Module):
        def evaluate(self, loader):
            return loader


    class Child(Net):
        pass


    class Lit(pl.LightningModule):
        pass


    class Norm(nn.modules.batchnorm._BatchNorm):
        pass


    class Plain:
        def eval(self, data):
            return data


    class Mine(Strategy):
        def forward(self):
            pass


    def passes(model):
        model.training = False


    def main(annotated: Net, evidenced, unknown):
        built = Net().to("cpu")
        copied = copy.deepcopy(built)
        pretrained = AutoModel.from_pretrained("x")
        trainer = Trainer()
        norm = Norm(4)
        evidenced.parameters()
        built = Plain()
        passes(Child())
        return annotated, copied, pretrained, trainer, norm, built
''')


def _facts(source: str = SOURCE, path: str = "/tmp/receivers_case.py") -> FileFacts:
    return FileFacts(cst.parse_module(source), path)


def _function(facts: FileFacts, name: str):
    return next(f for f in facts.collector.functions if f.name == name)


def test_classes_through_bases_and_libraries() -> None:
    facts = _facts()
    classes = {c.name: facts.receivers.of_class(c) for c in facts.collector.classes}
    assert classes["Net"].module and classes["Net"].complete and "evaluate" in classes["Net"].defines
    assert classes["Child"].module and "evaluate" in classes["Child"].defines  # inherited from a project base
    assert classes["Lit"].lacks("evaluate")
    assert classes["Norm"].leaf and not classes["Net"].leaf
    assert classes["Plain"].module is False and "eval" in classes["Plain"].defines
    assert classes["Mine"].module is None  # an unknown base with a `forward` is not enough
    assert "somewhere.Strategy" in facts.receivers.unresolved  # for the project index to resolve


def test_expressions() -> None:
    facts = _facts()
    main = _function(facts, "main")
    of = {name: facts.receivers.of(cst.Name(name), main) for name in
          ("annotated", "evidenced", "unknown", "copied", "pretrained", "trainer", "norm")}
    assert of["annotated"].module and of["annotated"].complete
    assert of["evidenced"].module and not of["evidenced"].complete  # `.parameters()`: some module
    assert of["unknown"].module is None
    assert of["copied"].module and not of["copied"].lacks("evaluate")
    assert of["pretrained"].lacks("evaluate")
    assert of["trainer"].module is None  # a Trainer is no model
    assert of["norm"].leaf
    # A parameter is what this file's callers pass for it.
    assert facts.receivers.of(cst.Name("model"), _function(facts, "passes")).module is True


def test_reaching_binding_is_the_last_plain_assignment() -> None:
    module = cst.parse_module(textwrap.dedent('''
        def f(flag):
            x = 1
            x = 2
            if flag:
                x = 3
            use(x)
            x = 4
            y = x
    '''))
    function = module.body[0]
    bindings = scope_bindings(function)
    parents = statement_parents(function)
    statements = function.body.body
    use_line, y_line = statements[3], statements[5]
    assert len(reaching(bindings["x"], use_line, parents)) == 4  # the `if` may or may not rebind it
    (last,) = reaching(bindings["x"], y_line, parents)
    assert last.value.value == "4"


def test_blocks_of_every_compound_statement() -> None:
    module = cst.parse_module(textwrap.dedent('''
        def f(value):
            try:
                a = 1
            except ValueError as error:
                a = 2
            else:
                a = 3
            finally:
                b = 4
            match value:
                case 1:
                    c = 5
            while a:
                d = 6
            with open("x") as handle:
                e = 7
    '''))
    function = module.body[0]
    parents = statement_parents(function)
    bindings = scope_bindings(function)
    assert {"a", "b", "c", "d", "e", "error", "handle", "value"} <= set(bindings)
    assigned = [b.node for name in "abcde" for b in bindings[name]]
    assert all(node in parents for node in assigned)


def test_literal_choices() -> None:
    module = cst.parse_module(textwrap.dedent('''
        def f(model, given):
            phases = ["train", "val"]
            for phase in phases:
                model.train(phase)
            for flag in (True, False):
                pass
            for other in given:
                pass
    '''))
    bindings = scope_bindings(module.body[0])

    def literal(node):
        if isinstance(node, cst.SimpleString):
            return node.evaluated_value
        if isinstance(node, cst.Name) and node.value in ("True", "False"):
            return node.value == "True"
        raise LookupError(node)

    assert literal_choices(bindings, "phase", literal) == ["train", "val"]
    assert literal_choices(bindings, "flag", literal) == [True, False]
    assert literal_choices(bindings, "other", literal) is None
    assert literal_choices(bindings, "given", literal) is None


def test_class_from_another_file(tmp_path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(textwrap.dedent('''
        import torch.nn as nn

        class Base(nn.Module):
            pass

        class WithEvaluate(Base):
            def evaluate(self):
                return 0
    '''))
    (package / "use.py").write_text(textwrap.dedent('''
        from .nets import Base, WithEvaluate

        def main():
            Base().evaluate()
            WithEvaluate().evaluate()
    '''))
    # Only the using file is named: the defining file is found next to it.
    for paths in ([str(package)], [str(package / "use.py")]):
        run = run_paths(paths, ConfigResolver(), Overrides(), jobs=1)
        assert [(f.location.row, f.code) for f in run.findings] == [(5, "MDL011")]


def test_recursion_and_placeholders_end() -> None:
    facts = _facts(textwrap.dedent('''
        import torch.nn as nn


        def spin(m, n):
            m.training = False
            return spin(n, m)


        class Runner:
            def __init__(self):
                self.model = None

            def build(self):
                self.model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))

            def freeze(self):
                self.model.training = False
    '''))
    spin = _function(facts, "spin")
    assert facts.receivers.of(cst.Name("m"), spin).module is None
    freeze = _function(facts, "freeze")
    target = facts.collector.attribute_assigns[-1].target.value
    assert facts.receivers.of(target, freeze).module is True  # `None` until built
