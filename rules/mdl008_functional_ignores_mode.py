from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts import torch_api as api
from modelint.facts.names import argument, has_star_args, literal_value
from modelint.facts.gates import Gates
from modelint.facts.walk import iter_nodes
from modelint.rule import NodeEdit, NodeFix, Report, Rule
from modelint.textutil import code_of


_BATCH_NORM = "torch.nn.functional.batch_norm"


class FunctionalIgnoresMode(Rule):
    """
    ## What it does
    Inside an `nn.Module`, finds functional calls that take a `training` flag but are
    not given one: `F.dropout`, `F.dropout1d/2d/3d`, `F.alpha_dropout`,
    `F.feature_alpha_dropout`, `F.rrelu`, `F.batch_norm`; and
    `F.scaled_dot_product_attention` with a `dropout_p` that is not switched off
    outside training. Outside a module, an always-on dropout in evaluation code.
    A dropout that only runs in training mode or on the caller's request is left
    alone: behind `if self.training and p > 0:`, after `if not self.training:
    return x`, with a rate that is zero outside training (`p = self.p if
    self.training else 0.0`), under a flag parameter that is off by default
    (`def forward(self, x, sample=False)`, MC dropout), or at a rate the caller
    passes (a parameter without default, or zero by default: a sampler's
    `noise_dropout=0.`). A dropout written for eval mode alone (under `if not
    self.training:`, after `if self.training: return ...`) samples on purpose
    (Monte-Carlo dropout at test time). `F.batch_norm` given
    statistics computed from the batch itself needs no flag either.

    ## Why is this bad?
    Functional calls do not know the module's mode. `F.dropout` defaults to
    `training=True`, so it keeps dropping activations after `model.eval()`:
    evaluation is random. `F.alpha_dropout`, `F.rrelu` and `F.batch_norm` default to
    `training=False`, so they never act during training either. SDPA applies
    `dropout_p` whenever it is non-zero.

    ## Example
    ```python
    def forward(self, x):
        return F.dropout(self.fc(x), p=0.1)
    ```

    ## Use instead
    ```python
    def forward(self, x):
        return F.dropout(self.fc(x), p=0.1, training=self.training)
    ```

    ## Fix safety
    Safe: passing `training=self.training` makes the call follow `train()`/`eval()`.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.dropout.html
    - https://pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html
    """

    code = "MDL008"
    name = "functional-ignores-mode"
    severity = "error"
    summary = "A functional dropout/normalisation call ignores the module's train/eval mode."
    fix_safety = "safe"
    fixtures = "MDL008_functional_ignores_mode"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        gates = None
        for site in facts.collector.calls:
            qualified = site.qualified
            if qualified not in api.FUNCTIONAL_TRAINING_FLAG and qualified != api.SDPA:
                continue
            call = site.node
            if has_star_args(call):
                continue
            gates = gates or Gates(facts.receivers)
            where = site.site
            in_module = facts.in_module_class(where)
            short = code_of(call.func)
            if qualified == api.SDPA:
                arg = argument(call, "dropout_p", api.SDPA_DROPOUT_INDEX)
                if arg is None or gates.zero_outside_mode(arg.value, where.function, where.stmt) \
                        or gates.guarded(call, where):
                    continue
                if in_module or self._evaluation(facts, site):
                    yield Report(call, f"`{short}` applies dropout_p in eval mode too: attention stays random "
                                       f"after eval(); pass `dropout_p=p if self.training else 0.0`",
                                 stmt=where.stmt)
                continue
            index, default = api.FUNCTIONAL_TRAINING_FLAG[qualified]
            if argument(call, "training", index) is not None:
                continue
            if default:
                # Always on unless told: fine where the module's mode (or the caller) already decides
                # whether it runs, or its rate is zero outside training.
                rate = argument(call, "p", 1)
                if gates.guarded(call, where) or (rate is not None and (
                        gates.zero_outside_mode(rate.value, where.function, where.stmt)
                        or _rate_every_caller_passes(rate.value, where.function))):
                    continue
            elif qualified == _BATCH_NORM and _explicit_statistics(facts, call, where):
                continue  # normalising with statistics computed right here: the flag changes nothing
            if in_module and default and gates.only_in_eval(call, where):
                continue  # dropout written for eval mode alone: sampled on purpose (Monte-Carlo dropout)
            if in_module:
                if default:
                    message = (f"`{short}` defaults to training=True and keeps dropping in eval mode; "
                               f"pass `training=self.training`")
                else:
                    message = (f"`{short}` defaults to training=False and never acts, even in training; "
                               f"pass `training=self.training`")
                yield Report(call, message, stmt=where.stmt, fix=_add_flag(call, "self.training"))
            elif default and self._evaluation(facts, site):
                yield Report(call, f"`{short}` defaults to training=True: this evaluation code drops activations "
                                   f"at random; pass `training=False` or remove the dropout",
                             stmt=where.stmt, fix=_add_flag(call, "False"))

    @staticmethod
    def _evaluation(facts: FileFacts, site) -> bool:
        return facts.in_grad_free_region(site.site) or facts.is_evaluation_function(site.site.function)


