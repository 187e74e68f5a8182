"""Models built grad-free: is the model a forward runs one whose own `forward` records no graph?

A construction of a class whose `forward` turns autograd off (decorated `@torch.no_grad()`, or using its layers
only under no_grad), or off in eval mode (`set_grad_enabled(self.training)`), or that freezes every parameter
when built so (LPIPS, pytorch-fid's InceptionV3), or whose forward picks a grad-free branch by the flag it is
built with; followed through the values a function binds the model to, the models its callers hand it, and the
factories that build it (modelint.facts.factory_constructions).
"""

from __future__ import annotations

from typing import NamedTuple

import libcst as cst

from modelint.facts.factory_constructions import constructions_behind
from modelint.facts.flag_forwards import flag_picks, picks_grad_free
from modelint.facts.freezing import built_frozen
from modelint.facts.modules import held_from_then_on, rewraps, unwrap_chain
from modelint.facts.names import dotted
from modelint.facts.provenance import DEEPCOPY, returned_argument
from modelint.facts.regions import forward_grad
from modelint.facts.scopes import builds_its_class


def built_with_grad_free_forward(facts, forward, in_eval: bool = False) -> bool:
    """Is the model a forward runs built, wherever this function (or, for `self.<attr>`, its class) builds it,
    from a module class whose own `forward` records no graph (this file's, or another's the index knows)?
    Calling such a module records no graph, whatever the caller's grad mode; with `in_eval` (the model is in
    eval mode there), one whose `forward` runs under `set_grad_enabled(self.training)` records none either."""
    key, function = forward.key, forward.function
    via, callee = forward.via, forward.callee
    if via is not None and callee is not None and via.param.startswith("self.") and callee.path == facts.path:
        # (`gen.generate(x)` running `self.model`: the model the helper's class keeps, as that class builds it)
        helper = facts.flow.local_functions.get(callee.qualname)
        if helper is not None and _built_grad_free(facts, helper, in_eval, key=via.param):
            return True
    if "." in key and not key.startswith("self."):
        return False
    if key == "self" and function is not None and function.cls is not None:
        # (`out = self.forward(img)` in a method of a module whose `forward` runs its layers under no_grad)
        grad = forward_grad(facts.imports, function.cls, facts.grad_wrappers, facts.flow)
        return grad == "free" or (grad == "mode" and in_eval)
    return _handed_or_built_grad_free(facts, function, key, in_eval, depth=0)


def _handed_or_built_grad_free(facts, function, key: str, in_eval: bool, depth: int) -> bool:
    if function is not None and key in function.param_set and key not in ("self", "cls"):
        # A parameter: what every call of the function in this file hands it (`evaluate(FrozenFeatures(), ...)`),
        # through callers handing on their own parameter too (`fid()` -> `stats(model)` -> `activations(model)`).
        # (in eval mode there: the model the call hands, as the caller has it)
        passed = facts.flow.passed_at_calls(function, key)
        return bool(passed) and depth < 3 and all(
            _built_grad_free(facts, caller, in_eval, call=value) if type(value) is cst.Call
            else type(value) is cst.Name and _handed_or_built_grad_free(
                facts, caller, value.value,
                in_eval or ((fact := models.get(value.value)) is not None and fact.definitely_eval), depth + 1)
            for caller, value, models in passed)
    return _built_grad_free(facts, function, in_eval, key=key)


