"""Does a forward run a module with weights, or a callable of another kind that happens to be called?

A forward is a call of something the flow follows; before a rule says anything about its mode or its graph,
the thing called must surely be an nn.Module: put in a mode or built from a module class here, unpickled whole,
trained, annotated or handed as a module, switched by a base class elsewhere. A loss annotated as a parameter,
a processor loaded by `from_pretrained`, a loop variable over plotted activations, a plain class of plain
tensors (a perceptron with its own update rule) are not.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.base_shapes import a_visible_base_elsewhere_switches
from modelint.facts.bindings import flatten
from modelint.facts.lattice import ModeFact
from modelint.facts.mode_handling import defaults_to_a_function
from modelint.facts.modules import held_from_then_on
from modelint.facts.name_values import reaching
from modelint.facts.names import dotted
from modelint.facts.summaries import qualname
from modelint.summary import ProjectIndex


def is_module(facts, forward, mode: ModeFact) -> bool:
    """Is the called thing surely an nn.Module (not a capitalised callable of unknown kind)?"""
    via = forward.via
    if via is not None and via.param.startswith("self.") \
            and facts.modules.attribute_parameterless(via.param.rsplit(".", 1)[1]):
        # A helper method's `self.act(a)` (or `self.model.act(a)` a level up), every such attribute of the
        # file an `nn.ReLU()`: nothing to evaluate, no graph of its own.
        return False
    if via is None and forward.key.count(".") == 1 and forward.key.startswith("self.") and forward.function \
            and facts.modules.attribute_parameterless(forward.key[5:], forward.function.cls):
        return False  # (the class's own `self.drop = nn.Dropout(p)`, whatever another class keeps as `self.drop`)
    if forward.via is None and forward.method is None and _runs_its_own_call(facts, forward, mode):
        return False  # (ultralytics' `YOLO(path)(images)`: its `__call__` runs `predict()`, not `forward`)
    if forward.via is None and _fed_another_frameworks_tensor(facts, forward):
        return False  # `model(paddle.to_tensor(x))`: a network of another framework, whatever its `.eval()`
    if via is None and defaults_to_a_function(facts, forward.function, forward.key):
        return False  # `def run(sets, get_model=default_builder)`: `get_model(net)` runs that function
    if _a_bound_method(facts, forward):
        return False  # `search(q, c, score_function=enc.similarity)`: a method of the object, not a submodule
    if via is not None and _bound_to_non_modules(facts, forward.function, forward.key):
        # `processor = AutoProcessor.from_pretrained(...)` or None, handed to a helper that calls it (whatever
        # the mode of the model handed beside it, which the helper's returned value joins in)
        return False
    if mode.certain and (mode.train_sites or mode.eval_sites):
        return True
    if via is None and handed_plain_objects(facts, forward.function, forward.key):
        return False  # `score_pairs(scorer, pairs)` with `scorer = Scorer(model)`: its `__call__` is judged there
    if mode.origin and facts.receivers.of_qualified(mode.origin, facts.path).module is False:
        return False  # built from a plain class of another file (`PriorBox(object)` with a `forward()` method)
    if _annotated_without_weights(facts, forward.function, forward.key):
        return False  # (`pixel_criterion: nn.L1Loss`, for a PSNR in the training loop)
    func = forward.call.func
    if forward.key == "self" and forward.via is None and _hand_written_model(facts, forward.function):
        return False  # a plain class of plain tensors (a perceptron with its own update rule): no graph
    if "." not in forward.key and forward.key != "self" and _bound_to_a_hand_written_model(facts, forward):
        return False  # (the same, built by the notebook, run here or in a helper it is handed to)
    if forward.via is None and type(func) is cst.Attribute and func.attr.value == "forward":
        return True  # `self.model.forward(x)`: whatever holds the weights, running it records a graph
    if forward.shown_by_detach:
        return True  # an inherited `self.model(x)` whose output the caller detaches: it recorded a graph
    callee = facts.flow.local_functions.get(forward.callee.qualname) \
        if via is not None and forward.callee is not None and via.path == facts.path else None
    if callee is not None and facts.modules.is_module_name(via.param, callee):
        return True  # a helper of this file runs it as the module it is there (`self.embed = nn.Embedding(...)`)
    loaded = facts.flow.free.loaded_modules
    if loaded and ((forward.function, forward.key) in loaded
                   or ((None, forward.key) in loaded and forward.key in facts.flow.global_models)):
        return True  # unpickled whole by `torch.load` and called: a module (the global, where no local hides it)
    return (facts.modules.is_module_name(forward.key, forward.function) and not _a_loop_target(facts, forward)) \
        or facts.flow.is_trained_model(forward.function, forward.key) \
        or _annotated_as_a_module(facts, forward.function, forward.key) \
        or _handed_a_module(facts, forward.function, forward.key) \
        or _switched_by_a_base_elsewhere(facts, forward.function, forward.key)


def _fed_another_frameworks_tensor(facts, forward) -> bool:
    """Is an input of the call a tensor another framework made (`x = paddle.to_tensor(arr)`, `tf.constant(v)`),
    directly or through a name every binding of which in its scope makes one? Or is every input a NumPy array
    (`metric.forward(gt.numpy().ravel(), pred.ravel())`, a confusion matrix's update): no module takes those."""
    positional = [arg.value for arg in forward.call.args if arg.keyword is None and not arg.star]
    if positional and all(_numpy_value(facts, value, forward.function) for value in positional):
        return True
    for arg in forward.call.args:
        values = [arg.value]
        if type(arg.value) is cst.Name:
            values = [value for key, value, site in facts.collector.call_assigns
                      if key == arg.value.value and site.function is forward.function] or [arg.value]
        if all(type(value) is cst.Call and (facts.imports.qualify(value.func) or "").startswith(
                api.OTHER_FRAMEWORK_PREFIXES) for value in values):
            return True
    return False


_ARRAY_METHODS = frozenset({"ravel", "flatten", "reshape", "astype", "copy", "squeeze", "transpose", "tolist"})


def _numpy_value(facts, value, function, depth: int = 0) -> bool:
    """A NumPy array: `.numpy()` of a tensor, what NumPy's functions make, an array's own methods on one, or a
    name every binding of which in the function is one."""
    while type(value) is cst.Call and type(value.func) is cst.Attribute and value.func.attr.value in _ARRAY_METHODS:
        value = value.func.value
    if type(value) is cst.Call:
        func = value.func
        return (type(func) is cst.Attribute and func.attr.value == "numpy" and not value.args) \
            or (facts.imports.qualify(func) or "").startswith("numpy.")
    if type(value) is cst.Name and depth < 2:
        bindings = facts.flow._scope_bindings(function).get(value.value, ())
        return bool(bindings) and all(binding.kind == "assign" and binding.value is not None
                                      and _numpy_value(facts, binding.value, function, depth + 1)
                                      for binding in bindings)
    return False


def _a_loop_target(facts, forward) -> bool:
    """Is the called name the target of a `for` around the call (`for k, act in enumerate(activations):
    draw(act, ...)`)? There it holds what the loop draws, whatever other statements of its scope bind to the
    name (`act = Swish()` at the end of a notebook): those do not show it is a module."""
    site = facts.call_sites.get(forward.call)
    head = forward.key.split(".")[0].split("[")[0]
    return site is not None and any(type(loop) is cst.For and head in map(dotted, flatten(loop.target))
                                    for loop in site.site.guards)


def _bound_to_non_modules(facts, function, key: str) -> bool:
    """Is every binding of the plain name in its scope `None` or what a tokenizer's, processor's or config's
    `from_pretrained(...)` loads (no nn.Module)?"""
    if "." in key or "[" in key or function is None:
        return False
    bindings = facts.flow._scope_bindings(function).get(key, ())
    if not bindings or any(binding.kind != "assign" for binding in bindings):
        return False
    for binding in bindings:
        value = binding.value
        if type(value) is cst.Name and value.value == "None":
            continue
        func = value.func if type(value) is cst.Call else None
        if not (type(func) is cst.Attribute and func.attr.value == "from_pretrained"
                and api.from_pretrained_loads(dotted(func.value) or "") is False):
            return False
    return True


def handed_plain_objects(facts, function, key: str) -> bool:
    """Does every call of the function here hand the parameter a name its caller last binds to an object of a
    plain class of this file (`model = Scorer(model)`, then `score_pairs(model, pairs)`)?"""
    if function is None or "." in key or "[" in key or key not in function.param_set:
        return False
    passed = facts.flow.passed_at_calls(function, key)
    return bool(passed) and all(type(value) is cst.Name and bound_to_plain_object(facts, caller, value.value)
                                for caller, value, _models in passed)


def bound_to_plain_object(facts, function, name: str) -> bool:
    """Is the name's binding in its scope, or the last one wrapping what it held (`model = Scorer(model)`), a
    construction of a plain class of this file, whose `__call__` is no module's forward?"""
    if "." in name or "[" in name:
        return False
    held = held_from_then_on([b.value for b in facts.flow._scope_bindings(function).get(name, ())
                              if b.kind == "assign"], name)
    if len(held) != 1:
        return False
    built = held[0]
    cls = facts.modules.classes.get(built.func.value) if type(built) is cst.Call and type(built.func) is cst.Name \
        and built.func.value not in facts.imports.bindings else None
    return cls is not None and not facts.may_be_module_class(cls)


def _switched_by_a_base_elsewhere(facts, function, key: str) -> bool:
    """`self.model` of a subclass whose base in another file calls `self.model.eval()`: a module."""
    return function is not None and function.cls is not None and key.startswith("self.") and key.count(".") == 1 \
        and facts.modules.has_foreign_base(function.cls) \
        and a_visible_base_elsewhere_switches(facts.flow, function.cls, key)


def _handed_a_module(facts, function, key: str) -> bool:
    """`evaluate(model, ...)` that every call in the run's other files hands a model of one module class."""
    if facts.flow.index is None or function is None or function.outer is not None or key not in function.param_set:
        return False
    handed = facts.flow.index.class_handed(facts.path, qualname(function), key, function.params.index(key))
    return handed is not None and facts.receivers.of_qualified(*handed).module is True


def _annotated_as_a_module(facts, function, key: str) -> bool:
    """`def evaluate(model: SASRec, ...)`: a parameter annotated with a module class (of this file, of the project
    or of a library)."""
    annotation = _annotation(function, key)
    return annotation is not None and facts.receivers.of_annotation(annotation).module is True


def _annotated_without_weights(facts, function, key: str) -> bool:
    """`pixel_criterion: nn.L1Loss`: a parameter annotated with a layer that holds no weights (a loss, an
    activation): running it evaluates no model."""
    annotation = _annotation(function, key)
    built = facts.modules.construction(cst.Call(func=annotation)) if annotation is not None \
        and type(annotation) in (cst.Name, cst.Attribute) else None
    return built is not None and built.parameterless


def _annotation(function, key: str) -> cst.BaseExpression | None:
    if function is None or key not in function.param_set:
        return None
    params = function.node.params
    param = next((p for p in (*params.posonly_params, *params.params, *params.kwonly_params)
                  if p.name.value == key), None)
    return param.annotation.annotation if param is not None and param.annotation is not None else None


def _hand_written_model(facts, function) -> bool:
    """A method of a class with no base at all whose body builds no module, no parameter and no tensor that
    requires grad: a model written out in plain tensors with its own update rule records no autograd graph."""
    return _hand_written_class(facts, function.cls if function is not None else None)


def _bound_to_a_hand_written_model(facts, forward) -> bool:
    """A forward of a name (or a helper's forward of what the caller hands it) whose binding reaching the call
    builds a hand-written model of this file (`model = Adaline1(n)`, then `train(model, ...)`); for a parameter,
    what every call of the function here hands it."""
    function = forward.function
    if function is not None and forward.key in function.param_set and forward.via is None:
        from modelint.facts.summary_effects import bind_arguments  # (it reads the flow's summaries: a cycle)

        calls = facts.flow.call_sites.get(qualname(function), {})
        handed = [bind_arguments(function.params, False, call).get(forward.key) for call in calls]
        return bool(handed) and all(
            type(arg) is cst.Name and _hand_written_at(facts, arg.value, call, caller)
            for arg, (call, (caller, _grad, _models)) in zip(handed, calls.items()))
    return _hand_written_at(facts, forward.key, forward.call, function)


def _hand_written_at(facts, name: str, call: cst.Call, function) -> bool:
    site = facts.call_sites.get(call)
    bindings, parents = facts.receivers.scope(function)
    found = bindings.get(name)
    if site is None or not found:
        return False
    small = site.site.stmt.body[0] if type(site.site.stmt) is cst.SimpleStatementLine else site.site.stmt
    reached = reaching(found, small, parents)
    return all(b.kind == "assign" and type(b.value) is cst.Call
               and _hand_written_class(facts, facts.modules.project_class(b.value.func)) for b in reached)


def _hand_written_class(facts, cls) -> bool:
    if cls is None or cls.node.bases:
        return False
    for call in cls.calls:
        name = dotted(call.func) or ""
        if facts.modules.construction(call) is not None or name.endswith(_GRAD_MAKERS) \
                or any(arg.keyword is not None and arg.keyword.value == "requires_grad" for arg in call.args):
            return False
        if name.startswith("self.") and (name.count(".") > 1 or name[5:] not in cls.methods):
            return False  # it runs an object it holds (a model handed to its constructor)
    return True


_GRAD_MAKERS = ("requires_grad_", "Parameter", "retain_grad")


def _runs_its_own_call(facts, forward, mode: ModeFact) -> bool:
    """Is the model called (`model(x)`) of a module class that defines `__call__` itself, in this file or in
    another the index shows (ultralytics' `Model.__call__` runs `predict()`, with its own mode and no_grad)?
    Calling it runs that method, not the module's forward."""
    if type(forward.call.func) is not cst.Name:
        return False
    classes = set()
    for name, value, site in facts.collector.call_assigns:
        if name == forward.key and site.function is forward.function and type(value) is cst.Call:
            classes.add(value.func)
    if not classes:
        return False
    index = facts.flow.index
    for func in classes:
        project = facts.modules.project_class(func)
        if project is not None:
            if not any("__call__" in facts.modules.classes[name].methods
                       for name in facts.flow.class_and_bases(project.name) if name in facts.modules.classes):
                return False
            continue
        qualified = facts.imports.qualify(func)
        found = index.resolve_shape(qualified, facts.path) if index is not None and qualified else None
        if found is None:
            return False
        pending = [(qualified, facts.path)]
        if not any(shape is not None and "__call__" in shape[0].defines
                   for reference, shape in ProjectIndex.bases_of(index, pending) if reference is not None):
            return False
    return True


def _a_bound_method(facts, forward) -> bool:
    """Is the model key `enc.similarity`, where `enc` is an object of a class of this file (or of its bases
    here) that defines a method `similarity`? Handed on and called, it runs that method."""
    owner, _, attr = forward.key.rpartition(".")
    if not owner or "." in owner or "[" in forward.key or owner in ("self", "cls"):
        return False
    flow = facts.flow
    cls = flow.class_of_name(owner, forward.function)
    return cls is not None and any(f"{name}.{attr}" in flow.local_functions for name in flow.class_and_bases(cls))
