"""Forwards whose grad mode is whatever callers this file cannot see leave: a method's (`infer()`, which a
training script of another file may call), a function's nothing here calls (`evaluate(model, data)`), or one
reached only through such functions. Reports at such forwards carry the names of those entries, so that a
run over the whole project can judge the calls it does see instead (Report.unless_called,
method_callers_unseen, function_callers_unseen).
"""

from __future__ import annotations

from modelint.facts.names import key_root
from modelint.facts.summaries import qualname


def method_callers_unseen(facts, forward) -> str | None:
    """A method's name, when its autograd is on only because no caller is in sight (`SynthesizerTrn.infer`
    that a training script calls as `generator.module.infer(x)`): see Report.method_callers_unseen."""
    function = forward.function
    if function is None or function.cls is None or function.outer is not None or not _grad_left_to_callers(forward):
        return None
    if facts.flow.called_between_training_steps(function):
        return None  # (`fit()` calling `validate()` between its steps: autograd is on there, whoever calls `fit()`)
    entries = _unseen_entries(facts, function, frozenset())
    if entries is None:
        return None
    # (the pass of the method's own phase parameter it runs in: callers elsewhere that pick it, `eval=True`)
    phase = dict(forward.phase).get(next(iter(function.phase_names), None)) if len(function.phase_names) == 1 \
        else None
    if type(phase) in (bool, str) and list(entries) == [function.name]:
        entries = [f"{function.name}({next(iter(function.phase_names))}={phase!r})"]
    return ",".join(dict.fromkeys(entries))


def callers_decide(facts, forward) -> str | None:
    """A function of this file that nothing here calls, whose forward has autograd on only because its
    callers are assumed to leave it on: when another file of the run calls it, the finding goes, and
    that caller is judged with the function's summary instead (silent when it calls under no_grad)."""
    if not grad_guessed_from_unseen_callers(facts, forward):
        return None
    function = forward.function
    head = key_root(forward.key)
    if head not in function.param_set or head in function.receivers:
        return None  # (a model of its own or of its object: a caller elsewhere is not told of it, so cannot judge)
    return qualname(function)


def grad_guessed_from_unseen_callers(facts, forward) -> bool:
    """Is autograd on at the forward only because the function's callers, none of them in this file, are
    assumed to leave it on (no no_grad of its own reaches it)?"""
    return forward.function is not None and _grad_left_to_callers(forward) \
        and not facts.flow.has_callers(forward.function)


def _grad_left_to_callers(forward) -> bool:
    """No no_grad of its own function reaches the forward: its grad mode is whatever the callers leave."""
    grad = forward.grad
    return grad.unknown and not grad.may_enabled and not grad.free_sites


def _unseen_entries(facts, function, seen: frozenset) -> list[str] | None:
    """The methods through which callers this file cannot place reach a method: itself, and the methods of
    the file's classes that call it, up to those nothing here calls (`get_accuracy()` calling `predict()`, a
    model's `infer()` calling each block's `infer()`); None when a caller that is no method is seen."""
    if not facts.flow.has_callers(function):
        return [function.name]
    found = [function.name]  # (public too: `m.predict(x)` may call it directly)
    for caller in facts.flow.syntactic_callers(function):
        if caller is None or caller.cls is None or caller.outer is not None or caller in seen:
            return None
        above = _unseen_entries(facts, caller, seen | {function})
        if above is None:
            return None
        found += above
    return found


def function_callers_unseen(facts, forward) -> tuple[str, ...]:
    """The module-level functions of the file, none of them called here, through which the forward runs with
    the grad mode their callers leave (`eval_model(model, data)` calling `model.predict(batch)`, `test()`
    calling `dev(loader, model)`, whose other caller here runs it under no_grad): the grad mode their callers
    in other files run them in is the forward's."""
    function = forward.function
    if function is None or function.outer is not None:
        return ()
    if function.cls is None:
        roots = _unseen_roots(facts, function, frozenset()) if forward.via is None else None
        return tuple(sorted(roots)) if roots and roots != {function.name} else ()
    if not _grad_left_to_callers(forward):
        return ()
    entries: list[str] = []
    for caller in facts.flow.syntactic_callers(function):
        if caller is None or caller.cls is not None or caller.outer is not None or facts.flow.has_callers(caller) \
                or facts.flow.function_trains(caller):
            return ()
        entries.append(caller.name)
    return tuple(sorted(entries))


def _unseen_roots(facts, function, seen: frozenset) -> set[str] | None:
    """The module-level functions nothing here calls from which a call of `function` with the caller's grad mode
    comes (itself, when nothing here calls it); None when a call here surely runs it with autograd on, or comes
    from a method, the script, or a function that trains."""
    calls = [(caller, grad) for caller, grad, _models in facts.flow.call_sites.get(qualname(function), {}).values()
             if caller is not function]
    if not calls:
        return {function.name}
    roots: set[str] = set()
    for caller, grad in calls:
        if grad.definitely_free:
            continue  # (called here under no_grad: that path records nothing)
        if caller is None or caller.cls is not None or caller.outer is not None or caller in seen \
                or not (grad.unknown and not grad.may_enabled) or facts.flow.function_trains(caller):
            return None
        above = _unseen_roots(facts, caller, seen | {function})
        if above is None:
            return None
        roots |= above
    return roots
