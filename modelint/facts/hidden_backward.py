"""Calls we cannot see into that may back-propagate through the outputs they are handed.

An output handed to such a call escapes the data flow: what it is for is unknown (HOOKED), whatever
else happens to it, so it is no evaluation that wants no_grad. Two shapes:

- an object built holding the model, called with the model's output: `cam = GradCAM(model, "layer4")`,
  then `cam(class_idx, scores)` (its hooks on the model back-propagate the scores);
- a call handed the model together with a graph that model's forward recorded:
  `params = gradient_update_parameters(model, inner_loss, params=params)`, a meta-learning inner step
  or a functional optimiser differentiating the loss with respect to the model's parameters.

`HiddenBackward` is mixed into the output uses (modelint.facts.intent); the interpreter gives it the
names each call involves (`models_held_by`, `names_handed`).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.handed_models import calls_binding
from modelint.facts.names import BUILTIN_NAMES, dotted, key_root, value_key
from modelint.facts.plots import plotting_function
from modelint.facts.uses import HOOKED, NONE, OPAQUE, is_parameter
from modelint.facts.value_calls import EVAL_FUNCTIONS, FILE_WRITERS


class HiddenBackward:
    """Mixed into OutputUses: `forwards`, `use`, `imports`, `draws_on`, `models_held_by` and `models_handed`
    come from there."""

    def _escape_to_holder(self, call: cst.Call, result: dict) -> None:
        """`cam(class_idx, scores)` for `cam = GradCAM(model, ...)` and `scores = model(x)`: the object holding the
        model may back-propagate through its output (its hooks on the model), so that output escapes."""
        held = self.models_held_by(call)
        for arg in call.args if held else ():
            origins = result.get(arg.value, NONE)
            if any(token in self.forwards and key_root(self.forwards[token].key) in held for token, _ in origins):
                self.use(origins, HOOKED, level=OPAQUE)

    def _handed_with_its_model(self, call: cst.Call, result: dict) -> None:
        """`params = gradient_update_parameters(model, inner_loss, params=params)`: a call we cannot see into,
        handed a model together with a graph that model's forward recorded, may differentiate that graph with
        respect to the model's parameters, so the output escapes. (Not a library whose functions only read
        values: torch, numpy, logging, a figure, a file.)"""
        models = self.models_handed(call)
        if not models or self._reads_values_only(call.func):
            return
        for arg in call.args:
            origins = result.get(arg.value, NONE)
            if any(level >= OPAQUE and token in self.forwards and not is_parameter(token)
                   and _part_of_any(self.forwards[token].key, models) for token, level in origins):
                self.use(origins, HOOKED, level=OPAQUE)

    def _reads_values_only(self, func: cst.BaseExpression) -> bool:
        if type(func) is cst.Name and func.value in BUILTIN_NAMES:
            return True
        qualified = self.imports.qualify(func) or ""
        return qualified.startswith(("torch.", "numpy.", "logging.", "warnings.")) or qualified in FILE_WRITERS \
            or qualified in EVAL_FUNCTIONS or plotting_function(qualified) or self.draws_on(func)


def _part_of_any(key: str, models: frozenset[str]) -> bool:
    """Is the model `key` one of `models`, or a part of one (`model.encoder` of `model`; not every model an
    object holds, `self.net` of `self`)?"""
    return any(key == model or (key.startswith(model + ".") and model not in ("self", "cls")) for model in models)


def models_held_by(flow, function, call: cst.Call) -> frozenset[str]:
    """The models that the object a call runs was built with, in this function or at module level (`cam =
    GradCAM(model, "layer4")`, then `cam(class_idx, scores)`): such an object hooks into them and may
    back-propagate through what it is handed."""
    name = value_key(call.func)
    if name is None or "." in name or call in flow.local_calls:
        return frozenset()
    bound = calls_binding(flow, function, name)
    # (built by a class: `GradCAMpp(model)`; not made by a method from it, `Decoder.pinv_of(encoder)`)
    return frozenset(key for value in bound if (dotted(value.func) or "").rpartition(".")[2][:1].isupper()
                     for arg in value.args if (key := value_key(arg.value)) is not None)


def names_handed(flow, call: cst.Call) -> frozenset[str]:
    """What may be models among the arguments of a call we cannot see into (`inner_step(model, loss)`): the
    names handed; the output uses keep those that ran the forward whose graph comes with them."""
    if call in flow.local_calls:
        return frozenset()
    return frozenset(key for arg in call.args if (key := value_key(arg.value)) is not None)


def trained_through_a_kept_loss(facts, forward) -> bool:
    """`pred = net(images, targets)`, then `net.loss.backward()` (or `loss = net.loss`, then `loss.backward()`):
    the forward kept its loss on the module (an old detector's `self.loss = ...` in `forward`) and the function
    back-propagates that, after the forward: a training step, whatever the returned output is used for (logged)."""
    function, key = forward.function, forward.key
    backwards = facts.__dict__.get("_backward_calls")
    if backwards is None:  # (function -> its `.backward()` calls, once per file)
        backwards = facts.__dict__["_backward_calls"] = {}
        for site in facts.collector.calls:
            if type(site.node.func) is cst.Attribute and site.node.func.attr.value == "backward":
                backwards.setdefault(site.site.function, []).append(site)
    if forward.via is not None or function not in backwards:
        return False
    bindings = None
    for site in backwards[function]:
        func = site.node.func
        losses = [func.value]
        if type(func.value) is cst.Name:  # (`loss = net.loss`)
            if bindings is None:
                bindings = facts.flow._scope_bindings(function)
            losses = [b.value for b in bindings.get(func.value.value, ()) if b.kind == "assign"]
        if any(type(loss) is cst.Attribute and dotted(loss.value) == key for loss in losses) \
                and (here := facts.locate(forward.call)) is not None \
                and (at := facts.locate(site.node)) is not None and at[:2] > here[:2]:
            return True
    return False