def _add_flag(call: cst.Call, value: str) -> NodeFix | None:
    if not call.args:
        return None
    return NodeFix(f"Pass `training={value}`", (NodeEdit(call.args[-1].value, f", training={value}", "after"),))


def _explicit_statistics(facts: FileFacts, call: cst.Call, where) -> bool:
    """`F.batch_norm(x, mean, var)` with statistics computed in this function (`x.mean(0)`), not running
    buffers (`self.running_mean`) or whatever a caller passes."""
    bindings, _ = facts.receivers.scope(where.function)
    for keyword, index in (("running_mean", 1), ("running_var", 2)):
        arg = argument(call, keyword, index)
        if arg is None:
            return False
        value = arg.value
        if type(value) is cst.Name:
            found = bindings.get(value.value) or []
            if not found or any(b.kind != "assign" or not _computed(b.value) for b in found):
                return False
        elif not _computed(value):
            return False
    return True


def _computed(value: cst.BaseExpression) -> bool:
    """An expression that computes something (a call, arithmetic), not a stored attribute or a name."""
    return type(value) in (cst.Call, cst.BinaryOperation, cst.Subscript) and not (
        type(value) is cst.Subscript and type(value.value) is cst.Attribute)


def _rate_every_caller_passes(rate: cst.BaseExpression, function) -> bool:
    """`F.dropout(x, drop_prob)` with `drop_prob` a parameter without default, or one that is zero by
    default (a sampler's `noise_dropout=0.`): each call of the function chooses the rate (none unless it
    asks), by design, whatever the module's mode. So does arithmetic on parameters without default alone
    (`p=1 - keep_rate`, the evaluation passing `keep_rate=1.0`)."""
    if type(rate) is not cst.Name:
        parts = list(iter_nodes(rate))
        names = [node for node in parts if type(node) is cst.Name]
        return bool(names) and all(type(node) in _RATE_ARITHMETIC for node in parts) and all(
            (param := _parameter(function, name.value)) is not None and param.default is None for name in names)
    param = _parameter(function, rate.value)
    return param is not None and (param.default is None or literal_value(param.default) in (0, 0.0)
                                  and literal_value(param.default) is not False)


# What a rate computed from the caller's arguments alone is made of.
_RATE_ARITHMETIC = (cst.Name, cst.Integer, cst.Float, cst.BinaryOperation, cst.UnaryOperation, cst.Add,
                    cst.Subtract, cst.Multiply, cst.Divide, cst.Minus, cst.Plus, cst.Power, cst.LeftParen,
                    cst.RightParen, cst.SimpleWhitespace)


def _parameter(function, name: str):
    """The parameter `name` of the function, or of a function enclosing it (a closure reads its enclosing
    function's parameter)."""
    while function is not None:
        param = function.param(name)
        if param is not None:
            return param
        function = function.outer
    return None
