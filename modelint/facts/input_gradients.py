"""Models that need autograd to run at all: a module whose `forward` takes gradients with respect to its
inputs (forces as -dE/dx of a predicted energy, a gradient penalty, an attention map's hook kept for a
relevance map). MDL002 leaves their evaluations alone, in eval mode too: `no_grad` would break them.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.modules import unwrap_chain
from modelint.facts.names import handed_at, literal_value
from modelint.facts.value_calls import GRADIENT_FUNCTIONS
from modelint.facts.scopes import builds_its_class, flags_gating
from modelint.facts.walk import iter_nodes


def input_gradient_classes(flow) -> set[str]:
    """Module classes of this file whose own `forward` takes gradients with respect to its inputs (forces as
    -dE/dx of a predicted energy, a gradient penalty, a hook on an attention map kept for a relevance map), or
    that build a layer of such a class (the transformer whose blocks' attention does): running one needs
    autograd, in eval mode too."""
    modules = flow.modules
    found = {f.cls.name for f in flow.collector.functions if f.name == "forward" and f.cls is not None
             and f.uses_input_gradients and modules.is_module_class(f.cls) and not gradients_asked_by(f)
             and any(_differentiates(flow, method) for method in _forward_and_its_methods(f.cls))}
    # (only classes one of whose methods takes gradients at all: a walk of every forward would cost more)
    differentiating = {f.cls for f in flow.collector.functions if f.uses_gradients and f.cls is not None}
    found |= {info.name for info in differentiating if info.name not in found
              and modules.is_module_class(info) and _differentiates_in_forward(flow, info)}
    index = flow.index
    if not found and index is None:
        return found
    changed = True
    while changed:  # (`VisionTransformer` builds `Block`s, whose `Attention` hooks its attention map)
        changed = False
        for info in flow.collector.classes:
            if info.name in found or not modules.is_module_class(info):
                continue
            for call in info.calls:
                built = modules.project_class(call.func)
                qualified = flow.imports.qualify(call.func) if built is None else None
                if (built is not None and built.name in found) or (
                        qualified is not None and index is not None and index.needs_input_gradients(qualified, flow.path)):
                    found.add(info.name)
                    changed = True
                    break
    return found | _factories_of(flow, found) if found else found


def _differentiates(flow, method: cst.FunctionDef) -> bool:
    """Does the method differentiate something (`torch.autograd.grad`, `.backward()`, a hook on a tensor's
    gradient), or mark its input for it (`x.requires_grad_(True)`, then an attribution library's call), not only
    make a tensor that tracks gradients for later (`torch.tensor(coords, requires_grad=True)` in a featurizer: a
    leaf made so under no_grad as well)?"""
    return any(type(node) is cst.Call and (
        flow.imports.qualify(node.func) in GRADIENT_FUNCTIONS or type(node.func) is cst.Attribute
        and node.func.attr.value in ("backward", "register_hook", "retain_grad", "grad", "requires_grad_"))
        for node in iter_nodes(method.body))


def _forward_and_its_methods(info):
    """The class's `forward` and the methods of its own it hands over to, two calls deep (`return
    self._compute(positions)`)."""
    bodies, seen = [info.methods.get("forward")], {"forward"}
    for _depth in range(3):
        following = []
        for method in filter(None, bodies):
            yield method
            for node in iter_nodes(method.body):
                func = node.func if type(node) is cst.Call else None
                if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self" \
                        and func.attr.value not in seen and func.attr.value in info.methods:
                    seen.add(func.attr.value)
                    following.append(info.methods[func.attr.value])
        bodies = following


def gradients_asked_by(function) -> frozenset[str]:
    """The flags of its own, off unless a caller asks, under which alone the forward takes input gradients
    (`def forward(self, x, register_hook=False): ... if register_hook: attn.register_hook(...)`; an attack
    wrapper's `make_adv=False`): a plain call of the model runs without them. Empty when it takes them on
    every call, or never."""
    flags = {param.name.value for param in function.node.params.params
             if param.default is not None and literal_value(param.default) is False}
    return (flags_gating(function.node.body, flags, _takes_input_gradients) or frozenset()) if flags \
        else frozenset()


def _takes_input_gradients(node) -> bool:
    return (type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _INPUT_GRADIENTS) \
        or (type(node) is cst.Arg and node.keyword is not None and node.keyword.value == "requires_grad")


def asks_for_gradients(facts, forward) -> bool:
    """Does the call hand a model of this file's class the flag under which alone its `forward` takes input
    gradients (`model(x, y, make_adv=True)` for an attack wrapper)? Then that run needs autograd. (The flag
    is asked for with a literal; a parameter, `make_adv=adversarial`, may be on as well.)"""
    call = forward.call
    handed = {arg.keyword.value for arg in getattr(call, "args", ())
              if arg.keyword is not None and literal_value(arg.value) not in (False, None, 0)}
    if not handed:
        return False
    flags = facts.__dict__.get("_gradient_flags")
    if flags is None:  # (class -> the flags its forward takes input gradients under; once per file)
        flags = facts.__dict__["_gradient_flags"] = {
            f.cls.name: asked for f in facts.flow.collector.functions if f.name == "forward" and f.cls is not None
            and f.uses_input_gradients and (asked := gradients_asked_by(f))}
    asking = {name for name, asked in flags.items() if asked & handed}
    key, function = forward.key, forward.function
    if function is not None and key in function.param_set and key not in ("self", "cls"):
        return bool(asking)  # (handed by callers: a model of such a class of the file, as the call says)
    builders = builders_of(facts, forward)
    return bool(builders) and all(type(func) is cst.Name and func.value in asking for func in builders)


_INPUT_GRADIENTS = frozenset({"register_hook", "requires_grad_", "retain_grad", "grad"})


def _factories_of(flow, classes: set[str]) -> set[str]:
    """The module-level functions of this file that build one of `classes` and return it (`vit_lrp(pretrained)`
    returning the `VisionTransformer` it made): their models need input gradients as well."""
    built = {}
    for name, value, site in flow.collector.call_assigns:
        function = site.function
        if function is not None and function.outer is None and function.cls is None:
            built.setdefault(function, {}).setdefault(name, set()).add(_built_class(value))
    out = set()
    for function in flow.collector.functions:
        if function.outer is not None or function.cls is not None:
            continue
        returned = [node.value for node in iter_nodes(function.node.body) if type(node) is cst.Return]
        names = built.get(function, {})
        if returned and all(
                (type(value) is cst.Name and names.get(value.value, {None}) <= classes)
                or (type(value) is cst.Call and _built_class(value) in classes) for value in returned):
            out.add(function.name)
    return out


def _built_class(value: cst.BaseExpression) -> str | None:
    """The class of this file a call builds, through `.to(device)`-like moves (`Net(...).cuda()`)."""
    value = unwrap_chain(value)[0]
    return value.func.value if type(value) is cst.Call and type(value.func) is cst.Name else None



def needs_input_gradients(facts, forward) -> bool:
    """Does the model a forward runs need autograd to run at all: built from a class whose `forward` takes
    input gradients (this file's, or another's the index knows), or, for a parameter, handed by callers this
    file cannot see, in a file whose module classes do?"""
    key, function = forward.key, forward.function
    here = facts.__dict__.get("_input_gradient_classes")
    if here is None:
        here = facts.__dict__["_input_gradient_classes"] = input_gradient_classes(facts.flow)
    if asks_for_gradients(facts, forward):
        return True
    if function is not None and key in function.param_set and key not in ("self", "cls"):
        return bool(here)
    if key == "self" and function is not None and function.cls is not None and function.cls.name in here:
        return True  # (`self.forward(pos)` in its own `predict()`)
    if here and _stored_from_a_parameter(facts, forward):
        return True  # (`self.model = model` in `__init__`: handed by the object's creators, as a parameter is)
    builders = builders_of(facts, forward)
    if not builders:
        return False
    index = facts.flow.index
    for func in builders:
        if type(func) is cst.Name and (func.value in facts.modules.classes or func.value in here):
            if func.value not in here:
                return False
            continue
        if type(func) in (cst.Subscript, cst.Call):
            if not here:  # (`MODELS[name]()`, `get_class(conf.model)(...)`: the class picked at run time)
                return False
            continue  # (it may be one of this file's classes that take input gradients)
        qualified = facts.imports.qualify(func) if func is not None else None
        if qualified is None or index is None or not index.needs_input_gradients(qualified, facts.path):
            return False
    return True


def imported_builders(facts, forward) -> tuple[str, ...] | None:
    """The classes and factories of other files, as imported, that build every model the forward may run
    (`vit_lrp(pretrained=True).cuda()`, `BertForClassification.from_pretrained(path)`): the runner asks the
    finished index whether they need input gradients (a chain of classes over several files)."""
    builders = builders_of(facts, forward)
    refs = tuple(facts.imports.qualify(func) if func is not None else None for func in builders)
    return refs if refs and all(refs) else None


def _stored_from_a_parameter(facts, forward) -> bool:
    """Is the forward's model `self.<attr>` of an object whose class only stores there what its constructor is
    handed (`def __init__(self, model): self.model = model`)?"""
    key, function = forward.key, forward.function
    if not key.startswith("self.") or key.count(".") != 1 or function is None or function.cls is None:
        return False
    assigns = facts.collector.assigns_to(function.cls, key)
    return bool(assigns) and all(
        type(a.value) is cst.Name and a.site.function is not None and a.site.function.name == "__init__"
        and a.value.value in a.site.function.param_set for a in assigns)


def builders_of(facts, forward) -> list:
    """The callee that builds each value bound to the forward's model, a local name (None: not a call)."""
    key, function = forward.key, forward.function
    if key.count(".") == 1 and key.startswith("self.") and function is not None and function.cls is not None:
        # (`self.model = MetaLearner()` in `__init__`, run as `self.model(...)` in `evaluate()`)
        values = [a.value for a in facts.collector.assigns_to(function.cls, key)]
        return [_builder(facts, value) for value in values] if all(value is not None for value in values) else []
    if "." in key:
        return []
    return [_builder(facts, value) for name, value, site in facts.collector.call_assigns
            if name == key and (site.function is function or site.function is None)]


def _builder(facts, value: cst.BaseExpression):
    """The callee that builds a value (`Net(...).cuda()`: `Net`; `Bert.from_pretrained(path)`,
    `Potential.from_checkpoint(path)`: the class itself), None when it is no call."""
    value = unwrap_chain(value)[0]
    func = value.func if type(value) is cst.Call else None
    if type(func) is cst.Attribute and builds_its_class(facts.modules.classes, func):
        func = func.value
    return func


def model_class_unseen(facts, forward) -> bool:
    """Is the model a forward runs of a class no one here builds: a parameter, a module unpickled whole, or
    `self.<attr>` of an object whose class only stores what its creators hand it?"""
    key, function = forward.key, forward.function
    head = key.split(".")[0].split("[")[0]
    if function is not None and head in function.param_set and head not in ("self", "cls"):
        return True
    if (function, head) in facts.flow.free.loaded_modules:
        return True  # (unpickled whole by `torch.load`: whatever class was saved)
    if "." not in key and any(type(func) in (cst.Subscript, cst.Call) for func in builders_of(facts, forward)):
        return True  # (`MODEL_REGISTRY[name](cfg)`: a class picked at run time)
    if key.startswith("self.") and function is not None and function.cls is not None:
        attribute = key.split(".")[1].split("[")[0]

        values = [unwrap_chain(a.value)[0] for a in facts.collector.assigns_to(function.cls, f"self.{attribute}")
                  if a.value is not None]
        return bool(values) and all(type(v) is not cst.Call for v in values)  # (`model.to(device)`: the model)
    return False


def gradients_of_inputs_only(function, call: cst.Call) -> bool:
    """`torch.autograd.grad(gain, x)` for an input the function made require grad (`x.requires_grad_(True)`),
    without `create_graph=True`: the gradient of an input (a saliency map, a latent search), which needs the
    forwards' graphs but trains none of their models."""
    if function is None:
        return False
    inputs = next((arg.value for arg in call.args if arg.keyword is not None and arg.keyword.value == "inputs"), None)
    positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    inputs = inputs if inputs is not None else positional[1] if len(positional) > 1 else None
    names = [element.value for element in inputs.elements] if type(inputs) in (cst.List, cst.Tuple) else [inputs]
    return inputs is not None and all(type(name) is cst.Name and name.value in function.input_gradient_names
                                      for name in names) \
        and not any(arg.keyword is not None and arg.keyword.value == "create_graph"
                    and not (type(arg.value) is cst.Name and arg.value.value == "False") for arg in call.args)


def spread_to_callers(collector) -> None:
    """A function calling a method of this file's classes that takes input gradients (`self.field.normal(pts)`,
    a surface's normals as dSDF/dx; `self._compute(pos, compute_force=f)`, forces as -dE/dx) takes them too:
    the outputs it hands back need autograd, in evaluation as well. Only methods whose name no other method of
    the file's classes has, and one call deep: the caller's own callers decide with its summary."""
    if not any(function.uses_input_gradients for function in collector.functions):
        return
    defined: dict[str, list] = {}
    for function in collector.functions:
        if function.cls is not None and function.outer is None and function.name not in ("forward", "__call__"):
            defined.setdefault(function.name, []).append(function)
    # (gradients with respect to what the caller hands it, `points`, not to a value of its own: a temperature
    # the method calibrates is no input of the caller's)
    takers = {name: methods for name, methods in defined.items()
              if all(m.uses_input_gradients and m.input_gradient_names & m.param_set for m in methods)}
    if not takers:
        return
    marked = []
    for site in collector.calls:
        func, caller = site.node.func, site.site.function
        if caller is None or caller.uses_input_gradients or type(func) is not cst.Attribute:
            continue
        methods = takers.get(func.attr.value)
        if methods and any(_asked_by_the_call(method, site.node) for method in methods):
            marked.append(caller)
    for caller in marked:
        caller.uses_input_gradients = True


def _asked_by_the_call(method, call: cst.Call) -> bool:
    """Does the call run the method's input gradients: always, or under a flag of its own the call may set?"""
    flags = gradients_asked_by(method)
    if not flags:
        return True
    positional = method.positional_params
    for flag in flags:
        position = positional.index(flag) - 1 if flag in positional else -1  # (after `self`)
        handed = handed_at(call, flag, position)
        if handed is not None and literal_value(handed) not in (False, None, 0):
            return True
    return False


def _differentiates_in_forward(flow, info) -> bool:
    """Does the class's `forward`, or a method of its own it hands over to (two calls deep), call
    `torch.autograd.grad` on every call (not only under a flag of its own, off by default: `make_adv=False`):
    a MAML-style inner loop adapting weights on the support set, which no_grad would break (there is no graph
    to differentiate)?"""
    def differentiates(node) -> bool:
        return type(node) is cst.Call and flow.imports.qualify(node.func) in GRADIENT_FUNCTIONS

    for method in _forward_and_its_methods(info):
        flags = {param.name.value for param in method.params.params
                 if param.default is not None and literal_value(param.default) is False}
        if flags_gating(method.body, flags, differentiates) is None:
            return True
    return False
