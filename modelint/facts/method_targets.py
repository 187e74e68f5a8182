"""Which method of this file's classes a call on an object runs.

`self.policy_old.act(state)` where every assignment of `self.policy_old` builds one class of
the file (held_object_class); `model.predict(x)` where every binding of `model`, in the
scope Python finds it in, builds one (bound_object_class; `model = DataParallel(model)`
keeps it); `model.score_sp_po(s, p, o)` on a name shown to be a module, of a method that
exactly one class of the file defines, all of them modules (_only_module_method);
`Wrapper.from_pretrained(path)`, a classmethod or staticmethod called on the class. (The class a local name
is bound to: modelint.facts.bound_classes.)
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.accessors import property_aliases
from modelint.facts.bound_classes import BoundClasses, object_name
from modelint.facts.modules import unwrap_chain
from modelint.facts.names import dotted
from modelint.facts.returned_closures import ReturnedClosures
from modelint.facts.scopes import FunctionInfo
from modelint.facts.walk import iter_nodes


class MethodTargets(ReturnedClosures, BoundClasses):
    """Mixed into CallGraph: `self.modules`, `self.imports`, `self.collector`, `self.local_functions`,
    `self.class_and_bases()` and `self._scope_bindings()` come from there."""

    def _only_module_method(self, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> str | None:
        """`model.score_sp_po(s, p, o)` on a name shown to be a module here (`model.eval()`), of a method that
        one module class of this file defines and no other class does: that method."""
        defining = self._method_owners.get(func.attr.value) if type(func) is cst.Attribute else None
        if not defining or func.attr.value.startswith("__"):
            return None
        receiver = dotted(func.value)
        if receiver is None or receiver.split(".")[0] in ("self", "cls") or not defining or len(defining) != 1 \
                or not (self.modules.is_module_name(receiver, enclosing) or self._module_part(receiver, enclosing)):
            return None
        if "." not in receiver and self._built_from_imported_classes(receiver, enclosing):
            return None  # (`model = AttentionModel(...)` from another package: its own `greedy_decode`)
        found = f"{defining[0]}.{func.attr.value}"
        return found if found in self.local_functions else None  # (a class nested in a function is named otherwise)

    def _built_from_imported_classes(self, name: str, enclosing: FunctionInfo | None) -> bool:
        """Is every binding of `name` in the function a construction of a class it imports (and this file does
        not define), moved or not (`AttentionModel(40, 30).cuda()`)?"""
        from modelint.facts.modules import unwrap_chain

        bound = self._scope_bindings(enclosing).get(name) or []
        values = [unwrap_chain(b.value)[0] if b.kind == "assign" and b.value is not None else None for b in bound]
        built = [dotted(value.func) if type(value) is cst.Call else None for value in values]
        return bool(built) and all(
            called is not None and called.split(".")[0] in self.imports.bindings
            and called.split(".")[0] not in self.modules.classes and called.rsplit(".", 1)[-1][:1].isupper()
            for called in built)

    def _module_part(self, receiver: str, enclosing: FunctionInfo | None) -> bool:
        """`model.codec` of a name shown to be a module, where this file's classes build `self.codec` as one."""
        parent, dot, name = receiver.rpartition(".")
        return bool(dot) and "[" not in receiver and self.modules.is_module_name(parent, enclosing) \
            and self.modules.sets_attribute(name) and self.modules.submodule_dependence(name) is not None

    @cached_property
    def _method_owners(self) -> dict[str, list[str]]:
        """Method name -> the classes of this file defining it (module classes only when all are)."""
        owners: dict[str, list[str]] = {}
        for info in self.modules.classes.values():
            for name in info.methods:
                owners.setdefault(name, []).append(info.name if self.modules.is_module_class(info) else "?")
        return {name: found for name, found in owners.items() if "?" not in found and name not in _MODULE_API}

    def _class_level_method(self, func: cst.BaseExpression) -> str | None:
        """`Wrapper.from_pretrained(path)`: a classmethod or staticmethod of this file's class (or its bases)."""
        if not (type(func) is cst.Attribute and type(func.value) is cst.Name) \
                or func.value.value not in self.modules.classes or func.value.value in self.imports.bindings:
            return None
        for cls_name in self.class_and_bases(func.value.value):
            function = self.local_functions.get(f"{cls_name}.{func.attr.value}")
            if function is not None:
                kinds = {dotted(d) for d in function.decorators}
                return f"{cls_name}.{func.attr.value}" if kinds & {"classmethod", "staticmethod"} else None
        return None

    def held_object_class(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """`self.policy_old.act(state)`: the class of this file that every assignment of `self.policy_old`
        in the enclosing class builds (`self.policy_old = ActorCritic(...)`), if there is exactly one."""
        func = call.func
        if not (type(func) is cst.Attribute and type(func.value) is cst.Attribute
                and type(func.value.value) is cst.Name and func.value.value.value == "self"):
            return None
        while enclosing is not None and enclosing.cls is None:
            enclosing = enclosing.outer
        if enclosing is None:
            return None
        attribute = func.value.attr.value
        if (enclosing.cls.name, attribute) not in self._held_classes:
            # (`self.model`, a property handing back `self._model`)
            attribute = self.property_aliases.get(enclosing.cls, {}).get(f"self.{attribute}", "self." + attribute)[5:]
        built = self._held_classes.get((enclosing.cls.name, attribute))
        if built is None:  # `self.model = model` in `__init__`, every `Agent(ResNetLike(), ...)` here handing one
            return self._stored_parameter_class(enclosing.cls, attribute)
        if len(built) > 1:
            # `self.actor = ActorBeta()` or `ActorGaussian()`: `self.actor.mean(s)` runs the one that has `mean`
            built = {name for name in built if any(f"{cls_name}.{func.attr.value}" in self.local_functions
                                                   for cls_name in self.class_and_bases(name))}
        if len(built) > 1:
            # `GaussianPolicy()` or `DeterministicPolicy()`, each with a `sample` that runs its own forward the
            # same way: either one stands for both
            return self.alike_class(built, func.attr.value)
        return next(iter(built)) if len(built) == 1 else None

    def held_class(self, cls_name: str, attribute: str) -> str | None:
        """The one class of this file every assignment of `self.<attribute>` in the class `cls_name` builds."""
        built = self._held_classes.get((cls_name, attribute))
        return next(iter(built)) if built is not None and len(built) == 1 else None

    def _method_of(self, cls_name: str, method: str) -> FunctionInfo | None:
        return next((self.local_functions[key] for name in self.class_and_bases(cls_name)
                     if (key := f"{name}.{method}") in self.local_functions), None)

    def _stored_parameter_class(self, cls, attribute: str) -> str | None:
        """The one class of this file whose objects every construction of `cls` here hands the `__init__`
        parameter it stores as `self.<attribute>` (and stores nothing else there)."""
        init, stored = self._stored_parameter(cls, attribute)
        if stored is None:
            return None
        annotated = self._annotated_parameter_class(cls, attribute)
        if annotated is not None:
            return annotated  # (`def __init__(self, extractor: GradExtractor)`: the class it is typed as)
        calls = [(site.node, site.site.function) for site in self.collector.calls
                 if type(site.node.func) is cst.Name and site.node.func.value == cls.name]
        return self._handed_class(init, stored, calls=calls)

    def _stored_parameter(self, cls, attribute: str) -> tuple:
        """(`__init__`, the parameter it stores as `self.<attribute>` and nothing else), or (…, None)."""
        init = self.collector.constructor(cls)
        stored = [a.value for a in self.collector.assigns_to(cls, f"self.{attribute}")]
        if init is None or len(stored) != 1 or type(stored[0]) is not cst.Name or stored[0].value not in init.param_set:
            return init, None
        return init, stored[0].value

    def _annotated_parameter_class(self, cls, attribute: str) -> str | None:
        """The class of this file the `__init__` parameter stored as `self.<attribute>` is annotated with."""
        init, stored = self._stored_parameter(cls, attribute)
        param = init.param(stored) if stored is not None else None
        annotated = dotted(param.annotation.annotation) if param is not None and param.annotation else None
        return annotated if annotated in self.modules.classes else None

    def element_class(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """`for flow in reversed(self.flows): z = flow.infer(z)` in a method, where every assignment of
        `self.flows` in the class is a container of one class of this file (`nn.ModuleList([FlowStep(d) for _ in
        range(n)])`): that class."""
        name, through_module = object_name(call.func)
        if name is None or through_module or enclosing is None or enclosing.cls is None:
            return None
        loops = [b.value for b in self._scope_bindings(enclosing).get(name, ())]
        if len(loops) != 1 or not all(b.kind == "for" for b in self._scope_bindings(enclosing).get(name, ())):
            return None
        source = loops[0]
        while type(source) is cst.Call and type(source.func) is cst.Name and source.func.value in ("reversed", "list") \
                and len(source.args) == 1:
            source = source.args[0].value
        key = dotted(source)
        if key is None or not key.startswith("self.") or key.count(".") != 1:
            return None
        found = set()
        for assign in self.collector.attribute_assigns:
            if assign.site.cls is enclosing.cls and dotted(assign.target) == key:
                found.add(self._element_of(assign.value))
        return found.pop() if len(found) == 1 and None not in found else None

    def _element_of(self, value) -> str | None:
        """The one class of this file a container written here holds (`nn.ModuleList([Block(c) for c in cs])`,
        `[Head(), Head()]`)."""
        if type(value) is cst.Call and value.args and self.imports.qualify(value.func) in ("torch.nn.ModuleList",
                                                                                          "torch.nn.Sequential"):
            value = value.args[0].value if len(value.args) == 1 \
                else cst.List([cst.Element(a.value) for a in value.args])
        if type(value) in (cst.ListComp, cst.GeneratorExp):
            items = [value.elt]
        elif type(value) in (cst.List, cst.Tuple):
            items = [element.value for element in value.elements]
        else:
            return None
        if not items or not all(type(item) is cst.Call and type(item.func) is cst.Name for item in items):
            return None
        classes = {item.func.value for item in items}
        found = classes.pop() if len(classes) == 1 else None
        return found if found in self.modules.classes else None

    def handed_object_class(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """`eval_model.get_outputs(x)` where `eval_model` is a parameter of the enclosing function and every
        call of it in this file hands an object of one class of the file (`calculate_moments(loader,
        eval_model)` with `eval_model = LoadEvalModel(device)`, or the constructor written in the call)."""
        name, through_module = object_name(call.func)
        if enclosing is None or name is None:
            return None
        return self._handed_class(enclosing, name, through_module=through_module,
                                  method=call.func.attr.value if type(call.func) is cst.Attribute else None)

    def _handed_class(self, function: FunctionInfo, name: str, depth: int = 0, calls=None,
                      through_module: bool = False, method: str | None = None) -> str | None:
        """The one class of this file whose objects every call of `function` (or each of `calls`) hands its
        parameter `name`, the caller's own parameter followed up a few calls (`train(Retrieval())` ->
        `encode_data(model, loader)`); wrapped in DataParallel and the like when reached `through_module`."""
        from modelint.facts.summary_effects import bind_arguments

        if name not in function.param_set or name in ("self", "cls") or depth > 3 \
                or any(b.kind != "param" for b in self._scope_bindings(function).get(name, ())):
            return None
        calls = self._plain_calls_of.get(function) if calls is None else calls
        if not calls:
            return None
        classes = set()
        for node, caller in calls:
            given = unwrap_chain(bind_arguments(function.params, function.cls is not None, node).get(name))[0]
            passed = self._wrapped(given)
            if type(passed) is cst.Call and type(passed.func) is cst.Name and passed.func.value in self.modules.classes:
                classes.add(passed.func.value if passed is not given or not through_module else None)
            elif type(passed) is cst.Name and caller is not None and passed.value in caller.param_set:
                classes.add(self._handed_class(caller, passed.value, depth + 1, through_module=through_module,
                                               method=method))
            elif type(passed) is cst.Name:
                classes.add(self._class_bound_to(passed.value, caller, set(), through_module, method=method)
                            or (self._attribute_alias_class(passed.value, caller) if not through_module else None))
            elif (held := self._attribute_class(passed, caller)) is not None and passed is given:
                classes.add(held)  # `self._generate_predictions(self.model, loader)`
            else:
                return None
        return classes.pop() if len(classes) == 1 and None not in classes else None

    def _attribute_alias_class(self, name: str, scope: FunctionInfo | None) -> str | None:
        """`model = self.model` in a method, the only binding of `model` there: the class held there."""
        if scope is None or scope.cls is None:
            return None
        bindings = self._scope_bindings(scope).get(name, ())
        if len(bindings) != 1 or bindings[0].kind != "assign":
            return None
        return self._attribute_class(unwrap_chain(_either_branch(bindings[0].value))[0], scope)

    def _attribute_class(self, node: cst.BaseExpression, scope: FunctionInfo | None) -> str | None:
        """`self.model` in a method of a class that builds one class of this file there, whatever method
        assigns it (`self.model = Net()` in `__init__`)."""
        if not (type(node) is cst.Attribute and type(node.value) is cst.Name and node.value.value == "self"):
            return None
        while scope is not None and scope.cls is None:
            scope = scope.outer
        built = self._held_classes.get((scope.cls.name, node.attr.value)) if scope is not None else None
        if built is None and scope is not None:  # (`self.extractor = extractor`, typed in `__init__`)
            return self._annotated_parameter_class(scope.cls, node.attr.value)
        return next(iter(built)) if built is not None and len(built) == 1 and None not in built else None

    @cached_property
    def property_aliases(self) -> dict:
        """class -> {`self.model`: `self._model`}: see modelint.facts.accessors."""
        return property_aliases(self.collector)

    @cached_property
    def _plain_calls_of(self) -> dict:
        """Function of this file -> (call, caller) for each call that names it (`evaluate(...)`, `self.validate(
        ...)`): the calls found without knowing what any object is."""
        out: dict = {}
        for site in self.collector.calls:
            named = self.local_reference(site.node.func, site.site.function)
            callee = self.local_functions.get(named) if named is not None else None
            if callee is not None:
                out.setdefault(callee, []).append((site.node, site.site.function))
        return out

    @cached_property
    def _held_classes(self) -> dict[tuple[str, str], set]:
        """(class, attribute) -> the classes of this file its methods construct into `self.<attribute>`
        (`None` among them for anything else assigned there)."""
        held: dict[tuple[str, str], set] = {}
        copies = []
        # (a factory method's call is resolved on the way, and resolving `self.rec(x)` asks for these classes:
        # while they are worked out, such calls of held objects are not resolved)
        self.__dict__["_finding_held_classes"] = True
        try:
            for key, value, site in self.collector.call_assigns:
                if site.cls is None or not key.startswith("self.") or key.count(".") != 1:
                    continue
                node, _chain = unwrap_chain(value)  # `ActorCritic(...).to(device)`
                if _chain and dotted(node) == key:
                    continue  # `self.ar = self.ar.cuda()`: the same object, moved
                copied = _copied_attribute(node, self.imports)
                if copied is not None:  # `self.best = copy.deepcopy(self.model)`: of the class `self.model` holds
                    copies.append((site.cls.name, key[5:], copied))
                    continue
                name = node.func.value if type(node) is cst.Call and type(node.func) is cst.Name \
                    else self._factory_method_class(node, site.function)
                held.setdefault((site.cls.name, key[5:]), set()).add(name if name in self.modules.classes else None)
        finally:
            self.__dict__["_finding_held_classes"] = False
        for cls_name, attribute, copied in copies:
            held.setdefault((cls_name, attribute), set()).update(held.get((cls_name, copied), {None}))
        return held

    def _factory_method_class(self, node: cst.BaseExpression, enclosing: FunctionInfo | None) -> str | None:
        """`self.build_model()`, a method of the object (or the one subclass here that writes a hook its base
        leaves abstract) every `return` of which builds one class of this file (`return Parser(args)`)."""
        if not (type(node) is cst.Call and type(node.func) is cst.Attribute and dotted(node.func.value) == "self"):
            return None
        local = self.runs_local(node, enclosing)
        function = self.local_functions.get(local) if local is not None else None
        if function is None:
            return None
        returned = {unwrap_chain(r.value)[0] if r.value is not None else None
                    for r in iter_nodes(function.node.body) if type(r) is cst.Return}
        names = {n.func.value if type(n) is cst.Call and type(n.func) is cst.Name else None for n in returned}
        return names.pop() if len(names) == 1 else None


# nn.Module's own methods, which a class may override but every module has: `model.eval()` is not a
# call of the one class here that overrides it.
_MODULE_API = frozenset({"forward", "train", "eval", "to", "cuda", "cpu", "parameters", "named_parameters",
                         "state_dict", "load_state_dict", "modules", "children", "apply", "zero_grad",
                         "extra_repr", "reset_parameters", "half", "float", "double", "requires_grad_"})


def _either_branch(value: cst.BaseExpression) -> cst.BaseExpression:
    """`self.model.module if multigpus else self.model`: the one object both branches name (a DataParallel
    wrapper's `.module` is the model it wraps), else the value as it is."""
    if type(value) is not cst.IfExp:
        return value
    body, orelse = _unwrapped_module(value.body), _unwrapped_module(value.orelse)
    key = dotted(body)
    return body if key is not None and key == dotted(orelse) else value


def _unwrapped_module(node: cst.BaseExpression) -> cst.BaseExpression:
    while type(node) is cst.Attribute and node.attr.value == "module":
        node = node.value
    return node


def _copied_attribute(node: cst.BaseExpression, imports) -> str | None:
    """`copy.deepcopy(self.model)`: the attribute of `self` copied ("model"), else None."""
    if type(node) is not cst.Call or len(node.args) != 1 or imports.qualify(node.func) != "copy.deepcopy":
        return None
    value = node.args[0].value
    return value.attr.value if type(value) is cst.Attribute and dotted(value.value) == "self" else None
