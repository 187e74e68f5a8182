"""The calls between this file's functions: who calls whom, and what that tells a function.

- the order of analysis: callees before callers (a closure before its enclosing function);
- which function of this file a call runs (methods of objects of its classes included:
  `method_targets.py`), and what each call of it sees (grad and model modes: `caller_entry.py`);
- which parameters functions hand on to calls we cannot see into (which step an
  optimizer: `optimizers.py`).
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.accessors import is_property
from modelint.facts.scopes import FunctionInfo
from modelint.facts.caller_entry import CallerEntry, nested_name
from modelint.facts.flag_order import set_only_where_not_run, bound_targets, rebound_only_before
from modelint.facts.method_targets import MethodTargets
from modelint.facts.modules import rewraps
from modelint.facts.framework_hooks import openmmlab_test_hook
from modelint.facts.names import BUILTIN_NAMES, dotted, is_super_call
from modelint.facts.name_values import scope_bindings
from modelint.facts.walk import iter_nodes



class CallGraph(MethodTargets, CallerEntry):
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
            name = self.runs_local(site.node, site.site.function)
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
            if type(site.node.func) is cst.Name and site.node.func.value in BUILTIN_NAMES:
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
        """Each call of one of this file's functions, methods or closures -> that function."""
        out = {}
        closures = self.closures_by_name
        for site in self.collector.calls:
            name = self.local_callee(site.node, site.site.function)
            callee = (self.local_functions.get(name) or closures.get(name)) if name else None
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

    @cached_property
    def site_of_call(self) -> dict:
        """Call node -> its CallSite (where it sits: function, statement, guards)."""
        return {site.node: site for site in self.collector.calls}

    def unchanging_flag(self, flag: str, tests=()) -> bool:
        """Does nothing in the file rebind `flag` (`args.eval_only`: no `args.eval_only = ...`, `args` bound
        once, or a parameter; `EVAL_ONLY`: bound once), or only module-level lines before all the `tests` (the
        nodes about to be compared)? Then two tests of it agree."""
        counts = self.__dict__.get("_binding_counts")
        if counts is None:
            counts = self.__dict__["_binding_counts"] = {}
            for node in iter_nodes(self.collector.module_node):
                if type(node) is cst.Assign and len(node.targets) == 1 \
                        and rewraps(self.imports, node.value, dotted(node.targets[0].target) or ""):
                    continue  # (`gen = gen.train()`, `net = net.to(device)`: the same object, None or not)
                for target in bound_targets(node):
                    if (name := dotted(target)) is not None:
                        counts[name] = counts.get(name, 0) + (2 if type(node) is cst.For else 1)
        root = flag.split(".")[0]
        if root == "self" and flag.count(".") == 1 and counts.get("self", 0) == 0:
            # (`self.embedder`, set by the constructors only: the same in every other method)
            return all(assign.site.function is not None and assign.site.function.name == "__init__"
                       for assign in self.collector.attribute_assigns if dotted(assign.target) == flag) \
                or bool(tests) and set_only_where_not_run(self, flag, tests)
        return counts.get(root, 0) <= 1 and ("." not in flag or counts.get(flag, 0) == 0) \
            or bool(tests) and rebound_only_before(self, flag, tests)

    @cached_property
    def _calls_of(self) -> dict:
        """function -> the calls of it in this file."""
        out: dict = {}
        for call, callee in self._local_callees.items():
            out.setdefault(callee, []).append(call)
        return out

    def is_framework_hook(self, function: FunctionInfo | None) -> bool:
        """A Lightning evaluation hook of a module class, an OpenMMLab model's test hook: run in eval under no_grad."""
        return function is not None and function.cls is not None and ((function.name in api.LIGHTNING_EVAL_HOOKS
                and self.is_module_class(function.cls)) or openmmlab_test_hook(self, function))

    def is_training_hook(self, function: FunctionInfo | None) -> bool:
        """Lightning's `training_step` of a module class: the framework back-propagates what it returns."""
        return (function is not None and function.name in api.LIGHTNING_TRAIN_HOOKS and function.cls is not None
                and self.is_module_class(function.cls))

    def syntactic_callers(self, function: FunctionInfo) -> set:
        """The functions whose code calls this one (None: module level), interpreted or not."""
        return self._syntactic_callers.get(function, set())

    @cached_property
    def _syntactic_callers(self) -> dict:
        return {callee: {self.site_of_call[call].site.function for call in calls}
                for callee, calls in self._calls_of.items()}

    def local_callee(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of this file's function a call runs (`evaluate`, `Trainer.validate`)."""
        cache = self.__dict__.setdefault("_callee_names", {})  # (asked for every call in every round)
        key = (call, enclosing)
        if key not in cache:
            named = self._local_callee(call, enclosing)
            # (`self.model(x)` of a property `model`: the getter takes no `x`, what it hands back runs)
            function = self.local_functions.get(named) if named is not None else None
            cache[key] = None if function is not None and is_property(function) else named
        return cache[key]

    def _local_callee(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        held = self.held_closure(call.func, enclosing)
        if held is not None:  # (`self.val_step(x, y)`, a closure a method of the class made and kept there)
            return held
        if type(call.func) is cst.Attribute and call.func.attr.value not in self.method_names:
            # (`x.view(...)`, `torch.cat(...)`: no method of this file has that name; `self.rec(x)` may run the
            # `__call__` of the plain object the attribute holds)
            return self._called_attribute(call.func, enclosing) if "__call__" in self.method_names else None
        named = self.local_reference(call.func, enclosing)
        if named is not None:
            return named
        if type(call.func) is cst.Name:
            return self._called_object(call.func.value, enclosing)
        func = call.func
        class_level = self._class_level_method(func)
        if class_level is not None:
            return class_level
        held = self.held_object_class(call, enclosing) or self.bound_object_class(call, enclosing) \
            or self.handed_object_class(call, enclosing) or self.element_class(call, enclosing) \
            or (self.constructed_inline(func.value) if type(func) is cst.Attribute else None)
        if held is not None:
            for cls_name in self.class_and_bases(held):
                key = f"{cls_name}.{func.attr.value}"
                if key in self.local_functions:
                    return key
            return None
        return self._only_module_method(func, enclosing)

    def constructed_inline(self, receiver: cst.BaseExpression) -> str | None:
        """`Evaluator(model, loader).get_scores()`: the class of this file built right there."""
        if type(receiver) is cst.Call and type(receiver.func) is cst.Name \
                and receiver.func.value in self.modules.classes and receiver.func.value not in self.imports.bindings:
            return receiver.func.value
        return None

    def _called_object(self, name: str, enclosing: FunctionInfo | None) -> str | None:
        """`teacher(x)` with `teacher = EMATeacher(model)`, a plain class of this file defining `__call__` (or a
        parameter every call hands one): that method (a module class's call runs its forward, which the flow
        follows as a forward)."""
        if "__call__" not in self.method_names:
            return None
        bound = self._class_bound_to(name, enclosing, set())
        if bound is None and enclosing is not None and name in enclosing.param_set:
            bound = self._handed_class(enclosing, name)  # (`run_all(Predictor(path), batches)`: `predictor(b)`)
        return self._plain_call_method(bound)

    def _called_attribute(self, func: cst.Attribute, enclosing: FunctionInfo | None) -> str | None:
        """`self.rec(x)` with `self.rec = Recorder(self.net)`, a plain class of this file defining `__call__`."""
        if self.__dict__.get("_finding_held_classes"):
            return None  # (MethodTargets._held_classes is being worked out: it resolves calls on the way)
        return self._plain_call_method(self._attribute_class(func, enclosing))

    def _plain_call_method(self, cls_name: str | None) -> str | None:
        """The `__call__` (its own or a base's here) of a plain class of this file (a module class's call runs
        its forward, which the flow follows as a forward)."""
        if cls_name is None or cls_name not in self.modules.classes \
                or self.may_be_module_class(self.modules.classes[cls_name]):
            return None
        return next((key for owner in self.class_and_bases(cls_name)
                     if (key := f"{owner}.__call__") in self.local_functions), None)

    def local_reference(self, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of this file's function that a name or `self.<method>` refers to, in `enclosing`."""
        if type(func) is cst.Name:
            name = func.value
            scope = enclosing
            while scope is not None:
                nested = self.nested_functions.get((scope, name))
                if nested is not None:
                    return nested_name(nested)
                scope = scope.outer
            if name in self.local_functions and name not in self.imports.bindings:
                return self.collector.definitions.in_force(name, func, enclosing)
            closure = self.returned_closure(name, enclosing)
            if closure is not None:
                return nested_name(closure)
            return self._aliased_function(name, enclosing) if name in self._alias_targets else None
        through_super = type(func) is cst.Attribute and is_super_call(func.value)
        if type(func) is cst.Attribute and (through_super or (type(func.value) is cst.Name
                                                              and func.value.value == "self")):
            cls = enclosing.cls if enclosing is not None else None
            while cls is None and enclosing is not None and enclosing.outer is not None:
                enclosing = enclosing.outer
                cls = enclosing.cls
            if cls is not None:
                # (`super().predict(x)`: the first base of the file defining it, not the class's own)
                for cls_name in self.class_and_bases(cls.name)[1 if through_super else 0:]:
                    key = f"{cls_name}.{func.attr.value}"
                    if key in self.local_functions:
                        return key
        return None

    def names_a_transform(self, key: str, enclosing: FunctionInfo | None) -> bool:
        """Is `key` a name for a function of this file (`enc = featurize`, or `featurize` itself) that reads no
        module-level variable, only its arguments, imports and the file's functions: a transform (a positional
        encoding) with no weights of its own? (Not `def net(X): return softmax(X @ W + b)` over global tensors.)"""
        cache = self.__dict__.setdefault("_transforms", {})
        if (key, enclosing) not in cache:
            cache[key, enclosing] = self._names_a_transform(key, enclosing)
        return cache[key, enclosing]

    def _names_a_transform(self, key: str, enclosing: FunctionInfo | None) -> bool:
        if key in BUILTIN_NAMES and key not in self._scope_bindings(None) \
                and (enclosing is None or key not in self._scope_bindings(enclosing)):
            return True  # `str_to_list(text, ",", int)`: Python's own converter, no model
        named = self.local_reference(cst.Name(key), enclosing) \
            if key.isidentifier() and (key in self.local_functions or key in self._alias_targets) else None
        function = self.local_functions.get(named) if named is not None else None
        if function is None or function.outer is not None or function.cls is not None:
            return False
        module_level = self._scope_bindings(None)
        return not any(type(node) is cst.Name and node.value in module_level and node.value not in function.param_set
                       and any(binding.kind == "assign" for binding in module_level[node.value])
                       for node in iter_nodes(function.node.body))

    @cached_property
    def _alias_targets(self) -> frozenset[str]:
        return frozenset(target for target, _source in self.collector.name_aliases)

    def _aliased_function(self, name: str, enclosing: FunctionInfo | None) -> str | None:
        """`enc = featurize`, then `enc` handed on or called: the function of this file every binding names."""
        found = self.visible_bindings(name, enclosing)
        if found is None:
            return None
        bindings, scope = found
        following = self.__dict__.setdefault("_aliases_followed", set())
        if (name, scope) in following:
            return None  # (`std = scale; scale = std`: a cycle of aliases names no function)
        following.add((name, scope))
        try:
            named = {self.local_reference(binding.value, scope) if binding.kind == "assign"
                     and type(binding.value) is cst.Name and binding.value.value != name else None
                     for binding in bindings}
        finally:
            following.discard((name, scope))
        return named.pop() if len(named) == 1 and None not in named else None

    def visible_bindings(self, name: str, scope: FunctionInfo | None) -> tuple[list, FunctionInfo | None] | None:
        """The bindings of `name` in the scope Python finds it in from `scope` (the function, an enclosing one,
        the module), with that scope; None where no scope binds it."""
        while True:
            bindings = self._scope_bindings(scope).get(name)
            if bindings:
                return bindings, scope
            if scope is None:
                return None
            scope = scope.outer

    def _scope_bindings(self, function: FunctionInfo | None) -> dict:
        cache = self.__dict__.setdefault("_bindings_by_scope", {})
        found = cache.get(function)
        if found is None:
            found = cache[function] = scope_bindings(function.node if function is not None
                                                     else self.collector.module_node)
        return found

    @cached_property
    def method_names(self) -> frozenset[str]:
        """The names of the methods the file's classes define."""
        return frozenset(f.name for f in self.collector.functions if f.cls is not None)

    @cached_property
    def closures_by_name(self) -> dict[str, FunctionInfo]:
        return {nested_name(f): f for f in self.nested_functions.values() if f.cls is None}

    def class_and_bases(self, name: str) -> list[str]:
        """The class and its bases defined in this file, depth first (each once, whatever the cycles)."""
        cache = self.__dict__.setdefault("_bases_by_class", {})
        if name not in cache:
            cache[name] = self._class_and_bases(name)
        return cache[name]

    def _class_and_bases(self, name: str) -> list[str]:
        out: list[str] = []
        stack = [name]
        while stack:
            current = stack.pop()
            if current in out:
                continue
            out.append(current)
            info = self.modules.classes.get(current)
            if info is not None:
                bases = [dotted(base) for base in info.bases]
                stack.extend(b for b in reversed(bases) if b in self.modules.classes and b not in out)
        return out

    # -- other files ------------------------------------------------------------------
    def class_family(self, name: str) -> set[str]:
        """The class, its bases in this file and the classes of this file that derive from it."""
        return set(self.class_and_bases(name)) | set(self.subclasses(name))

    def subclasses(self, name: str) -> list[str]:
        """The classes of this file that derive from the class, at any depth."""
        return self._subclasses.get(name, [])

    @cached_property
    def _subclasses(self) -> dict[str, list[str]]:
        """class -> the classes of this file that derive from it, at any depth."""
        out: dict[str, list[str]] = {}
        for name in self.modules.classes:
            for base in self.class_and_bases(name)[1:]:
                out.setdefault(base, []).append(name)
        return out
