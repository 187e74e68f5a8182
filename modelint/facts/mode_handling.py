"""Does a function or a class take care of modes itself?

Two MDL001 findings are reported without seeing the training before them, and only
where the code leaves nobody else to set the mode. These are the facts that show
someone does: a `.eval`/`.train` of anything in the function (called or not), a
`self.training` flag set, a docstring stating who switches the mode, a class whose
methods switch their own object, and parameters that cannot be the model a helper
exists to evaluate (an optional hook, a callable, a class known not to be a module).
(Frozen parameters: modelint.facts.freezing.)
"""

from __future__ import annotations

import re

import libcst as cst

from modelint.facts.base_shapes import a_visible_base_elsewhere_switches
from modelint.facts.names import dotted
from modelint.facts.naming import names_a_function
from modelint.facts.walk import iter_nodes


def class_sets_own_mode(facts, cls) -> bool:
    """Does a method of the class, or of a base it inherits (here, or in another file the index shows),
    switch the object's own mode (`self.eval()`, `self.train(False)`: a `fit()` ending in `self.eval()`)?"""
    lineage = set(facts.flow.class_and_bases(cls.name))
    for site in facts.collector.calls:
        func = site.node.func
        if site.site.cls is not None and site.site.cls.name in lineage and type(func) is cst.Attribute \
                and func.attr.value in ("eval", "train") and type(func.value) is cst.Name \
                and func.value.value == "self":
            return True
    return a_visible_base_elsewhere_switches(facts.flow, cls, "self")


def classes_self_may_be(facts, cls, methods: set[str]) -> list:
    """The class, and the classes of this file deriving from it that override none of `methods`: what `self`
    may be in a method of the class that reaches a forward through `methods` (a library's base classifier
    whose `predict()` runs `self(x)`, the layers built by each concrete model)."""
    found = [cls]
    for name in sorted(facts.flow.subclasses(cls.name)):
        info = facts.modules.classes.get(name)
        if info is not None and not methods & _defined_below(facts, info, cls.name):
            found.append(info)
    return found


def _defined_below(facts, info, base: str) -> set[str]:
    """The methods the class `info`, and its bases in this file that derive from `base`, define."""
    out: set[str] = set()
    for name in facts.flow.class_and_bases(info.name):
        between = facts.modules.classes.get(name)
        if name != base and between is not None and base in facts.flow.class_and_bases(name):
            out.update(between.methods)
    return out


def defaults_to_a_function(facts, function, key: str) -> bool:
    """Is `key` a parameter whose default is a function of the file (`def run(sets, get_model=default_builder)`),
    and does no call of the function here hand it anything else? Calling it runs that function, no module."""
    if function is None or key not in function.param_set:
        return False
    declared = function.param(key)
    default = declared.default if declared is not None else None
    if type(default) is not cst.Name or default.value in facts.modules.classes \
            or facts.flow.local_reference(default, function.outer) is None:
        return False
    return all(passed is None or (type(passed) is cst.Name and passed.value == default.value)
               for _caller, passed, _models in facts.flow.passed_at_calls(function, key))


def optional_or_callable(facts, function, name: str) -> bool:
    """A parameter that defaults to None (an optional hook: `callback=None`), or is annotated as a
    callable or a class known not to be a module (a `Protocol`): not the model a helper evaluates. With
    no caller in sight, a name that says function (`func`, `score_fn`) breaks the tie: data run through a
    distance function is no evidence of a model."""
    if names_a_function(name):
        return True
    params = function.node.params
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.name.value != name:
            continue
        if type(param.default) is cst.Name and param.default.value == "None":
            return True
        if handed_only_functions(facts, function, name) or defaults_to_a_function(facts, function, name):
            return True
        if param.annotation is None:
            return False
        annotation = param.annotation.annotation
        return any(type(n) is cst.Name and n.value == "Callable" for n in iter_nodes(annotation)) \
            or facts.receivers.of_annotation(annotation).module is False
    return False


