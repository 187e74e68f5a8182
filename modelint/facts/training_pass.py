"""Forwards that belong to the training pass they run in, though their output is no loss: the model run
again on the very values its training forward gets in the same pass of the loop (a statistic logged beside
the step), on the arguments its steps get before those steps (the objective measured first), or on the one
tensor the loop fits it to (a deep image prior). These run in training mode by design: no other data is
being evaluated (RULES §3).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.loop_bindings import bound_between, bound_in, input_names
from modelint.facts.names import dotted
from modelint.facts.scopes import loops_around


def fitted_input(facts, forward) -> bool:
    """The output for the very tensor the function's training loop fitted the model to, again and again
    (one image segmented by a network trained on it, a deep image prior), of a model whose only
    mode-dependent layers are BatchNorms: training mode normalises with that tensor's own statistics,
    the ones it was fitted with; no other data is being evaluated."""
    inputs = input_names(forward.call)
    modules = facts.modules
    built = [modules.module_expression(value)[0] for key, value, site in facts.collector.call_assigns
             if key == forward.key and site.function is forward.function]
    built = [construction.call for construction in built if construction is not None]
    if forward.via is not None or not inputs or not built or any(map(modules.kinds.may_sample, built)):
        return False  # a Dropout makes the output random whatever data it was fitted on
    others = [other for flow in facts.flow.flows if flow.function is forward.function for other in flow.all_forwards()]
    for other in others:
        if other is forward or other.key != forward.key or other.via is not None or not other.trains_model:
            continue
        site = facts.call_sites.get(other.call)
        loops = loops_around(site)
        if loops and inputs <= input_names(other.call) and not any(inputs & bound_in(loop) for loop in loops):
            return True
    return False


def _of_the_model(forward) -> bool:
    """A call of the model, or of one of its own methods (`model.calculate_objective(x, y)`), whose arguments
    are the model's inputs (not a helper handed the model and, say, an epoch number)."""
    func = forward.call.func
    return forward.via is None or (type(func) is cst.Attribute and dotted(func.value) == forward.key)


def training_batch_statistic(facts, forward, context: str, depth: int = 0) -> bool:
    """The model run again, in the very pass of the loop that trains it, on the same values its training
    forward gets there (`fake_img = netG(z)` after the discriminator's backward, only to log D(G(z)); a PPO
    update logging its losses on the minibatch before its steps): a statistic of the training step, which
    runs in training mode by design, not an evaluation. (A test
    batch drawn into the same names in between, `points, target = next(test_iter)`, is other data.)"""
    inputs = input_names(forward.call)
    site = facts.call_sites.get(forward.call)
    at = facts.locate(forward.call)
    if not inputs or site is None or at is None or context.startswith("over") or not _of_the_model(forward):
        return False  # (through a method of the model too: `model.calculate_error(x, y)` beside its loss method)
    loops = loops_around(site)
    if not loops or not inputs & bound_in(loops[-1]):
        return False  # (in the loop's pass: the batch it draws, or what the pass computes from it)
    for flow in facts.flow.flows:
        if flow.function is not forward.function:
            continue
        for other in flow.all_forwards():
            where = facts.call_sites.get(other.call)
            before = facts.locate(other.call)
            if other is forward or other.key != forward.key or not _of_the_model(other) or not other.trains_model \
                    or where is None or before is None or before[:2] == at[:2] or not inputs <= input_names(other.call):
                continue
            rebound = bound_between(facts, loops[-1], inputs, *sorted((before[0], at[0])))
            if before[:2] > at[:2]:  # (the loss logged before the steps, in this pass or a loop inside it)
                if not rebound and loops[-1] in loops_around(where):
                    return True
                continue
            if loops_around(where)[-1:] != loops[-1:]:
                continue
            if all(depth == 0 and type(value) is cst.Call and any(
                    f.call is value and training_batch_statistic(facts, f, context, depth + 1)
                    for f in flow.all_forwards()) for value in rebound):
                return True  # (`fake_img = netG(z)` in between: itself such a statistic)
    return False


def objective_on_the_training_batch(facts, forward, context: str) -> bool:
    """The model run, before the steps that train it on them, on the very arguments of its function that
    those steps get (an RL `update(obs, adv)` logging the loss first): the training objective, measured in
    the mode it is trained in, not an evaluation of other data. (A prediction after the last step is one.)"""
    inputs = input_names(forward.call)
    function = forward.function
    at = facts.locate(forward.call)
    if forward.via is not None or not inputs or function is None or at is None or context.startswith("over") \
            or not inputs <= function.param_set:
        return False
    bindings, _ = facts.receivers.scope(function)
    if any(binding.kind != "param" for name in inputs for binding in bindings.get(name, ())):
        return False  # (a batch drawn again into the same name is other data)
    return any(other.key == forward.key and other.via is None and other.trains_model
               and (facts.locate(other.call) or at)[:2] > at[:2] and inputs <= input_names(other.call)
               for flow in facts.flow.flows if flow.function is function for other in flow.all_forwards())