def _built_grad_free(facts, function, in_eval: bool, key: str | None = None, call: cst.Call | None = None) -> bool:
    """Is `call`, or every value `function` (or, for `self.<attr>`, its class) binds `key` to, a module class's
    construction whose own `forward` turns autograd off (in eval mode, with `in_eval`), or that freezes every
    parameter of its own when built so (LPIPS, pytorch-fid's InceptionV3)?"""
    if call is not None:
        values = [call]
    elif key.startswith("self."):
        cls = function.cls if function is not None else None
        values = [_AnnotatedClass(found) if (found := _annotated_class(a)) is not None else a.value
                  for a in facts.collector.assigns_to(cls, key)]
    else:
        values = [value for name, value, site in facts.collector.call_assigns
                  if name == key and (site.function is function or site.function is None)]
    if key is not None:
        # (`g = g.cuda()`, `model = load_weight(model, path)`: the same module)
        values = [value for value in values if not rewraps(facts.imports, value, key)
                  and not _hands_back(facts, function, value, key)]
        values = held_from_then_on(values, key)
    values = _through_copies(facts, function, values)
    if not values:
        return False
    built_by = []  # (local class info or None, reference or None, path to ask the index from, the value)
    for value in values:
        if type(value) is cst.Call:
            value = unwrap_chain(value)[0]  # (`Scorer().to(device)`: the object `Scorer()` built, moved)
        built = value.func if type(value) is cst.Call else value.expression if type(value) is _AnnotatedClass else None
        if built is None:
            return False
        if type(built) is cst.Attribute and builds_its_class(facts.modules.classes, built):
            built = built.value  # (`Detector.from_pretrained(path)`: the class's own weights loaded into it)
        local = facts.modules.classes.get(built.value) if type(built) is cst.Name else None
        behind = constructions_behind(facts, value) if local is None and type(value) is cst.Call else None
        # (`build_model(cfg, trainable=False)`: the constructions the factory makes)
        built_by.extend(behind or [(local, None if local is not None else facts.imports.qualify(built), facts.path,
                                    value)])
    for local, qualified, from_path, value in built_by:
        if local is not None:
            grad = forward_grad(facts.imports, local, facts.grad_wrappers, facts.flow)
            if not (grad == "free" or (grad == "mode" and in_eval) or (type(value) is cst.Call and (
                    built_frozen(facts.flow.frozen_classes.get(local.name), value) or picks_grad_free(
                        local, value, facts.imports, facts.grad_wrappers,
                        facts.modules.names.kept_from_the_creator(local))))):
                return False
            continue
        index = facts.flow.index
        if qualified is None or index is None or not (index.forward_without_grad(qualified, from_path) or (
                in_eval and index.forward_without_grad_in_eval(qualified, from_path)) or (
                type(value) is cst.Call and (built_frozen(index.frozen_at_construction(qualified, from_path), value)
                                             or flag_picks(index.free_branch_flag(qualified, from_path), value)))):
            return False
    return True


def _through_copies(facts, function, values: list, depth: int = 0) -> list:
    """The values, a copy (`ema = copy.deepcopy(model)`, `AveragedModel(model)`) standing for what the function
    binds the copied name to: the copy runs the same class's `forward`."""
    out = []
    for value in values:
        if type(value) is cst.Call and value.args and type(value.args[0].value) is cst.Name and depth < 3 \
                and facts.imports.qualify(value.func) in DEEPCOPY:
            name = value.args[0].value.value
            copied = [bound for bound_name, bound, site in facts.collector.call_assigns
                      if bound_name == name and (site.function is function or site.function is None)]
            if copied:
                out.extend(_through_copies(facts, function, held_from_then_on(copied, name), depth + 1))
                continue
        out.append(value)
    return out


def _hands_back(facts, function, value, key: str) -> bool:
    """Is `value` a call of a helper that hands back the module `key` names, as it was handed it?"""
    if type(value) is not cst.Call:
        return False
    summary, _receiver = facts.flow.resolve(value, function)
    given = returned_argument(value, summary) if summary is not None else None
    return given is not None and dotted(given) == key


class _AnnotatedClass(NamedTuple):
    """The class a kept constructor parameter is annotated with, standing for the model it holds."""
    expression: cst.BaseExpression


def _annotated_class(assign) -> cst.BaseExpression | None:
    """`def __init__(self, model: Transformer): self.model = model`: the class the parameter it keeps is
    annotated with (a plain name or a dotted one), as what builds the attribute's model."""
    value, method = assign.value, assign.site.function
    if type(value) is not cst.Name or method is None or value.value not in method.param_set:
        return None
    for param in method.node.params.params:
        if param.name.value == value.value and param.annotation is not None:
            annotation = param.annotation.annotation
            if type(annotation) in (cst.Name, cst.Attribute):
                return annotation
    return None
