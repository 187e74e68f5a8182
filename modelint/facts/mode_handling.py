"""Does a function or a class take care of modes itself?

Two MDL001 findings are reported without seeing the training before them, and only
where the code leaves nobody else to set the mode. These are the facts that show
someone does: a `.eval`/`.train` of anything in the function (called or not), a
`self.training` flag set, a docstring stating who switches the mode, a class whose
methods switch their own object, and parameters that cannot be the model a helper
exists to evaluate (an optional hook, a callable, a class known not to be a module).
Frozen parameters (`p.requires_grad = False` over a model's parameters) show fine-tuning on
frozen features, where keeping the model in eval while its head trains is the protocol.
"""

from __future__ import annotations

import re

import libcst as cst

from modelint.facts.base_shapes import a_visible_base_elsewhere_switches
from modelint.facts.names import chain_runs, dotted, handed_at, literal_value
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
        if handed_only_functions(facts, function, name):
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


_PARAMETER_LISTS = frozenset({"parameters", "named_parameters"})


def frozen_models(facts) -> frozenset[str]:
    """The names (first part of the key) of models the file freezes, whole or in part:
    `for name, p in model.named_parameters(): p.requires_grad = False`, `model.encoder.requires_grad_(False)`."""
    return frozenset(head for _function, receiver, _whole in _freezings(facts) if (head := _head(receiver)))


def frozen_whole(facts, function) -> frozenset[str]:
    """Models `function` freezes whole itself (`model.requires_grad_(False)`, or `p.requires_grad = False`
    for every `p` of `model.parameters()`): with no parameter that requires grad, their forwards record no
    graph of their own."""
    by_function = facts.__dict__.get("_frozen_whole")
    if by_function is None:
        by_function = facts.__dict__["_frozen_whole"] = {}
        for where, receiver, whole in _freezings(facts):
            if whole and (key := dotted(receiver)):
                by_function.setdefault(where, set()).add(key)
        _add_freezing_helpers(facts, by_function)
    return frozenset(by_function.get(function, ()))


def _add_freezing_helpers(facts, by_function: dict) -> None:
    """`freeze_model(model)` with a helper of this file that freezes its parameter whole: the caller's
    model is frozen whole too (one level of helpers). So is `set_requires_grad(model, False)` with a helper
    that sets each parameter's `requires_grad` to its flag, where the call passes False (or the default is)."""
    from modelint.facts.summaries import qualname
    from modelint.facts.summary_effects import bind_arguments

    helpers = {function: keys & set(function.params) for function, keys in list(by_function.items())
               if function is not None and keys & set(function.params)}
    for helper, params in helpers.items():
        for param in params:
            for caller, passed, _models in facts.flow.passed_at_calls(helper, param):
                if (key := dotted(passed)) is not None:
                    by_function.setdefault(caller, set()).add(key)
    for helper, param, flag in _flag_freezings(facts):
        declared = helper.param(flag)  # (None for `*flags`)
        default = declared.default if declared is not None else None
        for call, (caller, _grad, _models) in facts.flow.call_sites.get(qualname(helper), {}).items():
            passed = bind_arguments(helper.params, helper.cls is not None, call)
            if literal_value(passed.get(flag, default)) is False \
                    and (key := dotted(passed.get(param))) is not None:
                by_function.setdefault(caller, set()).add(key)


def _flag_freezings(facts):
    """(helper, model parameter, flag parameter) for `for p in net.parameters(): p.requires_grad = flag` in a
    helper taking both `net` and `flag`: it freezes `net` whole when it is handed False."""
    for assign in facts.collector.attribute_assigns:
        function = assign.site.function
        if function is None or assign.target.attr.value != "requires_grad" or type(assign.value) is not cst.Name \
                or assign.value.value not in function.param_set or type(assign.target.value) is not cst.Name:
            continue
        for _depth, guard in _parameter_loops(assign):
            owner = guard.iter.func.value
            if not guard.iter.args and guard.iter.func.attr.value == "parameters" and type(owner) is cst.Name \
                    and owner.value in function.param_set:
                yield function, owner.value, assign.value.value


def frozen_by_every_caller(facts, function, name: str) -> bool:
    """Does every call of the function in this file hand the parameter a model its caller froze whole
    (`freeze_model(model)`, then `preprocessed_dataset(model, loader)`)? Its forwards record no graph."""
    if function is None or name not in function.param_set:
        return False
    passed = facts.flow.passed_at_calls(function, name)
    return bool(passed) and all((key := dotted(value)) is not None and key in frozen_whole(facts, caller)
                                for caller, value, _models in passed)


