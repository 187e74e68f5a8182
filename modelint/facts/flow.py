"""Mode flow of one file: every function that touches a model, callees first.

`ModeFlow` picks the functions worth interpreting (modelint.facts.targets: they set or read
a mode, run a training step, build a model, or hand one to a helper), runs the interpreter
(modelint.facts.interpreter) over each — callees before callers, so a call meets the
summary of the function it runs (modelint.facts.summaries) — and again while those
summaries change (recursion). Rules read `flows` (forwards, training steps) and ask
`entry_grad` whether a function's callers run it under no_grad.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.call_resolution import CallResolution
from modelint.facts.caller_entry import nested_name
from modelint.facts.callgraph import CallGraph
from modelint.facts.optimizers import Optimizers
from modelint.facts.collector import Collector
from modelint.facts.freezing import classes_frozen_at_construction
from modelint.facts.scopes import FunctionInfo
from modelint.facts.script_modes import globals_left_in_eval
from modelint.facts.free_models import FreeModels
from modelint.facts.uses import AFTER, DETACH, DIRECT, FED, FEEDS
from modelint.facts.interpreter import Interpreter
from modelint.facts.walk import iter_nodes
from modelint.facts.lattice import GRAD_ENABLED, GRAD_UNKNOWN, GradFact, ModeFact
from modelint.facts.modules import Dependence, ModuleTable
from modelint.facts.names import dotted
from modelint.facts.objects import ObjectModes
from modelint.facts.provenance import Provenance
from modelint.facts.receivers import instance_method
from modelint.facts.records import FunctionFlow
from modelint.facts.phases import phase_parameter, script_phase
from modelint.facts.plots import FigureObjects
from modelint.facts.regions import branch_grad_effect, disables_grad, grad_effect, returned_grad_context
from modelint.facts.state import State
from modelint.facts.summaries import qualname, summarise
from modelint.facts.targets import select_targets
from modelint.summary import FileSummary, FunctionSummary, ProjectIndex



class ModeFlow(CallGraph, Optimizers, CallResolution):
    MAX_ROUNDS = 3

    def __init__(self, collector: Collector, modules: ModuleTable, path: str,
                 index: ProjectIndex | None = None, module_class=None, maybe_module_class=None,
                 grad_wrappers: frozenset[str] = frozenset(), raising_calls: frozenset = frozenset()) -> None:
        self.collector = collector
        self.modules = modules
        # Is a class of this file an nn.Module (its bases elsewhere included, when the index knows them)?
        self.is_module_class = module_class or modules.is_module_class
        # ... or may it be one (a base elsewhere the index does not know)?
        self.may_be_module_class = maybe_module_class or self.is_module_class
        self.imports = collector.imports
        self.grad_wrappers = grad_wrappers  # the file's own `@nograd` decorators
        self.raising_calls = raising_calls  # `mode.train()` on a name bound nowhere: NameError, the path ends
        self.path = path
        self.index = index
        self.provenance = Provenance(self)
        self.flows: list[FunctionFlow] = []
        self._training_functions: set[FunctionInfo | None] = set()  # of self.flows, indexed (_add_flow)
        self._closures_in: dict[FunctionInfo, list[FunctionFlow]] = {}
        self.summaries: dict[str, FunctionSummary] = {}
        self.unresolved: set[str] = set()
        self.asked_submodules: set[str] = set()  # parts of followed models no class of this file sets
        # Callables of other files handed a model here (`Learner(model=net)`): name as imported -> argument
        # slot (position or keyword) -> how much the models handed there depend on the mode (the join).
        self.handed_models: dict[str, dict[str, int]] = {}
        self.handed_classes: dict[str, dict[str, str]] = {}  # ... and the classes they were built from
        self.handed_in_eval: dict[str, dict[str, bool]] = {}  # ... and whether every one was surely in eval mode
        self.asked_handed: set[str] = set()  # functions calling methods of parameters of classes unseen here
        self.last_unresolved: str | None = None
        # Calls of this file's own functions: qualname -> {call: (caller, grad there, models' modes there)}.
        self.call_sites: dict[str, dict[cst.Call, tuple]] = {}
        # Constructions of this file's plain classes: (class, constructor parameter) -> the modes of the models
        # each hands it, joined (None once one hands something else: a mode we cannot know).
        self.handed_to_constructors: dict[tuple[str, str], ModeFact | None] = {}
        # ... and the object attributes a method hands there as its object holds them (`Adapter(self.model)`
        # with `self.model` untouched in the method): (class, parameter) -> {(method, `self.<attr>`)}.
        self.attributes_to_constructors: dict[tuple[str, str], set[tuple]] = {}
        self.mode_setting_methods = {
            site.site.function.name
            for site in collector.calls
            if site.site.function is not None and site.site.function.cls is not None
            and type(site.node.func) is cst.Attribute and site.node.func.attr.value in ("eval", "train")
        }
        self.local_functions: dict[str, FunctionInfo] = {}
        self.nested_functions: dict[tuple[FunctionInfo, str], FunctionInfo] = {}
        for function in collector.functions:
            if function.outer is None:
                self.local_functions.setdefault(qualname(function), function)
            elif function.cls is None:
                self.nested_functions.setdefault((function.outer, function.name), function)
        self.free = FreeModels(collector, modules)  # globals and enclosing functions' names a function uses
        self.global_models = self.free.global_models
        self._recursive = False
        self._phase_parameters: dict[FunctionInfo, tuple | None] = {}  # (once per function, not per round)
        self.assumed_sites: set[cst.Call] = set()  # backward calls standing for "trained here, so in train mode"
        self._targets = self._ordered(select_targets(self))
        # Built before the run for its attribute aliases (syntax only); the rest reads the finished summaries.
        self.objects = ObjectModes(self)
        self._run()

    # -- rounds ---------------------------------------------------------------------
    def _run(self) -> None:
        previous: dict[str, FunctionSummary] | None = None
        for _ in range(self.MAX_ROUNDS):
            self.call_sites = {}
            self.handed_to_constructors = {}
            self.attributes_to_constructors = {}
            self.unresolved = set()
            self.handed_models = {}
            self.handed_classes = {}
            self.handed_in_eval = {}
            self.asked_handed = set()
            self.flows = []
            self._training_functions = set()
            self._closures_in = {}
            for target in self._targets:
                flow = self._run_function(target) if target is not None else self._run_module()
                self._add_flow(flow)
                if target is not None and target.outer is None:
                    summary = summarise(self, flow, self.free.globals_of(target), self._closure_flows(target))
                    self.summaries[summary.qualname] = summary
                elif target is not None and target.cls is None:
                    # A closure called by its enclosing function or a sibling (`_train_epoch()` calling
                    # `_eval_epoch()` in `main()`): what it does to the enclosing function's models.
                    summary = summarise(self, flow, self.free.free_models(target), self._closure_flows(target))
                    self.summaries[nested_name(target)] = summary
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
            if disables_grad(self.imports, decorator, self.grad_wrappers):
                grad = GradFact(free_sites=frozenset({decorator}))
        interpreter = Interpreter(self, flow, set(function.params) | function.enclosing_params
                                  | self.free.globals_of(function) | self.free.free_models(function))
        calls = self._calls_of.get(function, ())
        aliases = {**self.objects.aliases_seen_by(function.owner_class), **self.free.global_parts(function, calls),
                   **self.free.parameters_holding_globals(function, calls),
                   **self.free.parameters_holding_attributes(function, calls,
                                                             lambda call: self.site_of_call[call].site.function),
                   **self.free.parameters_defaulting_to_models(function, calls)}
        state = State(self._weightless_free_names(function), grad, aliases=aliases,
                      unbound=self._assigned_names.get(function, frozenset()) - interpreter.params)
        for name in self.free.globals_of(function):
            switched = self._globals_left_in_eval.get(name)
            if switched is not None:  # (`net.eval()` once at the top of the script, for good)
                state.models[name] = ModeFact().switched("eval", switched)
        if function.uses_gradients or function in self.called_here or (function.outer is None and (
                function.cls is None or not self.is_module_class(function.cls))):
            # What it does with its parameters' values (back-propagates them, evaluates them), for the calls of it
            # here, and of a module-level function or a plain object's method (`meter.update(loss, n)`) elsewhere.
            # (`self` of a method is the object; of a module-level `def new_labels(self)`, a parameter)
            state.values = {p: frozenset({(("param", p), DIRECT)}) for p in function.params
                            if p not in function.receivers}
            flow.follows_parameters = True
        if function not in self._phase_parameters:
            self._phase_parameters[function] = phase_parameter(function, calls, self.site_of_call)
        flow.exit_state = interpreter.run(function.node.body, state, self._phase_parameters[function])
        self._finish(flow, function)
        return flow

    @cached_property
    def frozen_classes(self) -> dict[str, str]:
        """Module classes of this file that freeze their own parameters when built (see freezing)."""
        return classes_frozen_at_construction(self.collector)

    @cached_property
    def _globals_left_in_eval(self) -> dict:
        return globals_left_in_eval(self.collector, self.global_models)

    def _weightless_free_names(self, function: FunctionInfo) -> dict:
        """A closure's free names that the enclosing functions bind only to modules without weights
        (`loss = nn.MSELoss()`, then `def eval_loss(): return loss(net(x), y).item()`): no model runs there."""
        out = {}
        for name in self.free.free_models(function):
            built = [self.modules.module_expression(value)[0] for key, value, site in self.collector.call_assigns
                     if key == name and site.function is not None and site.function is function.outer]
            if built and all(b is not None and b.parameterless for b in built):
                out[name] = ModeFact(dependence=Dependence.INDEPENDENT, parameterless=True)
        return out

    @cached_property
    def _assigned_names(self) -> dict:
        """function (None: module level) -> plain names it binds to a call's result (`model = GIN()`): unbound
        until that runs (see State.unbound). Names it declares global or nonlocal are the enclosing scope's."""
        out: dict = {}
        for key, _value, site in self.collector.call_assigns:
            if "." not in key and "[" not in key:
                out.setdefault(site.function, set()).add(key)
        declared = self.collector.declared_elsewhere
        return {function: frozenset(names - declared.get(function, set())) for function, names in out.items()}

    def _run_module(self) -> FunctionFlow:
        flow = FunctionFlow(None)
        interpreter = Interpreter(self, flow, set())
        flow.exit_state = interpreter.run(self.collector.module_node.body,
                                          State({}, GRAD_ENABLED, unbound=self._assigned_names.get(None, frozenset())),
                                          script_phase(self.collector.module_phases, lambda: self._scope_bindings(None)))
        self._finish(flow, None)
        return flow

    def _finish(self, flow: FunctionFlow, function: FunctionInfo | None) -> None:
        flow.stepped_elsewhere = bool(flow.steps) and self.stepped_for(function)
        for slot, forward in list(flow.forwards.items()):
            uses = flow.uses.get(forward.token, set())
            if forward.shown_by_detach and (DETACH not in uses or FEEDS in uses):
                del flow.forwards[slot]  # (a detach downstream of what it feeds is that forward's)
                continue
            forward.fed = FED in uses  # (a fact about its input, kept apart from what its output is used for)
            if forward.fed and forward.key.startswith("self."):
                feeders = [other for other in (*flow.forwards.values(), *flow.helper_forwards.values())
                           if forward.token in flow.feeds_into.get(other.token, ())]
                forward.fed_by_its_own_object = bool(feeders) and all(
                    other.key == "self" or other.key.startswith("self.") for other in feeders)
            forward.after_forward = AFTER in uses
            forward.uses = uses - {FED, FEEDS, AFTER}
        for forward in flow.helper_forwards.values():
            if forward.via.given_back:
                forward.caller_uses = flow.uses.get(forward.token, set()) - {FED, FEEDS, AFTER}
        flow.trains = flow.trains or bool(flow.steps) or bool(flow.helper_steps)

    def _add_flow(self, flow: FunctionFlow) -> None:
        """A finished flow, indexed for the questions asked while the round goes on (asked once per
        function: a scan of the flows so far each time made a 5,000-function file quadratic)."""
        self.flows.append(flow)
        if flow.trains:
            self._training_functions.add(flow.function)
        if flow.function is not None and flow.function.cls is None:
            scope = flow.function.outer
            while scope is not None:
                self._closures_in.setdefault(scope, []).append(flow)
                scope = scope.outer

    def _closure_flows(self, function: FunctionInfo) -> list[FunctionFlow]:
        """Flows of the closures defined in a function (at any depth), analysed before it, that it hands
        on rather than calls (a callback for a profiler, a `closure` for `optimizer.step`): a closure it calls
        already ran, through its summary, in the mode the function had set at that call (`model.eval()`
        then `run_validate(loader)`)."""
        closures = [flow for flow in self._closures_in.get(function, ()) if not self.has_callers(flow.function)]
        if not closures:
            return closures
        # (not one it only returns or stores, `return lossfn`: that runs later, wherever its caller calls it)
        nodes = list(iter_nodes(function.node.body))
        handed = {arg.value.value for node in nodes if type(node) is cst.Call
                  for arg in node.args if type(arg.value) is cst.Name}
        aliases = {(node.value.value, target.target.value) for node in nodes if type(node) is cst.Assign
                   and type(node.value) is cst.Name for target in node.targets if type(target.target) is cst.Name}
        handed |= {name for name, alias in aliases if alias in handed}  # (`test_fn = run_once`, then handed)
        return [flow for flow in closures if flow.function.name in handed]

    # -- what rules ask ---------------------------------------------------------------
    def function_trains(self, function: FunctionInfo | None) -> bool:
        """Does it train: a training step, itself or through a helper, or gradients used?"""
        if function in self._training_functions:  # flows so far, during a run
            return True
        if function is None:
            return self.collector.module_uses_gradients
        return function.uses_gradients

    @cached_property
    def figures(self) -> FigureObjects:
        """Which names hold figures and axes (an output drawn on one is being looked at)."""
        return FigureObjects(self)

    @cached_property
    def trained_models(self) -> frozenset[tuple]:
        """(function, key) of every model a function of the file trains from data: its output reaches a
        backward with the graph while an optimizer steps, and its input is no other forward's output (a
        loss is fed). Whatever its constructor (`torchani.nn.Sequential(...)`), it has weights."""
        found = set()
        for flow in self.flows:
            trained = flow.training_forwards()
            first = flow.first_stages(trained)
            for forward in trained:
                if forward.fed:
                    continue
                if forward.token in first and not self.modules.is_module_name(forward.key, flow.function):
                    continue  # a first stage of a kind we cannot see (a data transform): the next one is trained
                found.add((flow.function, forward.key))
        return frozenset(found)

    @cached_property
    def given_back_for_training(self) -> frozenset:
        """Forward calls whose result a helper gives back and a caller (at some remove) trains on."""
        return frozenset(forward.via.node for flow in self.flows for forward in flow.helper_forwards.values()
                         if forward.via.given_back and "train" in forward.caller_uses)

    def is_trained_model(self, function: FunctionInfo | None, key: str) -> bool:
        """Is `key`, as `function` sees it, a model the file trains (there, or as the same global)?"""
        trained = self.trained_models
        if (function, key) in trained:
            return True
        attribute = _instance_attribute(function, key)
        if attribute is not None and self.modules.names.holds_a_function(function.cls, key):
            return False  # `self.loss = util.masked_mae`: a function, whatever its output reaches
        if attribute is not None and self.index is None:
            self.unresolved |= self.modules.names.referenced(function.cls, key)  # (the index may know it)
        if attribute is not None:
            # `self.q(s)` in `act()` is the `self.q` that `learn()` trains: one object's attribute (also
            # a base class's template method and its subclass's hook).
            return any(f is not None and f.cls is not None and self._one_object(f.cls, function.cls)
                       and _instance_attribute(f, k) == attribute for f, k in trained)
        if key not in self.global_models or (function is not None and key not in self.free.globals_of(function)):
            return False
        return any(k == key and (f is None or key in self.free.globals_of(f)) for f, k in trained)

    def _one_object(self, cls, other) -> bool:
        """May methods of these two classes of the file run on one object (the same class, or one a base of
        the other)?"""
        return cls is other or cls.name in self.class_and_bases(other.name) \
            or other.name in self.class_and_bases(cls.name)

    @cached_property
    def _assigned_attributes(self) -> set[tuple[str, str]]:
        """(class name, `self.x`) for every `self.x = ...` in a method of the class."""
        return {(a.site.cls.name, key) for a in self.collector.attribute_assigns
                if a.site.cls is not None and (key := dotted(a.target)) is not None and key.startswith("self.")}

    def has_method(self, cls, name: str) -> bool:
        """Does the class define method `name`, itself or through its bases in this file?"""
        classes = self.modules.classes
        return any(name in classes[c].methods for c in self.class_and_bases(cls.name) if c in classes)

    def defines_forward(self, cls) -> bool:
        """Does the class define `forward`, itself or through its bases in this file? A module, or one in
        all but name: what the index says of a base elsewhere would change nothing about it. (Not a class
        with no base at all, `class PytorchModelAdapter:`: its `forward` is a method like any other.)"""
        return self.has_method(cls, "forward") and any(
            dotted(base) not in self.modules.classes and dotted(base) != "object"
            for name in self.class_and_bases(cls.name)
            for base in (self.modules.classes[name].bases if name in self.modules.classes else ()))

    def serving_handler(self, cls) -> bool:
        """A TorchServe handler class (a base of it, at any depth here, comes from `ts.torch_handler`)."""
        if cls is None:
            return False
        for name in self.class_and_bases(cls.name):
            info = self.modules.classes.get(name)
            for base in info.bases if info is not None else ():
                if (self.imports.qualify(base) or "").startswith(api.SERVING_HANDLER_PREFIXES):
                    return True
        return False

    def assigned_attribute(self, cls, key: str) -> bool:
        return any((name, key) in self._assigned_attributes for name in self.class_and_bases(cls.name))

    def grad_effect(self, expr: cst.BaseExpression) -> str | None:
        found = grad_effect(self.imports, expr)
        if found is None and type(expr) is cst.Call and type(expr.func) is cst.Name \
                and (maker := self.local_functions.get(expr.func.value)) is not None and maker.cls is None:
            found = returned_grad_context(self.imports, maker)  # (`with grad_off():`, a helper handing back no_grad)
        return found

    def branch_grad_effect(self, expr: cst.BaseExpression) -> str | None:
        return branch_grad_effect(self.imports, expr)

    @cached_property
    def call_ordinals(self) -> dict[cst.Call, int]:
        """Calls by their place in the collector's list: how other files name them."""
        return {site.node: i for i, site in enumerate(self.collector.calls)}

    def file_summary(self) -> FileSummary:
        """The picklable part other files need (modelint.facts.export)."""
        from modelint.facts.export import file_summary

        return file_summary(self)



def _same_effects(a: dict[str, FunctionSummary], b: dict[str, FunctionSummary]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].effects == b[k].effects and len(a[k].forwards) == len(b[k].forwards)
        and [u.intent for u in a[k].forwards] == [u.intent for u in b[k].forwards]
        and len(a[k].steps) == len(b[k].steps) and a[k].returns == b[k].returns and a[k].trains == b[k].trains
        for k in a
    )


def _instance_attribute(function: FunctionInfo | None, key: str) -> str | None:
    """`self.q` read in a method of a class (itself, not a closure in it): the attribute path after the
    method's `self` ("q")."""
    if function is None or function.cls is None or "." not in key:
        return None
    root, attribute = key.split(".", 1)
    return attribute if instance_method(function, root) is function else None
