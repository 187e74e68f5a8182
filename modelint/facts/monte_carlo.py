"""Monte Carlo dropout: training mode kept on purpose, so that each pass or copy gets its own dropout
mask (RULES §3, deliberate training-mode inference). Written as a loop, the forward repeated on the same
input (`[model(x) for _ in range(n)]`); or as one batched pass, the same input repeated along the batch
(`torch.repeat_interleave(s, 5, dim=0)`, `x.repeat(k, 1)`), the forward run once on the copies, and the
spread of its outputs taken (`.var(dim=1)`, `.std(...)`).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.loop_bindings import bound_in, comprehensions_around, input_names
from modelint.facts.names import dotted
from modelint.facts.scopes import loops_around
from modelint.facts.walk import iter_nodes

_REPEATS = frozenset({"repeat_interleave", "repeat", "tile", "expand"})
_SPREADS = frozenset({"var", "std", "var_mean", "std_mean"})


def variance_of_repeated_copies(facts, forward) -> bool:
    """Is the forward's input a repeated copy of one input, made in its function, and the spread of its output
    taken there (in the same statement, or through the name the output is bound to)?"""
    call = forward.call
    if forward.via is not None:  # (a helper of this file runs it: `set_threshold(s)` through `_uncertainty(s)`)
        call = forward.via.node if isinstance(forward.via.node, cst.Call) else None
    site = facts.call_sites.get(call) if call is not None else None
    function = site.site.function if site is not None else None
    if function is None:
        return False
    inputs = {node.value for arg in call.args for node in iter_nodes(arg.value) if type(node) is cst.Name}
    body = list(iter_nodes(function.node.body))
    repeated = any(type(node) is cst.Assign and len(node.targets) == 1
                   and dotted(node.targets[0].target) in inputs and _repeats(node.value) for node in body)
    if not repeated and not any(_repeats(arg.value) for arg in call.args):
        return False
    bound = {dotted(t.target) for small in getattr(site.site.stmt, "body", ()) if type(small) is cst.Assign
             for t in small.targets} - {None}
    for node in body:
        if type(node) is cst.Call and _spread(facts, node):
            inner = list(iter_nodes(node))
            if any(n is call for n in inner) or any(type(n) is cst.Name and n.value in bound for n in inner):
                return True
    return False


def _repeats(value: cst.BaseExpression) -> bool:
    if type(value) is not cst.Call:
        return False
    func = value.func
    return type(func) is cst.Attribute and func.attr.value in _REPEATS


def _spread(facts, call: cst.Call) -> bool:
    func = call.func
    if type(func) is cst.Attribute and func.attr.value in _SPREADS:
        return True
    qualified = facts.imports.qualify(func) or ""
    return qualified.rpartition(".")[2] in _SPREADS and qualified.startswith("torch.")


def repeated_sample(facts, forward) -> bool:
    """Is the forward repeated on the same input, as Monte Carlo sampling is (`[model(x) for _ in
    range(n)]`)? A loop that binds one of its inputs anew (each frame of a video, each batch) is
    inference over data, which `train()` does not make deliberate."""
    # (or a call on the way to it, in a helper of this file: `for _ in range(n): draws.append(predict_once(net, x))`)
    via = forward.via
    calls = [forward.call, *(via.chain if via is not None else ()), *([via.node] if via is not None else [])]
    return any(_repeated_call(facts, call) for call in calls if isinstance(call, cst.Call))


def _repeated_call(facts, call: cst.Call) -> bool:
    site = facts.call_sites.get(call)
    if site is None:
        return False
    inputs = input_names(call)
    loops = comprehensions_around(site, call)
    # (an epoch loop that trains the model between its passes does not repeat one model's forward: the
    # validation inside it, `model.train()` before each batch included, sees new weights every pass)
    loops += [loop for loop in loops_around(site) if not _trains_in(facts, loop)]
    return any(not (inputs & bound_in(loop)) for loop in loops)


def _trains_in(facts, loop: cst.CSTNode) -> bool:
    """Does the loop run a backward pass or an optimizer step?"""
    return any(type(node) is cst.Call and type(node.func) is cst.Attribute and (
        node.func.attr.value == "backward" or (node.func.attr.value == "step" and (
            facts.flow.is_optimizer(dotted(node.func.value) or "") or facts.flow.handed_one_optimizer(node))))
        for node in iter_nodes(loop))
