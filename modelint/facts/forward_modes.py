"""The mode and the grad mode at a forward, as the file shows them: what its function's callers in this file
set, what the object's other methods leave on a trainer's `self.model`, what a template's base elsewhere sets
around its hooks, and what the model's layers make of the mode (no Dropout or BatchNorm, or no weights at all:
a loss module, whatever mode it is in).
"""

from __future__ import annotations

from dataclasses import replace

from modelint.facts.base_shapes import called_by_bases_that_switch_modes
from modelint.facts.free_models import left_by_the_script
from modelint.facts.lattice import ENTRY_MODE, GradFact, ModeFact, is_train_site
from modelint.facts.modules import Dependence
from modelint.facts.reaching_calls import forward_site


def effective_mode(facts, forward) -> ModeFact:
    """The mode at a forward, with what the object's other methods leave for a trainer's `self.model`."""
    mode = _effective_mode(facts, forward)
    function = forward.function
    key = forward.key
    if not mode.parameterless and key.startswith("self.") and key.count(".") == 1 \
            and facts.modules.attribute_parameterless(key[5:]):
        return replace(mode, parameterless=True)  # `self.evaluateL1 = nn.L1Loss()`, whatever mode it is in
    if not mode.parameterless and _helper_runs_a_parameterless_attribute(facts, forward):
        return replace(mode, parameterless=True)  # `self.crit(out, y)` running `self.crit = nn.NLLLoss(w)` in there
    refined = facts.modules.part_refined(key, mode.dependence)
    if refined < mode.dependence:  # `model.head(x)`, a Linear of a model with Dropout
        return replace(mode, dependence=refined)
    head = key.split(".")[0]
    if mode.dependence is Dependence.UNKNOWN and function is not None and head in function.param_set \
            and "[" not in key and facts.flow.entry_dependence(function, head) is Dependence.INDEPENDENT:
        # every caller hands a model without mode layers (so are its parts: `model.m_uv_1(h)`)
        return replace(mode, dependence=Dependence.INDEPENDENT)
    if mode.dependence is Dependence.UNKNOWN and head in facts.flow.global_models \
            and head in facts.flow.free.globals_of(function) \
            and facts.flow.free.global_dependences.get(head) is Dependence.INDEPENDENT:
        return replace(mode, dependence=Dependence.INDEPENDENT)  # `model = TinyVAE()` at the top, Linear layers only
    return mode


def _helper_runs_a_parameterless_attribute(facts, forward) -> bool:
    """A forward through a method of this file's class that runs an attribute of its own object, which that class
    builds without weights (`WeightedXent.__call__` running `self.crit`, an `nn.CrossEntropyLoss(weight)`), or an
    attribute of an object it holds (`self.crit.crit` in `Engine.valid_pass`, `self.crit` an object of such a
    class of the file)."""
    via, callee = forward.via, forward.callee
    if via is None or callee is None or callee.path != facts.path or not via.param.startswith("self."):
        return False
    helper = facts.flow.local_functions.get(callee.qualname)
    cls = helper.cls if helper is not None else None
    *held, last = via.param.split(".")[1:]
    for attribute in held:
        name = facts.flow.held_class(cls.name, attribute) if cls is not None else None
        cls = facts.modules.classes.get(name) if name is not None else None
    return cls is not None and "[" not in last and facts.modules.attribute_parameterless(last, cls=cls)


def _effective_mode(facts, forward) -> ModeFact:
    mode = forward.mode
    if mode.entry and mode.train_sites and not mode.eval_sites and not mode.havoc \
            and (mode.train_sites & facts.flow.assumed_sites
                 or (all(is_train_site(s) for s in mode.train_sites) and facts.flow.function_trains(forward.function))):
        # Trained in a loop above, or put in train() at the top of each pass of the loop that trains it (the
        # loop may not run: then it is the mode the model came in, which a function that trains it expects
        # to be training mode).
        return replace(mode, entry=False)
    if mode == ENTRY_MODE and forward.via is None and forward.function is not None \
            and not facts.flow.has_callers(forward.function) \
            and called_by_bases_that_switch_modes(facts.flow, forward.function):
        return mode  # a template's hook, which its base elsewhere runs in the modes it sets (`self.eval()`)
    if mode == ENTRY_MODE and forward.via is None and forward.function is not None:
        from_callers = facts.flow.mode_from_callers(forward.function, forward.key, forward.phase)
        if from_callers is not None:
            return from_callers  # (what the object's other methods leave does not reach past these calls)
    if mode == ENTRY_MODE:
        objects = facts.flow.objects
        found = objects.at_entry(forward.function, forward.key)
        if found is not None and called_by_bases_that_switch_modes(facts.flow, forward.function):
            # A trainer's hooks (`calculate_train_batch_loss()`, which its base in another file calls after
            # `self.model.train()` in `train_epoch_start()`) run in the modes the base sets around them: what
            # this file's methods leave is not the mode they start in. (Not a method the base never calls, a
            # `predict()` users call after `fit()`: the object's methods decide that one.)
            return mode
        if forward.via is not None and found is not None and (facts.flow.has_callers(forward.function)
                                                               or objects.ever_switched_to_eval(forward.function.cls,
                                                                                                forward.key)):
            # A helper's forward is judged by its caller's mode: what the object's methods leave counts only for
            # a caller nobody here calls, when none of them ever puts the model in eval mode.
            return mode
        if found is None or not found.definitely_train:
            left = objects.left_in_training(forward.function, forward.key)
            if left is not None:
                return ModeFact(train_sites=frozenset({left[1]}))
        if found is not None:
            return found
        left = left_by_the_script(facts.flow, forward.function, forward.key) if forward.via is None else None
        if left is not None:
            return left
    return mode


def effective_grad(facts, forward) -> GradFact:
    """The grad mode at a forward, with what its function's callers in this file do for the unknown part."""
    grad = forward.grad
    if grad.unknown:
        grad = grad.at_entry(facts.flow.entry_grad(forward.function, phase=forward.phase,
                                                   reaching=forward_site(facts, forward)))
    return grad
