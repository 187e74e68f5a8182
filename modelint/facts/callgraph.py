"""The calls between this file's functions: who calls whom, and what that tells a function.

- the order of analysis: callees before callers (a closure before its enclosing function);
- each call of a function of this file, with the grad mode and the models' modes there:
  autograd at a function's entry is on unless every call of it shows it under no_grad
  (a Lightning evaluation hook is run under no_grad by the framework; a private method
  nobody here calls is a hook a base class elsewhere calls, in a grad mode we cannot see);
- which parameters functions hand on to calls we cannot see into (which step an
  optimizer: `optimizers.py`).
"""

from __future__ import annotations

import builtins
from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.base_shapes import grad_of_calls_by_bases
from modelint.facts.scopes import FunctionInfo
from modelint.facts.names import dotted
from modelint.facts.lattice import GRAD_ENABLED, GRAD_UNKNOWN, GradFact
from modelint.facts.modules import unwrap_chain
from modelint.facts.name_values import scope_bindings
from modelint.facts.summaries import qualname

_BUILTIN_NAMES = frozenset(dir(builtins))


class CallGraph:
    """Mixed into ModeFlow: `self.collector`, `self.local_functions`, `self.nested_functions`,
    `self.call_sites`, `self.imports` and `self.is_module_class` come from there."""

    def _ordered(self, targets: list) -> list:
        """Callees before their callers (depth-first post-order over this file's calls)."""
        chosen = set(targets)
        edges: dict = {t: [] for t in targets}
        for site in self.collector.calls:
            caller = site.site.function
            while caller is not None and caller not in chosen:
                caller = caller.outer
            if caller not in edges:
                continue
            name = self.local_callee(site.node, site.site.function)
            callee = (self.local_functions.get(name) or self.closures_by_name.get(name)) if name else None
            if callee is not None and callee in chosen and callee is not caller:
                edges[caller].append(callee)
        for target in targets:  # a closure runs on its enclosing function's behalf: analysed first
            if target is not None and target.outer in edges and target.cls is None:
                edges[target.outer].append(target)
        order: list = []
        done: set = set()
        on_stack: set = set()
        for root in targets:
            if root in done:
                continue
            stack = [(root, iter(edges[root]))]
            done.add(root)
            on_stack.add(root)
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    on_stack.discard(node)
                    order.append(node)
                elif child in on_stack:
                    self._recursive = True  # a cycle: summaries need another round to settle
                elif child not in done:
                    done.add(child)
                    on_stack.add(child)
                    stack.append((child, iter(edges.get(child, ()))))
        return order

    @cached_property
    def _handed_on(self) -> dict[FunctionInfo, dict[str, bool]]:
        """Parameters a function passes, as they are, to a call we cannot see into, each with whether the
        callee is a named function of a library or another file (`non_max_suppression(out)`: it transforms
        it) rather than a callable it holds (`op(batch)` for a hook registered elsewhere, which may train on
        whatever the caller gives)."""
        out: dict[FunctionInfo, dict[str, bool]] = {}
        for site in self.collector.calls:
            function = site.site.function
            if function is None or not function.calls_params:
                continue
            qualified = site.qualified or ""
            if qualified.startswith(("torch.", "numpy.")) or self.local_callee(site.node, function) is not None:
                continue
            if type(site.node.func) is cst.Name and site.node.func.value in _BUILTIN_NAMES:
                continue
            named = bool(qualified) and type(site.node.func) is cst.Name
            for arg in site.node.args:
                if type(arg.value) is cst.Name and arg.value.value in function.param_set \
                        and arg.value.value not in ("self", "cls"):
                    found = out.setdefault(function, {})
                    found[arg.value.value] = found.get(arg.value.value, True) and named
        return out

    def handed_on(self, function: FunctionInfo) -> set[str]:
        return set(self._handed_on.get(function, {}))

    def handed_to_functions(self, function: FunctionInfo) -> set[str]:
        """The parameters of `handed_on` that only named functions receive (transforms, not hooks)."""
        return {name for name, named in self._handed_on.get(function, {}).items() if named}

    @cached_property
    def _local_callees(self) -> dict:
        """Each call of one of this file's top-level functions or methods -> that function."""
        out = {}
        for site in self.collector.calls:
            name = self.local_callee(site.node, site.site.function)
            callee = self.local_functions.get(name) if name else None
            if callee is not None:
                out[site.node] = callee
        return out

    def callee_of(self, call: cst.Call) -> FunctionInfo | None:
        """This file's function that `call` runs, if it is one (found once per file)."""
        return self._local_callees.get(call)

    @property
    def local_calls(self):
        """Calls of this file's functions (whose summaries may say what they do with their arguments)."""
        return self._local_callees.keys()

    @cached_property
    def called_here(self) -> set[FunctionInfo]:
        """This file's functions that this file calls."""
        return set(self._local_callees.values())

    def entry_grad(self, function: FunctionInfo | None, _seen: frozenset = frozenset()) -> GradFact:
        """Autograd at a function's entry, from every call of it this file shows; enabled when none."""
        if function is None:
            return GRAD_ENABLED
        if function.outer is not None and function.cls is None:
            sites = self.call_sites.get(_nested_name(function), {})
        else:
            sites = self.call_sites.get(qualname(function), {})
        if self.is_framework_hook(function):
            return GradFact(free_sites=frozenset({function.node}))  # Lightning wraps it in no_grad
        if not sites and function.cls is not None:
            by_bases = grad_of_calls_by_bases(self, function)  # a base elsewhere calls this hook of its template
            if by_bases is not None:
                return GradFact(free_sites=frozenset({function.node})) if by_bases else GRAD_ENABLED
        if not sites and _is_private_hook(function):
            return GRAD_UNKNOWN  # called by a base class elsewhere (a template method), in a grad mode we cannot see
        if not sites and self._called_only_in_lambdas(function):
            # Called only inside lambdas (`Evaluator(eval_func=lambda x, y: test(model, x, y))`): whoever
            # calls the lambda decides the grad mode, and a library's evaluator runs it under no_grad.
            return GRAD_UNKNOWN
        if not sites or function in _seen:
            return GRAD_ENABLED
        result = None
        for caller, grad, _models in sites.values():
            if grad.unknown:
                grad = grad.at_entry(self.entry_grad(caller, _seen | {function}))
            result = grad if result is None else result.join(grad)
        return result

    def caller_with_autograd(self, function: FunctionInfo | None) -> tuple | None:
        """(caller, call) in this file whose call of `function` surely runs with autograd on (while another
        may run it under no_grad: `train()` validating under no_grad, `test()` without)."""
        if function is None or (function.outer is not None and function.cls is None):
            return None
        for call, (caller, grad, _models) in self.call_sites.get(qualname(function), {}).items():
            if grad.unknown:
                grad = grad.at_entry(self.entry_grad(caller, frozenset({function})))
            if grad.may_enabled and not grad.free_sites and not grad.unknown:
                return caller, call
        return None

    def _called_only_in_lambdas(self, function: FunctionInfo) -> bool:
        calls = self._calls_of.get(function, ())
        return bool(calls) and all(call in self.collector.calls_in_lambdas for call in calls)

    @cached_property
    def site_of_call(self) -> dict:
        """Call node -> its CallSite (where it sits: function, statement, guards)."""
        return {site.node: site for site in self.collector.calls}

    @cached_property
    def _calls_of(self) -> dict:
        """function -> the calls of it in this file."""
        out: dict = {}
        for call, callee in self._local_callees.items():
            out.setdefault(callee, []).append(call)
        return out

    def is_framework_hook(self, function: FunctionInfo | None) -> bool:
        """A Lightning evaluation hook of a module class: the framework sets eval mode and no_grad for it."""
        return (function is not None and function.name in api.LIGHTNING_EVAL_HOOKS and function.cls is not None
                and self.is_module_class(function.cls))

    def is_training_hook(self, function: FunctionInfo | None) -> bool:
        """Lightning's `training_step` of a module class: the framework back-propagates what it returns."""
        return (function is not None and function.name in api.LIGHTNING_TRAIN_HOOKS and function.cls is not None
                and self.is_module_class(function.cls))

    def syntactic_callers(self, function: FunctionInfo) -> set:
        """The functions whose code calls this one (None: module level), interpreted or not."""
        return self._syntactic_callers.get(function, set())

    @cached_property
    def _syntactic_callers(self) -> dict:
        out: dict = {}
        for site in self.collector.calls:
            callee = self._local_callees.get(site.node)
            if callee is not None:
                out.setdefault(callee, set()).add(site.site.function)
        return out

    def has_callers(self, function: FunctionInfo) -> bool:
        """Does this file call it (not counting recursion)?"""
        name = _nested_name(function) if function.outer is not None and function.cls is None else qualname(function)
        return any(caller is not function for caller, _grad, _models in self.call_sites.get(name, {}).values())

    def record_call_site(self, name: str, call: cst.Call, caller: FunctionInfo | None, state) -> None:
        sites = self.call_sites.setdefault(name, {})
        seen = sites.get(call)
        if seen is None:
            sites[call] = (caller, state.grad, dict(state.models))
        else:  # met again (a loop body runs until stable): join what reaches it
            models = dict(seen[2])
            for key, fact in state.models.items():
                models[key] = models[key].join(fact) if key in models else fact
            sites[call] = (caller, seen[1].join(state.grad), models)

    def local_callee(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of this file's function a call runs (`evaluate`, `Trainer.validate`)."""
        named = self.local_reference(call.func, enclosing)
        if named is not None or type(call.func) is cst.Name:
            return named
        func = call.func
        held = self.held_object_class(call, enclosing) or self.bound_object_class(call, enclosing)
        if held is not None:
            for cls_name in self.class_and_bases(held):
                key = f"{cls_name}.{func.attr.value}"
                if key in self.local_functions:
                    return key
            return None
        return self._only_module_method(func, enclosing)

    def _only_module_method(self, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> str | None:
        """`model.score_sp_po(s, p, o)` on a name shown to be a module here (`model.eval()`), of a method that
        one module class of this file defines and no other class does: that method."""
        if type(func) is not cst.Attribute or func.attr.value.startswith("__"):
            return None
        receiver = dotted(func.value)
        defining = self._method_owners.get(func.attr.value)
        if receiver is None or receiver.split(".")[0] in ("self", "cls") or not defining or len(defining) != 1 \
                or not self.modules.is_module_name(receiver, enclosing):
            return None
        return f"{defining[0]}.{func.attr.value}"

    @cached_property
    def _method_owners(self) -> dict[str, list[str]]:
        """Method name -> the classes of this file defining it (module classes only when all are)."""
        owners: dict[str, list[str]] = {}
        for info in self.modules.classes.values():
            for name in info.methods:
                owners.setdefault(name, []).append(info.name if self.modules.is_module_class(info) else "?")
        return {name: found for name, found in owners.items() if "?" not in found and name not in _MODULE_API}

    def local_reference(self, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of this file's function that a name or `self.<method>` refers to, in `enclosing`."""
        if type(func) is cst.Name:
            name = func.value
            scope = enclosing
            while scope is not None:
                nested = self.nested_functions.get((scope, name))
                if nested is not None:
                    return _nested_name(nested)
                scope = scope.outer
            if name in self.local_functions and name not in self.imports.bindings:
                return name
            return None
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self":
            cls = enclosing.cls if enclosing is not None else None
            while cls is None and enclosing is not None and enclosing.outer is not None:
                enclosing = enclosing.outer
                cls = enclosing.cls
            if cls is not None:
                for cls_name in self.class_and_bases(cls.name):
                    key = f"{cls_name}.{func.attr.value}"
                    if key in self.local_functions:
                        return key
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
        built = self._held_classes.get((enclosing.cls.name, func.value.attr.value))
        return next(iter(built)) if built is not None and len(built) == 1 else None

    def bound_object_class(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """`model.predict(x)` with `model = Classifier(10)`: the class of this file that every binding of
        the name, in the scope Python finds it in (the function, an enclosing one, the module), builds."""
        func = call.func
        if not (type(func) is cst.Attribute and type(func.value) is cst.Name) \
                or func.value.value == "self":
            return None
        name = func.value.value
        if name not in self._names_built_from_classes:
            return None  # (most receivers: no need to list a scope's bindings)
        scope = enclosing
        while True:
            bindings = self._scope_bindings(scope).get(name)
            if bindings:
                break
            if scope is None:
                return None
            scope = scope.outer
        classes = set()
        for binding in bindings:
            node = unwrap_chain(binding.value)[0] if binding.kind == "assign" else None
            if self._rewraps(node, name):
                continue  # `ic = ic.cuda()`, `ic = DataParallel(ic)`: the same object, or one without its methods
            if not (type(node) is cst.Call and type(node.func) is cst.Name
                    and node.func.value in self.modules.classes):
                return None  # a parameter, a loop variable, anything else: not one class we know
            classes.add(node.func.value)
        return classes.pop() if len(classes) == 1 else None

    def _rewraps(self, value: cst.BaseExpression | None, name: str) -> bool:
        """`name` itself (after `.to()`-like calls), or a DataParallel-like wrapper of it."""
        if type(value) is cst.Call and value.args and self.imports.qualify(value.func) in api.MODULE_WRAPPERS:
            value = unwrap_chain(value.args[0].value)[0]
        return type(value) is cst.Name and value.value == name

    @cached_property
    def _names_built_from_classes(self) -> frozenset[str]:
        """Plain names some assignment of this file binds to a constructor of one of its classes."""
        names = set()
        for key, value, _site in self.collector.call_assigns:
            node = unwrap_chain(value)[0]
            if "." not in key and type(node) is cst.Call and type(node.func) is cst.Name \
                    and node.func.value in self.modules.classes:
                names.add(key)
        return frozenset(names)

    def _scope_bindings(self, function: FunctionInfo | None) -> dict:
        cache = self.__dict__.setdefault("_bindings_by_scope", {})
        found = cache.get(function)
        if found is None:
            found = cache[function] = scope_bindings(function.node if function is not None
                                                     else self.collector.module_node)
        return found

    @cached_property
    def _held_classes(self) -> dict[tuple[str, str], set]:
        """(class, attribute) -> the classes of this file its methods construct into `self.<attribute>`
        (`None` among them for anything else assigned there)."""
        held: dict[tuple[str, str], set] = {}
        for key, value, site in self.collector.call_assigns:
            if site.cls is None or not key.startswith("self.") or key.count(".") != 1:
                continue
            node, _chain = unwrap_chain(value)  # `ActorCritic(...).to(device)`
            name = node.func.value if type(node) is cst.Call and type(node.func) is cst.Name else None
            held.setdefault((site.cls.name, key[5:]), set()).add(name if name in self.modules.classes else None)
        return held


    def overriders(self, call: cst.Call, enclosing: FunctionInfo | None) -> list[str]:
        """`self._valid_epoch()` in a base class: the subclasses' methods of that name in this file, which
        the call runs on their instances (a template method and its hooks)."""
        func = call.func
        if not (type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self"):
            return []
        while enclosing is not None and enclosing.cls is None:
            enclosing = enclosing.outer
        if enclosing is None:
            return []
        name = func.attr.value
        return [f"{sub}.{name}" for sub in self._subclasses.get(enclosing.cls.name, ())
                if f"{sub}.{name}" in self.local_functions]

    @cached_property
    def closures_by_name(self) -> dict[str, FunctionInfo]:
        return {_nested_name(f): f for f in self.nested_functions.values() if f.cls is None}

    def class_family(self, name: str) -> set[str]:
        """The class, its bases in this file and the classes of this file that derive from it."""
        return set(self.class_and_bases(name)) | set(self._subclasses.get(name, ()))

    @cached_property
    def _subclasses(self) -> dict[str, list[str]]:
        """class -> the classes of this file that derive from it, at any depth."""
        out: dict[str, list[str]] = {}
        for name in self.modules.classes:
            for base in self.class_and_bases(name)[1:]:
                out.setdefault(base, []).append(name)
        return out


def _is_private_hook(function: FunctionInfo) -> bool:
    """`_predict_proba` in a class: private, yet nothing here calls it, so its callers are elsewhere."""
    return function.cls is not None and function.name.startswith("_") and not function.name.startswith("__")


def _nested_name(function: FunctionInfo) -> str:
    return f"{qualname(function.outer) if function.outer.outer is None else function.outer.name}.<locals>.{function.name}"


# nn.Module's own methods, which a class may override but every module has: `model.eval()` is not a
# call of the one class here that overrides it.
_MODULE_API = frozenset({"forward", "train", "eval", "to", "cuda", "cpu", "parameters", "named_parameters",
                         "state_dict", "load_state_dict", "modules", "children", "apply", "zero_grad",
                         "extra_repr", "reset_parameters", "half", "float", "double", "requires_grad_"})