def frozen_attributes(facts, cls) -> frozenset[str]:
    """`self.<attr>` models that the class's `__init__` freezes whole (`for p in self.teacher.parameters():
    p.requires_grad = False`) when nothing in the class turns gradients back on: an EMA teacher, a fixed
    feature extractor. Their forwards record no graph of their own in any method."""
    if cls is None:
        return frozenset()
    cache = facts.__dict__.setdefault("_frozen_attributes", {})
    if cls not in cache:
        cache[cls] = _frozen_by_constructor(facts, cls)
    return cache[cls]


def _frozen_by_constructor(facts, cls) -> frozenset[str]:
    init = facts.collector.constructor(cls)
    frozen = {key for key in frozen_whole(facts, init) if key.startswith("self.")} if init is not None else set()
    if frozen and any(_unfreezes(site.node) for site in facts.collector.calls if site.site.cls is cls) \
            or any(assign.site.cls is cls and assign.target.attr.value == "requires_grad"
                   and assign.value is not None and literal_value(assign.value) is not False
                   for assign in facts.collector.attribute_assigns):
        return frozenset()  # (`unfreeze()`: gradients back on somewhere)
    return frozenset(frozen)


def _unfreezes(call: cst.Call) -> bool:
    """`x.requires_grad_()`, `x.requires_grad_(True)`."""
    func = call.func
    return type(func) is cst.Attribute and func.attr.value == "requires_grad_" and (
        not call.args or literal_value(call.args[0].value) is not False)


def _freezings(facts):
    """(function, the module expression, whether all of its parameters) for each freezing in the file:
    `x.requires_grad_(False)`, a LightningModule's `x.freeze()`, or `p.requires_grad = False` in a loop over
    `x.parameters()` (whole) or `x.named_parameters()` and the like."""
    from modelint.facts.modules import unwrap_chain

    lightning = any(qualified.split(".")[0] in ("pytorch_lightning", "lightning")
                    for qualified in facts.imports.bindings.values())
    for site in facts.collector.calls:
        func = site.node.func
        if lightning and type(func) is cst.Attribute and func.attr.value == "freeze" and not site.node.args:
            # LightningModule's `freeze()`: every parameter's `requires_grad` off (and eval mode), unless the
            # class writes a `freeze` of its own
            receiver = facts.receivers.of(func.value, site.site.function, site.site.stmt)
            if receiver.module is True and "freeze" not in receiver.defines:
                yield site.site.function, unwrap_chain(func.value)[0], True
        elif type(func) is cst.Attribute and func.attr.value == "requires_grad_" and site.node.args \
                and literal_value(site.node.args[0].value) is False:
            yield site.site.function, unwrap_chain(func.value)[0], True  # (`teacher.eval().requires_grad_(False)`)
            stmt = site.site.stmt  # `self.teacher = teacher.eval().requires_grad_(False)`: the name it is kept as
            for small in stmt.body if type(stmt) is cst.SimpleStatementLine else ():
                if type(small) is cst.Assign and _ends_with(small.value, site.node) and len(small.targets) == 1:
                    yield site.site.function, small.targets[0].target, True
    for assign in facts.collector.attribute_assigns:
        if assign.target.attr.value != "requires_grad" or assign.value is None \
                or literal_value(assign.value) is not False or type(assign.target.value) is not cst.Name:
            continue
        guards = assign.site.guards
        for depth, guard in _parameter_loops(assign):
            # Every parameter: `parameters()`, or `for k, v in model.named_parameters(): v.requires_grad =
            # False` with no test in between (a test on the name picks some).
            listing = guard.iter.func.attr.value
            whole = not guard.iter.args and (listing == "parameters" or (
                listing == "named_parameters" and not any(type(inner) is cst.If for inner in guards[depth + 1:])))
            yield assign.site.function, guard.iter.func.value, whole


