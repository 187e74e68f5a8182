"""Frozen parameters: which models the file freezes, where, and how.

`model.requires_grad_(False)`, `p.requires_grad = False` (or `p.detach_()`) for every `p`
of `model.parameters()`, a LightningModule's `freeze()`, a helper of the file that does one
of these to the model it is handed, a class whose constructor freezes itself. A model
frozen whole records no graph of its own (MDL002), and one frozen in part shows
fine-tuning on frozen features, where keeping it in eval mode while its head trains is
the protocol (MDL003).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import chain_runs, dotted, handed_at, literal_value
from modelint.facts.walk import iter_nodes

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
    # (or an attribute of the caller's object that its constructor froze: `self.train_epoch(loader, self.teacher)`)
    return bool(passed) and all((key := dotted(value)) is not None and (
        key in frozen_whole(facts, caller) or (caller is not None and key in frozen_attributes(facts, caller.cls)))
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
        # (and the parts an object it holds freezes in its own constructor: `self.rnd = RNDModel()`, whose
        # `__init__` freezes `self.target`, makes `self.rnd.target` frozen here)
        held = {f"self.{attr}{key[4:]}" for attr in _held_attributes(facts, cls)
                if (owner := facts.flow.held_class(cls.name, attr)) is not None and owner != cls.name
                for key in _frozen_by_constructor(facts, facts.modules.classes.get(owner))}
        cache[cls] = cache[cls] | frozenset(held)
    return cache[cls]


def _held_attributes(facts, cls) -> set[str]:
    return {assign.target.attr.value for assign in facts.collector.attribute_assigns
            if assign.site.cls is cls and type(assign.target.value) is cst.Name and assign.target.value.value == "self"}


def _frozen_by_constructor(facts, cls) -> frozenset[str]:
    if cls is None:
        return frozenset()
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
        elif type(func) is cst.Attribute and type(func.value) is cst.Name and (
                func.attr.value == "detach_" or (func.attr.value == "requires_grad_" and site.node.args
                                                 and literal_value(site.node.args[0].value) is False)) \
                and (loops := [guard for depth, guard in _parameter_loops(site, func.value.value)]):
            # (`for p in teacher.parameters(): p.detach_()`: every parameter cut off, as `requires_grad = False`)
            yield site.site.function, loops[0].iter.func.value, not loops[0].iter.args \
                and loops[0].iter.func.attr.value == "parameters"
        elif type(func) is cst.Attribute and func.attr.value == "requires_grad_" and site.node.args \
                and literal_value(site.node.args[0].value) is False:
            yield site.site.function, unwrap_chain(func.value)[0], True  # (`teacher.eval().requires_grad_(False)`)
            stmt = site.site.stmt  # `self.teacher = teacher.eval().requires_grad_(False)`: the name it is kept as
            for small in stmt.body if type(stmt) is cst.SimpleStatementLine else ():
                if type(small) is cst.Assign and _ends_with(small.value, site.node) and len(small.targets) == 1:
                    yield site.site.function, small.targets[0].target, True
    for assign, guard, whole in _assigned_freezings(facts.collector):
        yield assign.site.function, guard.iter.func.value, whole


def _assigned_freezings(collector):
    """(assignment, loop, whether all of the parameters) for each `p.requires_grad = False` in a loop over
    `x.parameters()` or `x.named_parameters()` and the like."""
    for assign in collector.attribute_assigns:
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
            yield assign, guard, whole


def parameters_frozen_whole(collector, function) -> frozenset[str]:
    """The parameters of `function` whose every weight it freezes itself (`for p in model.parameters():
    p.requires_grad = False`): read from the syntax alone, for its summary (frozen_whole, for the file's own
    findings, also looks through helpers and checks what a receiver is)."""
    return frozenset(guard.iter.func.value.value for assign, guard, _whole in _assigned_freezings(collector)
                     if assign.site.function is function and guard.iter.func.attr.value == "parameters"
                     and not guard.iter.args and type(guard.iter.func.value) is cst.Name
                     and guard.iter.func.value.value in function.param_set)


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


def _parameter_loops(assign, variable: str | None = None):
    """(depth among the guards, loop) for each enclosing `for p in x.parameters()` (or `named_parameters()`)
    whose variable `p.requires_grad = ...` assigns to (or `variable`, for a call site: `p.detach_()`)."""
    variable = variable or assign.target.value.value
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


def frozen_where_bound(facts, function, key: str) -> frozenset[str]:
    """The models frozen whole in the scope that binds the one `function` uses as a free variable: a global of
    the script (`for p in teacher.parameters(): p.detach_()` at module level, `teacher(x)` in `test()`), a local
    of the function a closure is defined in (`scorer.requires_grad_(False)`, then `def score(ids): scorer(ids)`).
    Empty when `function` binds it itself (frozen_whole answers there)."""
    root = key.split(".")[0]
    assigned = facts.flow._assigned_names
    scope = function
    while scope is not None and root not in scope.param_set and root not in assigned.get(scope, ()):
        scope = scope.outer if scope.outer is not None else None
        if scope is None:
            return frozen_whole(facts, None) if root in assigned.get(None, ()) else frozenset()
    return frozen_whole(facts, scope) if scope is not function else frozenset()
