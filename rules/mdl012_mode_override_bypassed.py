from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.names import dotted
from modelint.facts.walk import iter_nodes
from modelint.rule import Report, Rule


class ModeOverrideBypassed(Rule):
    """
    ## What it does
    Finds an `nn.Module` subclass that overrides `train(self, mode=True)` without
    calling `super().train(mode)` or passing the mode on to its children, and one
    that overrides `eval()`. A `train()` or `eval()` override that does nothing at
    all (`pass`, `return self`) refuses mode switches on purpose (a frozen pretrained
    part kept in the mode it was loaded in, a wrapper serving cached scores) and is
    left alone.

    ## Why is this bad?
    `nn.Module.train(mode)` sets `self.training` and recurses into every child;
    `eval()` is just `train(False)`. An override that skips the parent leaves the
    children (Dropout, BatchNorm) in their old mode, so `model.eval()` silently stops
    working. Code in an `eval()` override never runs when the framework (or the
    parent module) calls `train(False)`, which is what `parent.eval()` does to every
    child.

    ## Example
    ```python
    def train(self, mode=True):
        self.training = mode
        self.backbone_frozen = not mode
    ```

    ## Use instead
    ```python
    def train(self, mode=True):
        super().train(mode)
        self.backbone_frozen = not mode
        return self
    ```

    ## Fix safety
    None: what the override should keep is for a person to decide.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.train
    """

    code = "MDL012"
    name = "mode-override-bypassed"
    severity = "error"
    summary = "A train()/eval() override that does not reach the children."
    fixtures = "MDL012_mode_override_bypassed"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for cls in facts.collector.classes:
            if "train" not in cls.methods and "eval" not in cls.methods:
                continue
            # Known to be an nn.Module through its bases: a class of some other framework with a
            # `forward`, `train(experiences)` and `eval(stream)` (a continual-learning strategy) is not.
            if facts.receivers.of_class(cls).module is not True:
                continue
            train = cls.methods.get("train")
            if train is not None and not _propagates(train) and not _does_nothing(train):
                yield Report(train.name, f"`{cls.name}.train()` never calls `super().train(mode)` or its children's "
                                         f"train(): `eval()`/`train()` no longer reach its Dropout/BatchNorm; "
                                         f"call `super().train(mode)`", stmt=train)
            evaluate = cls.methods.get("eval")
            if evaluate is not None and not _only_delegates(evaluate) and not _does_nothing(evaluate) \
                    and not _reaches_children_only(facts, cls, evaluate):
                yield Report(evaluate.name, f"`{cls.name}.eval()` is bypassed by `train(False)`, which a parent's "
                                            f"eval() calls on every child: move this logic into a `train(self, "
                                            f"mode=True)` override that calls `super().train(mode)`", stmt=evaluate)


def _calls(node: cst.CSTNode) -> list[cst.Call]:
    """Every call under `node`, outer before inner, in source order (as libcst's visitor meets them)."""
    return [inner for inner in iter_nodes(node, source_order=True) if type(inner) is cst.Call]


def _propagates(method: cst.FunctionDef) -> bool:
    for call in _calls(method.body):
        func = call.func
        if type(func) is not cst.Attribute:
            continue
        if func.attr.value == "train":
            receiver = func.value
            if type(receiver) is cst.Call and dotted(receiver.func) == "super":
                return True
            if dotted(receiver) not in (None, "self"):
                return True  # for m in self.children(): m.train(mode)
            if dotted(receiver) == "self":
                return True  # delegates to an inherited train via another path
        if func.attr.value == "train" or (func.attr.value == "apply" and dotted(func.value) == "self"):
            return True
    return False


def _does_nothing(method: cst.FunctionDef) -> bool:
    """`def train(self, mode=True): pass` (or `return self`): the class refuses mode switches on purpose,
    keeping a pretrained part in the mode it was loaded in (flair's frozen character language model). The same
    for `def eval(self): pass`: no logic of its own for `train(False)` to bypass."""
    for statement in _body_statements(method):
        if type(statement) is not cst.SimpleStatementLine:
            return False
        for small in statement.body:
            if type(small) is cst.Pass or (type(small) is cst.Return and (
                    small.value is None or (type(small.value) is cst.Name and small.value.value == "self"))):
                continue
            return False
    return True


def _body_statements(method: cst.FunctionDef) -> list:
    """The body's statements, its docstring left out."""
    body = method.body.body if type(method.body) is cst.IndentedBlock else method.body.body
    return [s for s in body if not (type(s) is cst.SimpleStatementLine and
                                    type(s.body[0]) is cst.Expr and type(s.body[0].value) is cst.SimpleString)]


def _only_delegates(method: cst.FunctionDef) -> bool:
    statements = _body_statements(method)
    if len(statements) != 1:
        return False
    calls = _calls(statements[0])
    return len(calls) >= 1 and isinstance(calls[-1].func, cst.Attribute) and calls[-1].func.attr.value in ("train", "eval")


def _reaches_children_only(facts: FileFacts, cls, method: cst.FunctionDef) -> bool:
    """Does the eval() override only do what `train(False)` does anyway?

    Every statement is an `eval()`/`train(False)` of a child (`self.net.eval()`), of the parent
    (`super().eval()`), `return self`, or an `if` around such calls. A child is an attribute of
    `self` not known to be something else; a deeper one (`self.backend.model.eval()`) is reached by
    `train(False)` only if what holds it (`self.backend`) is known to be a module.
    """
    info = next((f for f in facts.collector.functions if f.node is method), None)
    if info is None or not info.params:
        return False
    owner = info.params[0]
    stack = list(_statements(method.body))
    while stack:
        statement = stack.pop()
        if type(statement) is cst.If:
            stack.extend(_statements(statement.body))
            if statement.orelse is not None:
                stack.extend(_statements(statement.orelse.body) if type(statement.orelse) is cst.Else
                             else [statement.orelse])
            continue
        if type(statement) is not cst.SimpleStatementLine:
            return False
        for small in statement.body:
            if type(small) is cst.Expr and type(small.value) is cst.SimpleString:
                continue  # the docstring
            value = small.value if type(small) in (cst.Expr, cst.Return) else None
            if type(small) is cst.Return and dotted(value) == owner:
                continue
            if type(value) is not cst.Call or not _switches_off(value):
                return False
            receiver = value.func.value
            if type(receiver) is cst.Call and dotted(receiver.func) == "super":
                continue
            parts = (dotted(receiver) or "").split(".")
            if len(parts) < 2 or parts[0] != owner:
                return False
            holder = cst.Attribute(cst.Name(owner), cst.Name(parts[1]))
            known = facts.receivers.of(holder, info)
            if (len(parts) == 2 and known.module is False) or (len(parts) > 2 and known.module is not True):
                return False
    return True


def _statements(body) -> list:
    return list(body.body) if type(body) in (cst.IndentedBlock, cst.SimpleStatementSuite) else []


def _switches_off(call: cst.Call) -> bool:
    func = call.func
    if type(func) is not cst.Attribute:
        return False
    if func.attr.value == "eval" and not call.args:
        return True
    return func.attr.value == "train" and len(call.args) == 1 and dotted(call.args[0].value) == "False"
