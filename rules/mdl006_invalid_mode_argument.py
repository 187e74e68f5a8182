from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.name_values import literal_choices
from modelint.facts.names import NOT_LITERAL, dotted, literal_value
from modelint.rule import NodeEdit, NodeFix, Report, Rule

_EVAL_WORDS = {"val", "valid", "validation", "eval", "evaluate", "evaluation", "test", "testing", "inference",
               "predict", "infer"}


class InvalidModeArgument(Rule):
    """
    ## What it does
    Finds `module.train(x)` with a literal that is not a bool (`"val"`, `0`, `1`,
    `None`) or a variable that only ever holds such literals (`for phase in
    ("train", "val"): model.train(phase)`), and `module.eval(...)` called with any
    argument. Only receivers known to be nn.Modules whose class does not define
    its own `train`/`eval` are checked: a continual-learning strategy's
    `eval(stream)` or an RL algorithm's `train(steps)` are theirs to define.

    ## Why is this bad?
    `nn.Module.train(mode)` checks its argument: anything but a bool raises
    `ValueError("training mode is expected to be boolean")`, so the evaluation or
    training that follows never runs. `eval()` takes no argument and
    `model.eval(False)` raises `TypeError` — it does not mean "not eval".

    ## Example
    ```python
    model.train("val")
    model.eval(False)
    ```

    ## Use instead
    ```python
    model.eval()
    model.train()
    ```

    ## Fix safety
    Safe where the intent is unambiguous (`"val"`/`"test"`/`0` mean eval, `"train"`
    and `1` mean train); `eval(x)` with a variable is left to a person.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.train
    """

    code = "MDL006"
    name = "invalid-mode-argument"
    severity = "error"
    summary = "`train()` with a non-bool literal raises ValueError; `eval()` takes no argument."
    fix_safety = "safe"
    fixtures = "MDL006_invalid_mode_argument"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for site in facts.collector.calls:
            call = site.node
            func = call.func
            if type(func) is not cst.Attribute or func.attr.value not in ("train", "eval") or not call.args:
                continue
            receiver = dotted(func.value)
            if receiver is None:
                continue
            function = site.site.function
            # A class with its own train()/eval() (a continual-learning strategy, an RL algorithm, an
            # evaluator) takes what it likes: only nn.Module's own methods are held to a bool.
            if not facts.receivers.of(func.value, function, site.site.stmt).lacks(func.attr.value):
                continue
            if func.attr.value == "eval":
                yield Report(call, f"`{receiver}.eval()` takes no argument: this call raises TypeError; use "
                                   f"`{receiver}.eval()` for eval mode or `{receiver}.train()` for training mode",
                             stmt=site.site.stmt)
                continue
            if len(call.args) != 1 or call.args[0].star:
                continue
            arg = call.args[0]
            if arg.keyword is not None and arg.keyword.value != "mode":
                continue
            value = literal_value(arg.value)
            if type(arg.value) is cst.Name and value is NOT_LITERAL:
                report = self._variable(facts, call, receiver, arg.value.value, site.site)
                if report is not None:
                    yield report
                continue
            if value is NOT_LITERAL or isinstance(value, bool):
                continue
            wanted = _intended(value)
            advice = f"use `{receiver}.{wanted}()`" if wanted else "pass True or False"
            fix = None
            if wanted:
                fix = NodeFix(f"Replace with `{receiver}.{wanted}()`",
                              (NodeEdit(call, f"{receiver}.{wanted}()", "replace"),))
            yield Report(call, f"`{receiver}.train({value!r})` raises ValueError: mode must be a bool; {advice}",
                         stmt=site.site.stmt, fix=fix)

    @staticmethod
    def _variable(facts: FileFacts, call: cst.Call, receiver: str, name: str, where) -> Report | None:
        """`model.train(phase)` where every value `phase` can hold here is a non-bool literal."""
        bindings, _ = facts.receivers.scope(where.function)
        choices = literal_choices(bindings, name, _literal)
        if not choices or any(isinstance(v, bool) for v in choices):
            return None
        shown = " or ".join(dict.fromkeys(repr(v) for v in choices))
        training = [v for v in choices if _intended(v) == "train"]
        advice = f"pass a bool such as `{name} == {training[0]!r}`" if len(training) == 1 else "pass True or False"
        return Report(call, f"`{receiver}.train({name})` raises ValueError: `{name}` is only ever {shown} here and "
                            f"mode must be a bool; {advice}", stmt=where.stmt)


def _literal(node: cst.BaseExpression) -> object:
    value = literal_value(node)
    if value is NOT_LITERAL:
        raise LookupError(node)
    return value


def _intended(value: object) -> str | None:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _EVAL_WORDS:
            return "eval"
        if word in ("train", "training", "fit"):
            return "train"
        return None
    if value == 0 or value is None:
        return "eval"
    if value == 1:
        return "train"
    return None
