"""Mode flow of one file: every function that touches a model, callees first.

`ModeFlow` picks the functions worth interpreting (they set or read a mode, run a
training step, build a model, or hand one to a helper), runs the interpreter
(modelint.facts.interpreter) over each — callees before callers, so a call meets the
summary of the function it runs (modelint.facts.summaries) — and again while those
summaries change (recursion). Rules read `flows` (forwards, training steps) and ask
`entry_grad` whether a function's callers run it under no_grad.
"""

from __future__ import annotations

import builtins
import sys
from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.collector import Collector, FunctionInfo
from modelint.facts.intent import DIRECT
from modelint.facts.interpreter import Interpreter
from modelint.facts.lattice import GRAD_ENABLED, GRAD_UNKNOWN, GradFact
from modelint.facts.modules import ModuleTable
from modelint.facts.names import dotted
from modelint.facts.objects import ObjectModes
from modelint.facts.provenance import Provenance
from modelint.facts.records import FunctionFlow
from modelint.facts.regions import disables_grad, grad_effect
from modelint.facts.state import State
from modelint.facts.summaries import qualname, summarise
from modelint.summary import FileSummary, FunctionSummary, ProjectIndex

_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))
_BUILTIN_NAMES = frozenset(dir(builtins))


class ModeFlow:
    MAX_ROUNDS = 3

    def __init__(self, collector: Collector, modules: ModuleTable, path: str,
                 index: ProjectIndex | None = None, module_class=None, maybe_module_class=None) -> None:
        self.collector = collector
        self.modules = modules
        # Is a class of this file an nn.Module (its bases elsewhere included, when the index knows them)?
        self.is_module_class = module_class or modules.is_module_class
        # ... or may it be one (a base elsewhere the index does not know)?
        self.may_be_module_class = maybe_module_class or self.is_module_class
        self.imports = collector.imports
        self.path = path
        self.index = index
        self.provenance = Provenance(self)
        self.flows: list[FunctionFlow] = []
        self.summaries: dict[str, FunctionSummary] = {}
        self.unresolved: set[str] = set()
        self.last_unresolved: str | None = None
        # Calls of this file's own functions: qualname -> {call: (caller, grad there, models' modes there)}.
        self.call_sites: dict[str, dict[cst.Call, tuple]] = {}
        self.mode_setting_methods = {
            site.site.function.name
            for site in collector.calls
            if site.site.function is not None and site.site.function.cls is not None
            and isinstance(site.node.func, cst.Attribute) and site.node.func.attr.value in ("eval", "train")
        }
        self.local_functions: dict[str, FunctionInfo] = {}
        self.nested_functions: dict[tuple[FunctionInfo, str], FunctionInfo] = {}
        for function in collector.functions:
            if function.outer is None:
                self.local_functions.setdefault(qualname(function), function)
            elif function.cls is None:
                self.nested_functions.setdefault((function.outer, function.name), function)
        self.global_models = self._global_models()
        self._recursive = False
        self.assumed_sites: set[cst.Call] = set()  # backward calls standing for "trained here, so in train mode"
        self._targets = self._ordered(self._select_targets())
        self._run()
        self.objects = ObjectModes(self)

    # -- which functions -----------------------------------------------------------
    def _global_models(self) -> frozenset[str]:
        """Module-level names bound to a module (`net = Net()` at the top of a script)."""
        return frozenset(key for key, value, site in self.collector.call_assigns
                         if site.function is None and site.cls is None and "." not in key
                         and self.modules.module_expression(value)[0] is not None)

    def _select_targets(self) -> list[FunctionInfo | None]:
        collector, modules = self.collector, self.modules
        constructing = {site.function for _key, value, site in collector.call_assigns
                        if modules.module_expression(value)[0] is not None}
        # `return nn.Sequential(...)`: a factory, whose summary says what it hands out.
        constructing.update(site.site.function for site in collector.calls
                            if isinstance(site.site.stmt, cst.SimpleStatementLine)
                            and any(isinstance(small, cst.Return) and small.value is site.node
                                    for small in site.site.stmt.body)
                            and modules.module_expression(site.node)[0] is not None)
        using_globals = {site.site.function for site in collector.calls
                         if isinstance(site.node.func, cst.Name) and site.node.func.value in self.global_models}
        # `gen = load_generator(path)` then `gen(z)`: a value a call returned is run as a model.
        returned = {(site.function, key) for key, _value, site in collector.call_assigns}
        calling_results = {site.site.function for site in collector.calls
                           if (site.site.function, site.text) in returned}
        def module_forward(f: FunctionInfo) -> bool:
            return f.cls is not None and _is_forward_like(f.name) and self.is_module_class(f.cls)

        targets: list[FunctionInfo | None] = [
            f for f in collector.functions
            if f.mode_relevant or f in constructing or f in using_globals or f in calling_results
            or ((f.calls_params or (f.calls_self_attribute and f.cls is not None)) and not module_forward(f))
        ]
        if collector.module_mode_relevant or None in constructing or collector.module_calls_functions \
                or None in calling_results:
            targets.append(None)
        return targets

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
            callee = self.local_functions.get(name) if name else None
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

    # -- rounds ---------------------------------------------------------------------
    def _run(self) -> None:
        previous: dict[str, FunctionSummary] | None = None
        for _ in range(self.MAX_ROUNDS):
            self.call_sites = {}
            self.unresolved = set()
            self.flows = []
            for target in self._targets:
                flow = self._run_function(target) if target is not None else self._run_module()
                self.flows.append(flow)
                if target is not None and target.outer is None:
                    summary = summarise(self, flow, self._globals_of(target), self._closure_flows(target))
                    self.summaries[summary.qualname] = summary
            if not self._recursive:
                break  # callees came first: every call already met its callee's final summary
            if previous is not None and _same_effects(previous, self.summaries):
                break
            if not any(not s.trivial for s in self.summaries.values()):
                break
            previous = dict(self.summaries)

    def _run_function(self, function: FunctionInfo) -> FunctionFlow:
        flow = FunctionFlow(function)
        grad = GRAD_UNKNOWN
        for decorator in function.decorators:
            if disables_grad(self.imports, decorator):
                grad = GradFact(free_sites=frozenset({decorator}))
        interpreter = Interpreter(self, flow, set(function.params) | function.enclosing_params
                                  | self._globals_of(function))
        state = State({}, grad)
        if function.uses_gradients:  # which parameters reach its backward: their values are origins too
            state.values = {p: frozenset({(("param", p), DIRECT)}) for p in function.params if p not in ("self", "cls")}
        flow.exit_state = interpreter.run(function.node.body, state)
        self._finish(flow, function)
        return flow

    def _run_module(self) -> FunctionFlow:
        flow = FunctionFlow(None)
        interpreter = Interpreter(self, flow, set())
        flow.exit_state = interpreter.run(self.collector.module_node.body, State({}, GRAD_ENABLED))
        self._finish(flow, None)
        return flow

    def _finish(self, flow: FunctionFlow, function: FunctionInfo | None) -> None:
        for forward in flow.forwards.values():
            forward.uses = flow.uses.get(forward.token, set())
        flow.trains = flow.trains or bool(flow.steps) or bool(flow.helper_steps)

    def _closure_flows(self, function: FunctionInfo) -> list[FunctionFlow]:
        """Flows of the closures defined in a function (at any depth), analysed before it."""
        return [flow for flow in self.flows if flow.function is not None and flow.function.cls is None
                and _defined_in(flow.function, function)]

    def _globals_of(self, function: FunctionInfo) -> frozenset[str]:
        """The module-level models a function uses without binding them itself."""
        if not self.global_models:
            return frozenset()
        return self._global_uses.get(function, frozenset())

    @cached_property
    def _global_uses(self) -> dict[FunctionInfo, frozenset[str]]:
        used: dict[FunctionInfo, set[str]] = {}
        bound = {(site.function, key) for key, _value, site in self.collector.call_assigns}
        for site in self.collector.calls:
            function = site.site.function
            if function is None:
                continue
            head = (site.text or "").split(".")[0]
            if head in self.global_models and head not in function.param_set and (function, head) not in bound:
                used.setdefault(function, set()).add(head)
        return {f: frozenset(names) for f, names in used.items()}

    # -- what rules ask ---------------------------------------------------------------
    def function_trains(self, function: FunctionInfo | None) -> bool:
        """Does it train: a training step, itself or through a helper, or gradients used?"""
        for flow in self.flows:
            if flow.function is function:
                if flow.trains:
                    return True
        if function is None:
            return self.collector.module_uses_gradients
        return function.uses_gradients

    @cached_property
    def _optimizer_steps(self) -> set:
        """Functions that call `<optimizer>.step()` (or `step(closure)`) themselves."""
        from modelint.facts.calls import is_optimizer_step

        return {site.site.function for site in self.collector.calls
                if isinstance(site.node.func, cst.Attribute) and site.node.func.attr.value == "step"
                and site.text and is_optimizer_step(site.text.rsplit(".", 1)[0])}

    @cached_property
    def _handed_on(self) -> dict[FunctionInfo, set[str]]:
        """Parameters a function passes, as they are, to a call we cannot see into (`op(batch)` for a hook
        registered elsewhere): whatever the caller gives there may be trained on."""
        out: dict[FunctionInfo, set[str]] = {}
        for site in self.collector.calls:
            function = site.site.function
            if function is None or not function.calls_params:
                continue
            qualified = site.qualified or ""
            if qualified.startswith(("torch.", "numpy.")) or self.local_callee(site.node, function) is not None:
                continue
            if isinstance(site.node.func, cst.Name) and site.node.func.value in _BUILTIN_NAMES:
                continue
            for arg in site.node.args:
                if isinstance(arg.value, cst.Name) and arg.value.value in function.param_set \
                        and arg.value.value not in ("self", "cls"):
                    out.setdefault(function, set()).add(arg.value.value)
        return out

    def handed_on(self, function: FunctionInfo) -> set[str]:
        return self._handed_on.get(function, set())

    @cached_property
    def local_calls(self) -> set:
        """Calls of this file's functions (whose summaries may say what they do with their arguments)."""
        return {site.node for site in self.collector.calls
                if self.local_callee(site.node, site.site.function) in self.local_functions}

    def steps_optimizer(self, function: FunctionInfo | None) -> bool:
        return function in self._optimizer_steps

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
        if not sites and _is_private_hook(function):
            return GRAD_UNKNOWN  # called by a base class elsewhere (a template method), in a grad mode we cannot see
        if not sites or function in _seen:
            return GRAD_ENABLED
        result = None
        for caller, grad, _models in sites.values():
            if grad.unknown:
                grad = grad.at_entry(self.entry_grad(caller, _seen | {function}))
            result = grad if result is None else result.join(grad)
        return result

    def is_framework_hook(self, function: FunctionInfo | None) -> bool:
        """A Lightning evaluation hook of a module class: the framework sets eval mode and no_grad for it."""
        return (function is not None and function.name in api.LIGHTNING_EVAL_HOOKS and function.cls is not None
                and self.is_module_class(function.cls))

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

    @cached_property
    def _assigned_attributes(self) -> set[tuple[str, str]]:
        """(class name, `self.x`) for every `self.x = ...` in a method of the class."""
        return {(a.site.cls.name, key) for a in self.collector.attribute_assigns
                if a.site.cls is not None and (key := dotted(a.target)) is not None and key.startswith("self.")}

    def assigned_attribute(self, cls, key: str) -> bool:
        return any((name, key) in self._assigned_attributes for name in self.class_and_bases(cls.name))

    def grad_effect(self, expr: cst.BaseExpression) -> str | None:
        return grad_effect(self.imports, expr)

    # -- calls ------------------------------------------------------------------------
    def local_callee(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of this file's function a call runs (`evaluate`, `Trainer.validate`)."""
        func = call.func
        if isinstance(func, cst.Name):
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
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
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

    def resolve(self, call: cst.Call, enclosing: FunctionInfo | None) -> tuple[FunctionSummary | None, str | None]:
        """The summary of the function a call runs, and the receiver its `self` maps to."""
        func = call.func
        local = self.local_callee(call, enclosing)
        if local is not None:
            return self.summaries.get(local), ("self" if isinstance(func, cst.Attribute) else None)
        if isinstance(func, cst.Name):
            qualified = self.imports.bindings.get(func.value)
            if qualified is not None:
                return self._resolve_imported(qualified), None
            return None, None
        if isinstance(func, cst.Attribute):
            receiver = dotted(func.value)
            if receiver is not None and receiver != "self":
                qualified = self.imports.qualify(func)
                if qualified is not None and not self.imports.is_torch_name(qualified):
                    head = receiver.split(".")[0]
                    if self.imports.bindings.get(head, "").split(".")[-1] == head or "." in receiver:
                        return self._resolve_imported(qualified), None
        return None, None

    def _resolve_imported(self, qualified: str) -> FunctionSummary | None:
        head = qualified.lstrip(".").split(".")[0]
        if qualified.startswith("torch") or (not qualified.startswith(".") and head in _STDLIB):
            return None
        self.last_unresolved = qualified
        if self.index is None:
            return None
        return self.index.resolve(qualified, self.path)

    def class_and_bases(self, name: str) -> list[str]:
        """The class and its bases defined in this file, depth first (each once, whatever the cycles)."""
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
    @cached_property
    def call_ordinals(self) -> dict[cst.Call, int]:
        """Calls by their place in the collector's list: how other files name them."""
        return {site.node: i for i, site in enumerate(self.collector.calls)}

    def file_summary(self) -> FileSummary:
        """The picklable part other files need (modelint.facts.export)."""
        from modelint.facts.export import file_summary

        return file_summary(self)


def _is_private_hook(function: FunctionInfo) -> bool:
    """`_predict_proba` in a class: private, yet nothing here calls it, so its callers are elsewhere."""
    return function.cls is not None and function.name.startswith("_") and not function.name.startswith("__")


def _defined_in(function: FunctionInfo, outer: FunctionInfo) -> bool:
    scope = function.outer
    while scope is not None:
        if scope is outer:
            return True
        scope = scope.outer
    return False


def _nested_name(function: FunctionInfo) -> str:
    return f"{qualname(function.outer) if function.outer.outer is None else function.outer.name}.<locals>.{function.name}"


def _is_forward_like(name: str) -> bool:
    return name == "forward" or name.startswith(("forward_", "_forward")) or name in ("__init__", "__call__")


def _same_effects(a: dict[str, FunctionSummary], b: dict[str, FunctionSummary]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].effects == b[k].effects and len(a[k].forwards) == len(b[k].forwards)
        and [u.intent for u in a[k].forwards] == [u.intent for u in b[k].forwards]
        and len(a[k].steps) == len(b[k].steps) and a[k].returns == b[k].returns and a[k].trains == b[k].trains
        for k in a
    )
