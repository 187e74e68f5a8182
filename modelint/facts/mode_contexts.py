"""Context managers that switch modes: `with eval_mode(model, head):`, `with self._set_training_mode(False):`.

A context manager of the project (its summary says what it does before its `yield`) or
a library's (MONAI's `eval_mode`/`train_mode`) puts the models it is given, or the ones
its object holds, in a mode for the body, and restores the modes they had on exit; some
also turn autograd off, or set it by their argument (`set_grad_enabled(training)`).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.lattice import GRAD_ENABLED, GradFact, ModeFact, mode_of_call
from modelint.facts.names import dotted, literal_value, value_key
from modelint.facts.phases import phase_default
from modelint.facts.scopes import flags_gating
from modelint.facts.state import State
from modelint.facts.walk import iter_nodes


class ModeContexts:
    """Mixed into CallEffects (which provides `flow` and `out`)."""

    def mode_context(self, item: cst.WithItem, state: State) -> list[tuple[str, ModeFact]]:
        """`with eval_mode(model, head):`: the models it switches, with the fact to restore on exit; and the
        grad mode of its body, when the context manager runs it under no_grad (or as its argument says)."""
        expr = item.item
        if type(expr) is not cst.Call:
            return []
        self.flow.last_unresolved = None
        summary, _ = self.flow.resolve(expr, self.out.function)
        if summary is None:
            summary = self.flow.constructor_of(expr)  # (a context manager written as a class)
        if summary is None and self.flow.last_unresolved is not None:
            self.flow.unresolved.add(self.flow.last_unresolved)  # another file's context manager may say
        library = api.MODE_CONTEXTS.get(self.flow.imports.qualify(expr.func) or "") if summary is None else None
        grad = context_grad_of(summary, expr) if summary is not None else "free" if library and library[1] else None
        if grad == "free":
            state.grad = GradFact(free_sites=frozenset({item}))
        elif grad == "enabled":
            state.grad = GRAD_ENABLED
        elif grad == "unknown":
            state.grad = GradFact(free_sites=frozenset({item}), may_enabled=True)
        switched = context_mode_of(summary, expr) if summary is not None \
            else library[0] if library is not None else None
        if switched is None:
            return []
        restore = []
        for key in _switched_keys(summary, expr, self.flow.path):
            key = state.canonical(key)
            restore.append((key, state.fact(key)))
            if switched == "unknown":  # (a mode the caller's argument picks, and we cannot read it)
                state.havoc(key)
            else:
                state.put(key, state.fact(key).switched(switched, expr))
        return restore


def _switched_keys(summary, call: cst.Call, path: str) -> list[str]:
    """The models a context manager's call switches: the arguments it is handed, the attributes of its
    object it switches itself (`self._set_training_mode(False)` switching `self.network`), and the module-level
    models of this file it switches."""
    keys = [key for arg in call.args if arg.keyword is None and (key := value_key(arg.value)) is not None]
    owner = value_key(call.func.value) if type(call.func) is cst.Attribute else None
    for switched in (summary.context_switches if summary is not None else ()):
        if not switched.startswith("self."):
            if summary.path == path:
                keys.append(switched)  # (a module-level model of this file: `net.eval()` in `eval_mode()`)
        elif owner is not None and summary.is_method:
            keys.append(owner + switched[4:])
    return keys


def context_effects(flow, function) -> tuple[str | None, str | None, tuple[str, ...]]:
    """A `@contextmanager`: ("eval", ...) when it calls `.eval()` (or `.train(False)`) before its `yield` (or
    in the yielded value: `yield [n.eval() for n in nets]`), or yields inside another context manager that
    puts its models in eval mode, and restores a mode after it; ("by:<param>", ...) when the mode it sets
    is its parameter's (`model.train(mode=train)`: the caller's argument decides, see context_mode_of());
    (..., "free", ...) when it yields inside `with torch.no_grad():` (monai's `eval_mode(*nets)` does both),
    (..., "by:<param>", ...) inside `with torch.set_grad_enabled(training):`; and the attributes of its object
    and the module-level models it switches before its `yield` (`self.network`, `net`)."""
    if not any((flow.imports.qualify(d) or "").endswith("contextmanager") for d in function.decorators):
        return None, None, ()

    def switches(node, method: str) -> bool:
        return type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value == method

    def train_argument(node) -> cst.BaseExpression | None:
        args = [arg for arg in node.args if arg.keyword is None or arg.keyword.value == "mode"]
        return args[0].value if len(node.args) == 1 and args else None

    seen_yield = False
    evals = restores = False
    grad = chosen_by = None
    own: list[str] = []
    for node in iter_nodes(function.node.body, source_order=True):
        if type(node) is cst.With and any(type(inner) is cst.Yield for inner in iter_nodes(node.body)):
            for item in node.items:
                effect = flow.grad_effect(item.item)
                if effect == "free":
                    grad = "free"
                elif effect == "unknown" and type(item.item) is cst.Call and item.item.args \
                        and type(flag := item.item.args[0].value) is cst.Name and flag.value in function.param_set:
                    grad = grad or f"by:{flag.value}"  # (`with torch.set_grad_enabled(training): yield`)
            if any(_nested_context_mode(flow, item.item, function) == "eval" for item in node.items):
                evals = restores = True  # (`with _in_mode(model, train=False): yield`)
        if type(node) is cst.Yield:
            evals = evals or (not seen_yield and node.value is not None
                              and any(switches(inner, "eval") for inner in iter_nodes(node.value)))
            seen_yield = True
        elif switches(node, "eval") and not seen_yield:
            evals = True
            own.append(dotted(node.func.value) or "")
        elif switches(node, "train") and not seen_yield and (argument := train_argument(node)) is not None:
            own.append(dotted(node.func.value) or "")
            if literal_value(argument) is False:
                evals = True
            elif type(argument) is cst.Name and argument.value in function.param_set:
                chosen_by = argument.value
        elif switches(node, "train") and seen_yield:
            restores = True
    globals_used = flow.free.globals_of(function)
    switched = tuple(key for key in dict.fromkeys(own)
                     if key.startswith("self.") or key.split(".")[0] in globals_used)
    if chosen_by is not None and restores and not evals:
        return f"by:{chosen_by}", grad, switched
    return ("eval" if evals and restores else None), grad, switched


def class_context_effects(flow, function) -> tuple[str | None, str | None, object]:
    """A context manager written as a class, read at its `__init__` (whose parameters a `with` binds):
    ("eval", ...) when its `__enter__` switches models to eval mode (`m.train(False)` for each model it keeps)
    and its `__exit__` switches them back; (..., "free", ...) when its `__enter__` enters `torch.no_grad()`
    (`self.ctx.__enter__()` of one its `__init__` made, or `torch.set_grad_enabled(False)`), and
    (..., "off-by:<param>", default) when it does so only under `if self.<flag>:`, the flag the caller passes
    (`eval_mode(encoder, no_grad=True)`)."""
    cls = function.cls
    enter = flow.local_functions.get(f"{cls.name}.__enter__") if cls is not None else None
    leave = flow.local_functions.get(f"{cls.name}.__exit__") if cls is not None else None
    if function.name != "__init__" or enter is None or leave is None:
        return None, None, None
    kept = {target.attr.value: statement.value for statement in iter_nodes(function.node.body)
            if type(statement) is cst.Assign and len(statement.targets) == 1
            and type(target := statement.targets[0].target) is cst.Attribute and dotted(target.value) == "self"}

    def disables_grad(node) -> bool:
        if type(node) is not cst.Expr or type(call := node.value) is not cst.Call:
            return False
        if type(call.func) is cst.Attribute and call.func.attr.value == "__enter__" and not call.args:
            entered = call.func.value
            if type(entered) is cst.Attribute and dotted(entered.value) == "self":
                entered = kept.get(entered.attr.value)  # (`self.no_grad_ctx = torch.no_grad()` in `__init__`)
            return entered is not None and flow.grad_effect(entered) == "free"
        return flow.grad_effect(call) == "free"  # (`torch.set_grad_enabled(False)`)

    evals = any(type(node) is cst.Call and mode_of_call(node) == "eval" for node in iter_nodes(enter.node.body)) and any(
        type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value == "train"
        for node in iter_nodes(leave.node.body))
    flags = {name: value.value for name, value in kept.items()
             if type(value) is cst.Name and value.value in function.param_set}

    def flag_of(test: cst.BaseExpression) -> str | None:
        return test.attr.value if type(test) is cst.Attribute and dotted(test.value) == "self" else None

    gates = flags_gating(enter.node.body, set(flags), disables_grad, flag_of)
    grad = "free" if gates is None else f"off-by:{flags[next(iter(gates))]}" if len(gates) == 1 else None
    default = phase_default(function, grad[7:]) if grad is not None and grad.startswith("off-by:") else None
    return ("eval" if evals else None), grad, default


def _nested_context_mode(flow, expr: cst.BaseExpression, function) -> str | None:
    """The mode a context manager of the project puts its models in, for this call of it."""
    if type(expr) is not cst.Call:
        return None
    summary, _ = flow.resolve(expr, function)
    return context_mode_of(summary, expr) if summary is not None else None


def context_mode_of(summary, call: cst.Call) -> str | None:
    """`summary.context_mode` for this call: "by:<param>" is read from the argument the call passes it
    (`_in_mode(model, train=False)`: eval; a value we cannot read: "unknown")."""
    flag = _argument_flag(summary, summary.context_mode, call)
    return flag if flag in (None, "unknown") or not isinstance(flag, bool) else "train" if flag else "eval"


def context_grad_of(summary, call: cst.Call) -> str | None:
    """`summary.context_grad` for this call: "free", or for "by:<param>" the argument the call passes
    (`self._set_training_mode(False)`: "free"; True: "enabled"; a value we cannot read: "unknown"); for
    "off-by:<param>" (`eval_mode(net, no_grad=True)`) "free" when it is True, nothing when it is False."""
    said = summary.context_grad
    if said is not None and said.startswith("off-by:"):
        flag = _argument_flag(summary, "by:" + said[7:], call, summary.context_flag_default)
        return "free" if flag is True else None if flag is False else "unknown"
    flag = _argument_flag(summary, said, call)
    return flag if flag in (None, "unknown") or not isinstance(flag, bool) else "enabled" if flag else "free"


def _argument_flag(summary, said: str | None, call: cst.Call, default=None):
    """`said` itself, or for "by:<param>" the boolean the call passes that parameter ("unknown" if unread;
    `default` when the call leaves it out)."""
    if said is None or not said.startswith("by:"):
        return said
    from modelint.facts.summary_effects import bind_arguments

    passed = bind_arguments(summary.params, summary.is_method, call).get(said[3:])
    flag = literal_value(passed) if passed is not None else default
    return flag if isinstance(flag, bool) else "unknown"
