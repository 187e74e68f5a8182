"""Whether a training step's eval mode is one its callers pick: the phase a function's parameter selects,
read from the calls of the function in this file (see modelint.facts.phases for the phases themselves).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import NOT_LITERAL, dotted, literal_value
from modelint.facts.phases import OMITTED, GIVEN, defaults_to_none, phase_default
from modelint.facts.walk import iter_nodes


def mode_picked_by_callers(mode_flow, function_flow, eval_sites) -> bool:
    """Is the eval mode at a training step the one its callers ask for: set only by `model.train(flag)`
    with the function's phase parameter, whose default trains, while no caller in this file passes a
    false literal for it? (`train_one_epoch(..., set_training_mode=args.train_mode)`: fine-tuning with
    frozen BatchNorm on purpose.) A caller that passes `False` makes the training step a bug again."""
    from modelint.facts.summaries import qualname
    from modelint.facts.summary_effects import bind_arguments

    name, function = function_flow.phase_param, function_flow.function
    if name is None or function is None or not eval_sites:
        return False
    if all(_switch_picked_by_flag(mode_flow, site, name) for site in eval_sites):
        return True  # `if update_head_only: model.eval()  else: model.train()`: the flag picks, on purpose
    for site in eval_sites:
        if not (type(site) is cst.Call and type(site.func) is cst.Attribute and site.func.attr.value == "train"
                and len(site.args) == 1 and type(site.args[0].value) is cst.Name and site.args[0].value.value == name):
            return False
    param = function.param(name)
    if param is None or (param.default is not None and literal_value(param.default) is not True):
        return False
    for call in mode_flow.call_sites.get(qualname(function), {}):
        passed = bind_arguments(function.params, function.cls is not None, call).get(name)
        if passed is not None and literal_value(passed) is not True and literal_value(passed) is not NOT_LITERAL:
            return False
    return True


def _switch_picked_by_flag(mode_flow, site, name: str) -> bool:
    """`model.eval()` in the branch of an `if <flag>:` (or `if not <flag>:`) on the phase parameter whose other
    branch calls `model.train()`."""
    if not (type(site) is cst.Call and type(site.func) is cst.Attribute and site.func.attr.value == "eval"):
        return False
    where = mode_flow.site_of_call.get(site)
    receiver = dotted(site.func.value)
    for guard in reversed(where.site.guards if where is not None else ()):
        if type(guard) is not cst.If:
            continue
        test = guard.test.expression if type(guard.test) is cst.UnaryOperation else guard.test
        if not (type(test) is cst.Name and test.value == name) or guard.orelse is None:
            return False
        return any(type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value == "train"
                   and not node.args and dotted(node.func.value) == receiver
                   for branch in (guard.body, guard.orelse) for node in iter_nodes(branch))
    return False


def eval_branch_not_taken(mode_flow, function_flow, eval_sites, phases: set) -> bool:
    """Does every call here that runs these phases of the function pass another string than the one whose
    branch puts the model in eval mode? (`do_epoch("train", net, loader, optimizer=opt)` and `do_epoch("val",
    net, loader)` of a `do_epoch(mode, net, loader, optimizer=None)` stepping only `if optimizer:`: the call
    that steps never takes `elif mode == "val": net.eval()`.)"""
    from modelint.facts.summaries import qualname
    from modelint.facts.summary_effects import bind_arguments

    function, name = function_flow.function, function_flow.phase_param
    if function is None or name is None or not eval_sites or not phases:
        return False
    calls = [bind_arguments(function.params, function.cls is not None, call)
             for call in mode_flow.call_sites.get(qualname(function), {})]
    running = [passed for passed in calls if _phase_of_call(function, name, passed.get(name)) in phases]
    if not running:
        return False
    for site in eval_sites:
        branch = _string_branch(function, site)
        if branch is None:
            return False
        param, literal = branch
        for passed in running:
            value = passed.get(param)
            given = phase_default(function, param) if value is None else literal_value(value)
            if given == literal or not isinstance(given, str):
                return False
    return True


def _phase_of_call(function, name: str, passed):
    """The value of the phase parameter a call runs with (GIVEN/OMITTED for an optional one)."""
    if defaults_to_none(function, name):
        return OMITTED if passed is None or dotted(passed) == "None" else GIVEN
    return phase_default(function, name) if passed is None else literal_value(passed)


def _string_branch(function, site) -> tuple[str, str] | None:
    """(parameter, literal) of the `if param == "literal":` (or `elif`) whose body holds `site`."""
    for node in iter_nodes(function.node.body):
        if type(node) is cst.If and type(node.test) is cst.Comparison and type(node.test.left) is cst.Name \
                and node.test.left.value in function.param_set and len(node.test.comparisons) == 1 \
                and type(node.test.comparisons[0].operator) is cst.Equal \
                and isinstance(literal := literal_value(node.test.comparisons[0].comparator), str) \
                and any(inner is site for inner in iter_nodes(node.body)):
            return node.test.left.value, literal
    return None
