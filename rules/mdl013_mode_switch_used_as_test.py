from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.names import literal_value
from modelint.rule import NodeEdit, NodeFix, Report, Rule
from modelint.textutil import code_of


class ModeSwitchUsedAsTest(Rule):
    """
    ## What it does
    Finds `self.eval()`, `model.train()` (or `model.eval` / `model.train` without the
    call) read as a truth value, on an `nn.Module`: `if self.eval():`, `while model.train():`,
    `x if not self.eval() else y`, `assert model.train`.

    ## Why is this bad?
    `eval()` and `train()` switch the module (and every submodule) and return the
    module itself, which is always true: the test never fails, and the module stays in
    the mode the test put it in. `if self.eval():` inside a forward, written to ask
    "am I evaluating?", turns Dropout off and freezes BatchNorm for the rest of training.
    Without the call, the bound method is just as true and nothing is asked at all.
    The mode is the `training` flag.

    ## Example
    ```python
    def forward(self, x):
        if self.eval():
            return self.head(self.body(x))
        return self.head(self.drop(self.body(x)))
    ```

    ## Use instead
    ```python
    def forward(self, x):
        if not self.training:
            return self.head(self.body(x))
        return self.head(self.drop(self.body(x)))
    ```

    ## Fix safety
    Unsafe: after the fix the line no longer switches the module's mode; code that
    (by accident) relied on the switch behaves differently.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.training
    """

    code = "MDL013"
    name = "mode-switch-used-as-test"
    severity = "error"
    summary = "`if self.eval():` switches the mode and is always true; test `self.training`."
    fix_safety = "unsafe"
    fixtures = "MDL013_mode_switch_used_as_test"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        tests = facts.collector.mode_tests
        if not tests:
            return
        flags = {assign.target.attr.value for assign in facts.collector.attribute_assigns}
        for expr, negation, site in tests:
            called = type(expr) is cst.Call
            method = expr.func if called else expr
            name = method.attr.value
            if name in flags:
                continue  # `self.train = train`: a flag of the object's own (a dataset, a config), not the method
            known = facts.receivers.of(method.value, site.function, site.stmt)
            if known.module is not True or not known.complete or name in known.defines:
                continue  # not surely an nn.Module, or its class has its own `eval`/`train`
            receiver = code_of(method.value)
            training = _training_after(expr) if called else (name == "train")
            shown = code_of(expr)
            if called:
                mode = "eval" if training is False else "training" if training else "the given"
                message = (f"`{shown}` switches `{receiver}` to {mode} mode and returns the module, which is always "
                           f"true: the test never fails and `{receiver}` stays in {mode} mode after it; "
                           f"to ask which mode it is in, read `{receiver}.training`")
            else:
                message = (f"`{shown}` is a bound method, which is always true: the test never fails; "
                           f"to ask which mode `{receiver}` is in, read `{receiver}.training`")
            source = cst.Module(body=[]).code_for_node(method.value)  # the edit keeps the receiver's own text
            yield Report(expr, message, stmt=site.stmt, fix=_fix(expr, negation, source, training))


def _training_after(call: cst.Call) -> bool | None:
    """The mode a called `eval()`/`train(...)` leaves: False for eval, True for train(), None if not literal."""
    if call.func.attr.value == "eval":
        return False
    if not call.args:
        return True
    value = literal_value(call.args[0].value)
    return value if type(value) is bool else None


def _fix(expr, negation, receiver: str, training: bool | None) -> NodeFix | None:
    """Read the flag instead: `self.eval()` -> `not self.training`, `not self.eval()` -> `self.training`."""
    if training is None:
        return None
    flag = f"{receiver}.training"
    if negation is not None:
        return NodeFix(f"Replace with `{flag if not training else 'not ' + flag}`",
                       (NodeEdit(negation, flag if not training else f"not {flag}", "replace"),),
                       applicability="unsafe")
    replacement = flag if training else f"not {flag}"
    return NodeFix(f"Replace with `{replacement}`", (NodeEdit(expr, replacement, "replace"),), applicability="unsafe")