def handed_only_functions(facts, function, name: str) -> bool:
    """Does every call of the function in this file hand the parameter a function: a `def` of the file, a
    lambda, or what a factory returns that hands back a function it defines (`val_step_fn =
    make_val_step_fn(model, loss_fn)`, then `mini_batch(device, val_loader, val_step_fn)`)?"""
    passed = facts.flow.passed_at_calls(function, name)
    return bool(passed) and all(value is not None and _a_function(facts, value, caller)
                                for caller, value, _models in passed)


def _a_function(facts, expr: cst.BaseExpression, scope) -> bool:
    """A lambda, or a name that calls a function of this file (a def, or the closure a factory of the file
    hands back: `val_step_fn = make_val_step_fn(model, loss_fn)`)."""
    return type(expr) is cst.Lambda or (type(expr) is cst.Name and facts.flow.local_reference(expr, scope) is not None)


def minds_modes(function) -> bool:
    """Does the function deal with modes itself: a `.eval`/`.train` of anything (called or, by mistake,
    not: MDL005 reports that), or a docstring stating who sets the mode (`the caller calls model.eval()`)?"""
    for node in iter_nodes(function.node.body):
        if type(node) is cst.Attribute and node.attr.value in ("eval", "train"):
            return True
        if type(node) is cst.Assign and any(
                type(t.target) is cst.Attribute and t.target.attr.value == "training" for t in node.targets):
            return True  # `self.training = False`: MDL010's
    return states_mode_contract(function.node)


def states_mode_contract(node: cst.FunctionDef | cst.ClassDef) -> bool:
    """Does its docstring say who sets the mode (`the model must already be in eval mode`)?"""
    return _MODE_CONTRACT.search(node.get_docstring() or "") is not None


_MODE_CONTRACT = re.compile(r"\beval\(\)|\beval[- ]mode|\bevaluation mode|\binference mode", re.IGNORECASE)


def only_switches_modes(node: cst.FunctionDef) -> bool:
    """A body of nothing but `x.eval()` / `x.train(...)` calls (a docstring, `return self` aside), maybe
    picked by an `if`/`else` on a flag (`def set_mode_train(self, train=True): if train: ... else: ...`)."""
    return _switches_only(node.body) is True


def _switches_only(body) -> bool | None:
    """True: only mode switches (at least one); None: nothing at all; False: something else."""
    if type(body) is cst.SimpleStatementSuite:  # `def eval(self): self.net.eval()`
        statements = [body]
    else:
        statements = list(body.body)
    switched = None
    for statement in statements:
        if type(statement) is cst.If:
            parts = [_switches_only(statement.body)]
            orelse = statement.orelse
            if orelse is not None:
                parts.append(_switches_only(orelse.body) if type(orelse) is cst.Else
                             else _switches_only(cst.IndentedBlock(body=[orelse])))
            if False in parts:
                return False
            switched = switched or (True in parts) or None
            continue
        smalls = statement.body if type(statement) in (cst.SimpleStatementLine, cst.SimpleStatementSuite) else None
        if smalls is None:
            return False
        for small in smalls:
            if type(small) is cst.Expr and type(small.value) is cst.Call \
                    and type(small.value.func) is cst.Attribute and small.value.func.attr.value in ("eval", "train"):
                switched = True
            elif not (type(small) in (cst.Pass, cst.Return) or
                      (type(small) is cst.Expr and type(small.value) in (cst.SimpleString, cst.ConcatenatedString))):
                return False
    return switched


_GRAD_AND_MODE_NAMES = frozenset({"no_grad", "inference_mode", "enable_grad", "set_grad_enabled", "eval", "train",
                                  "backward", "step", "detach", "requires_grad_", "forward"})


def grad_and_mode_text(function) -> tuple:
    """What a method's text says about grad and mode: its decorators, the grad/mode calls it makes, and
    whether it runs its own object (`self(x)`)."""
    decorators = tuple(sorted(dotted(d.func if type(d) is cst.Call else d) or "?" for d in function.decorators))
    names = set()
    for node in iter_nodes(function.node.body):
        if type(node) is cst.Call:
            name = node.func.attr.value if type(node.func) is cst.Attribute else \
                node.func.value if type(node.func) is cst.Name else None
            if name in _GRAD_AND_MODE_NAMES or name == "self":
                names.add(name)
    return decorators, tuple(sorted(names))