def classes_frozen_at_construction(collector) -> dict[str, str]:
    """Module classes whose `__init__` freezes every parameter of the object (`for p in self.parameters():
    p.requires_grad = False`, LPIPS; or `= requires_grad` with the constructor's flag defaulting to False,
    pytorch-fid's InceptionV3; or the loop under `if not requires_grad:`) -> "flag:position" ("" for none), when
    nothing in the class turns gradients back on. An instance built with the flag off records no graph."""
    out: dict[str, str] = {}
    for assign in collector.attribute_assigns:
        function, cls = assign.site.function, assign.site.cls
        if function is None or cls is None or function.name != "__init__" or function.cls is not cls \
                or assign.target.attr.value != "requires_grad" or type(assign.target.value) is not cst.Name:
            continue
        loops = [guard for _depth, guard in _parameter_loops(assign) if guard.iter.func.attr.value == "parameters"
                 and not guard.iter.args and dotted(guard.iter.func.value) == "self"]
        tests = [guard.test for guard in assign.site.guards if type(guard) is cst.If]
        if not loops or len(tests) > 1:
            continue
        flag = None
        if literal_value(assign.value) is False and not tests:
            flag = ""
        elif literal_value(assign.value) is False and type(tests[0]) is cst.UnaryOperation \
                and type(tests[0].operator) is cst.Not and type(tests[0].expression) is cst.Name:
            flag = tests[0].expression.value  # (`if not requires_grad:`)
        elif type(assign.value) is cst.Name and not tests:
            flag = assign.value.value  # (`param.requires_grad = requires_grad`)
        declared = function.param(flag) if flag else None
        if flag == "":
            out[cls.name] = ""
        elif declared is not None and declared.default is not None and literal_value(declared.default) is False:
            positional = function.positional_params
            position = positional.index(flag) - 1 if flag in positional else -1  # (after `self`; -1: by keyword)
            out[cls.name] = f"{flag}:{position}"
    kept: dict[str, list[bool]] = {}  # (a wrapper keeping `torch.hub.load(...).eval().requires_grad_(False)`)
    for assign in collector.attribute_assigns:
        function, cls = assign.site.function, assign.site.cls
        if function is not None and cls is not None and function.name == "__init__" and type(assign.value) is cst.Call:
            kept.setdefault(cls.name, []).append(chain_runs(assign.value, "requires_grad_", False))
    out.update({name: "" for name, frozen in kept.items() if all(frozen) and name not in out})
    for site in collector.calls:
        if site.site.cls is not None and site.site.cls.name in out and _unfreezes(site.node):
            del out[site.site.cls.name]  # (`unfreeze()`: gradients back on somewhere)
    return out



def built_frozen(spec: str | None, call: cst.Call) -> bool:
    """Does `call` build a class that freezes itself (`spec`: its entry in classes_frozen_at_construction)
    frozen: its flag not passed, or passed False?"""
    if spec is None:
        return False
    if spec == "":
        return True
    flag, _, position = spec.partition(":")
    if any(arg.star for arg in call.args):
        return False
    passed = handed_at(call, flag, int(position))
    return passed is None or literal_value(passed) is False


def _parameter_loops(assign):
    """(depth among the guards, loop) for each enclosing `for p in x.parameters()` (or `named_parameters()`)
    whose variable `p.requires_grad = ...` assigns to."""
    variable = assign.target.value.value
    for depth, guard in enumerate(assign.site.guards):
        if type(guard) is cst.For and type(guard.iter) is cst.Call \
                and type(guard.iter.func) is cst.Attribute and guard.iter.func.attr.value in _PARAMETER_LISTS \
                and variable in {n.value for n in iter_nodes(guard.target) if type(n) is cst.Name}:
            yield depth, guard


def _ends_with(value: cst.BaseExpression, call: cst.Call) -> bool:
    """Is `value` the call, or the call moved or cast after it (`...requires_grad_(False).to(device)`)?"""
    from modelint.facts.torch_api import MODE_PRESERVING_METHODS

    while value is not call and type(value) is cst.Call and type(value.func) is cst.Attribute \
            and value.func.attr.value in MODE_PRESERVING_METHODS | {"eval"}:
        value = value.func.value
    return value is call


def _head(expr: cst.BaseExpression) -> str | None:
    """`model` of `model.encoder.layer1`, `self.model` of `self.model.backbone`."""
    parts = []
    while type(expr) is cst.Attribute:
        parts.append(expr.attr.value)
        expr = expr.value
    if type(expr) is not cst.Name:
        return None
    return f"self.{parts[-1]}" if expr.value == "self" and parts else expr.value


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
