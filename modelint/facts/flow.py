"""Mode flow: the train/eval mode of each model and the grad mode along every path.

`ModeFlow` runs a small abstract interpreter over each function body (and the
module-level script): statements in order, `if`/`match` branches joined, loop
bodies re-run until the state at the loop head is stable (so eval() late in a
body reaches the top of the next iteration), `try`/`finally`, `with` blocks
that disable autograd, early `return`/`break`/`continue`.

The state keeps, per model expression (`model`, `self.net.encoder`), which
statements may have put it in train or eval mode on a path reaching here, and
whether its mode is unknown (a parameter, or after a call we cannot see into).
Rules read the observations made at forward calls and training steps.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.collector import Collector, FunctionInfo
from modelint.facts.modules import Dependence, ModuleTable
from modelint.facts.names import dotted, literal_value, tokens
from modelint.facts.walk import iter_nodes
from modelint.summary import EvalUse, FileSummary, FunctionSummary, ProjectIndex, RemoteSite

EVAL_WORDS = frozenset({"eval", "evaluate", "evaluation", "evaluating", "validate", "validation", "validating",
                        "valid", "val", "test", "testing", "predict", "prediction", "predictions", "infer",
                        "inference", "inferring"})
TRAIN_WORDS = frozenset({"train", "training", "fit", "finetune", "optimize", "backward", "learn"})
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))
_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test|conftest)\.py$|(^|/)tests?/")


def is_evaluation_name(name: str, path: str = "") -> bool:
    """`evaluate`, `run_validation`, `predictBatch`: yes. `train_and_eval`: no (mixed).

    pytest's `test_*` functions in test files are unit tests, not evaluation loops.
    """
    if name.startswith("test_") and _TEST_FILE.search(path.replace("\\", "/")):
        return False
    words = set(tokens(name))
    return bool(words & EVAL_WORDS) and not (words & TRAIN_WORDS)


def names_evaluation_data(expr: cst.BaseExpression) -> bool:
    """Does a loop's iterable name validation/test data (`val_loader`, `loaders["test"]`)?"""
    words: set[str] = set()
    for node in iter_nodes(expr):
        if type(node) is cst.Name:
            words.update(tokens(node.value))
        elif type(node) is cst.SimpleString:
            value = node.evaluated_value
            if isinstance(value, str) and len(value) < 40:
                words.update(tokens(value))
    return bool(words & (EVAL_WORDS - {"predict", "prediction", "predictions", "infer", "inference"})) and not (
        words & TRAIN_WORDS
    )


@dataclass(frozen=True)
class ModeFact:
    """What may be true of one model's mode here, over all paths."""

    train_sites: frozenset = frozenset()  # constructions and train() calls that may reach here
    eval_sites: frozenset = frozenset()  # eval()/train(False) calls (or RemoteSites) that may reach here
    entry: bool = False  # the mode it had when the function was entered may reach here unchanged
    havoc: bool = False  # a call we cannot see into may have changed it
    dependence: Dependence = Dependence.UNKNOWN
    certain: bool = True  # known to be an nn.Module (not merely a capitalised call)
    origin: str | None = None  # the imported class it was built from, when this file cannot see it

    def join(self, other: "ModeFact") -> "ModeFact":
        return ModeFact(
            self.train_sites | other.train_sites,
            self.eval_sites | other.eval_sites,
            self.entry or other.entry,
            self.havoc or other.havoc,
            max(self.dependence, other.dependence),
            self.certain and other.certain,
            self.origin if self.origin == other.origin else None,
        )

    @property
    def unknown(self) -> bool:
        return self.entry or self.havoc

    @property
    def definitely_train(self) -> bool:
        return bool(self.train_sites) and not self.eval_sites and not self.unknown

    @property
    def definitely_eval(self) -> bool:
        return bool(self.eval_sites) and not self.train_sites and not self.unknown

    @property
    def exit_effect(self) -> str | None:
        """Net effect of a function on this model, seen from its caller (None: unchanged)."""
        if self.havoc:
            return "unknown"
        if self.train_sites and self.eval_sites:
            return "unknown"
        if self.eval_sites:
            return "may-eval" if self.entry else "eval"
        if self.train_sites:
            return "may-train" if self.entry else "train"
        return None


ENTRY_MODE = ModeFact(entry=True)


@dataclass(frozen=True)
class GradFact:
    free_sites: frozenset = frozenset()  # with-blocks/decorators/statements that disabled autograd
    may_enabled: bool = False
    unknown: bool = False  # function entry: the caller's grad mode

    def join(self, other: "GradFact") -> "GradFact":
        return GradFact(self.free_sites | other.free_sites, self.may_enabled or other.may_enabled,
                        self.unknown or other.unknown)

    @property
    def definitely_free(self) -> bool:
        return bool(self.free_sites) and not self.may_enabled and not self.unknown


GRAD_ENABLED = GradFact(may_enabled=True)
GRAD_UNKNOWN = GradFact(unknown=True)


@dataclass
class State:
    models: dict[str, ModeFact]
    grad: GradFact
    aliases: dict[str, str]
    # Names bound to values computed under no_grad on every path (MDL007): name -> region.
    grad_free_values: dict[str, cst.CSTNode] = field(default_factory=dict)

    def copy(self) -> "State":
        return State(dict(self.models), self.grad, dict(self.aliases), dict(self.grad_free_values))

    def canonical(self, key: str) -> str:
        head, dot, rest = key.partition(".")
        target = self.aliases.get(head)
        return f"{target}{dot}{rest}" if target else key

    def fact(self, key: str) -> ModeFact:
        return self.models.get(key, ENTRY_MODE)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, State) and self.models == other.models and self.grad == other.grad
                and self.aliases == other.aliases and self.grad_free_values == other.grad_free_values)


def join(a: State | None, b: State | None) -> State | None:
    if a is None:
        return b.copy() if b is not None else None
    if b is None:
        return a.copy()
    models: dict[str, ModeFact] = {}
    for key in a.models.keys() | b.models.keys():
        models[key] = a.fact(key).join(b.fact(key))
    aliases = {k: v for k, v in a.aliases.items() if b.aliases.get(k) == v}
    tainted = {k: v for k, v in a.grad_free_values.items() if k in b.grad_free_values}
    return State(models, a.grad.join(b.grad), aliases, tainted)


@dataclass
class Forward:
    """A forward call of a tracked model, with the mode and grad facts over all paths."""

    call: cst.Call
    key: str
    mode: ModeFact
    grad: GradFact
    function: FunctionInfo | None
    in_evaluation_loop: bool


@dataclass
class TrainingStep:
    """`loss.backward()` / `optimizer.step()` with every tracked model's mode there."""

    call: cst.Call
    kind: str  # "backward" | "step"
    models: dict[str, ModeFact]
    grad: GradFact
    function: FunctionInfo | None
    receiver: str | None = None
    grad_free_region: cst.CSTNode | None = None  # the loss was computed in this no_grad region


@dataclass
class HelperEvaluation:
    """A caller passes a model in training mode to a helper that evaluates it."""

    use: EvalUse
    callee: FunctionSummary
    call: cst.Call  # the call in the caller
    caller: FunctionInfo | None
    key: str
    mode: ModeFact
    explicit_train_without_training: bool


@dataclass
class FunctionFlow:
    function: FunctionInfo | None
    forwards: dict[cst.Call, Forward] = field(default_factory=dict)
    steps: dict[cst.Call, TrainingStep] = field(default_factory=dict)
    helper_evaluations: dict[tuple, HelperEvaluation] = field(default_factory=dict)
    passed_modes: dict[cst.Call, ModeFact] = field(default_factory=dict)  # a helper's forward -> callers' mode
    exit_state: State | None = None
    trains: bool = False  # it has a training step (backward/step)


class ModeFlow:
    """Runs the interpreter once per function that touches mode, then again where
    summaries of this file's own functions (or the project index) say more than
    "unknown"."""

    MAX_ROUNDS = 3

    def __init__(self, collector: Collector, modules: ModuleTable, path: str,
                 index: ProjectIndex | None = None) -> None:
        self.collector = collector
        self.modules = modules
        self.imports = collector.imports
        self.path = path
        self.index = index
        self.flows: list[FunctionFlow] = []
        self.summaries: dict[str, FunctionSummary] = {}
        self.unresolved: set[str] = set()
        self._last_unresolved: str | None = None
        # Grad facts at calls of this file's own functions: "is evaluate() called under no_grad?"
        self.call_grad: dict[str, GradFact] = {}
        self._mode_setting_methods = {
            site.site.function.name
            for site in collector.calls
            if site.site.function is not None and site.site.function.cls is not None
            and isinstance(site.node.func, cst.Attribute) and site.node.func.attr.value in ("eval", "train")
        }
        self._local_functions: dict[str, FunctionInfo] = {}
        for function in collector.functions:
            if function.outer is None:
                key = f"{function.cls.name}.{function.name}" if function.cls is not None else function.name
                self._local_functions.setdefault(key, function)
        constructing = {
            site.function for _key, value, site in collector.call_assigns
            if modules.module_expression(value)[0] is not None
        }
        self._targets: list[FunctionInfo | None] = [
            f for f in collector.functions
            if f.mode_relevant or f.calls_params or f in constructing
            or (f.calls_self_attribute and f.cls is not None and not modules.is_module_class(f.cls))
        ]
        if collector.module_mode_relevant or None in constructing or collector.module_calls_functions:
            self._targets.append(None)
        self._run()

    # -- rounds ---------------------------------------------------------------
    def _run(self) -> None:
        previous: dict[str, FunctionSummary] | None = None
        for _ in range(self.MAX_ROUNDS):
            self.call_grad = {}
            self.unresolved = set()
            self.flows = [self._run_function(f) if f is not None else self._run_module() for f in self._targets]
            summaries = {}
            for flow in self.flows:
                if flow.function is not None and flow.function.outer is None:
                    summary = self._summarise(flow)
                    summaries[summary.qualname] = summary
            self.summaries = summaries
            if previous is not None and _same_effects(previous, summaries):
                break
            if not any(not s.trivial for s in summaries.values()):
                break
            previous = summaries

    def _run_function(self, function: FunctionInfo) -> FunctionFlow:
        flow = FunctionFlow(function)
        grad = GRAD_UNKNOWN
        for decorator in function.decorators:
            if disables_grad(self.imports, decorator):
                grad = GradFact(free_sites=frozenset({decorator}))
        walker = _Walker(self, flow)
        end = walker.block(function.node.body, State({}, grad, {}))
        flow.exit_state = walker.exit(end)
        flow.trains = bool(flow.steps)
        return flow

    def _run_module(self) -> FunctionFlow:
        flow = FunctionFlow(None)
        walker = _Walker(self, flow)
        flow.exit_state = walker.statements(self.collector.module_node.body, State({}, GRAD_ENABLED, {}))
        flow.trains = bool(flow.steps)
        return flow

    # -- summaries ------------------------------------------------------------
    def _summarise(self, flow: FunctionFlow) -> FunctionSummary:
        function = flow.function
        qualname = f"{function.cls.name}.{function.name}" if function.cls is not None else function.name
        params = function.params
        summary = FunctionSummary(qualname, self.path, params, is_method=function.cls is not None,
                                  trains=flow.trains)
        exit_state = flow.exit_state
        if exit_state is not None:
            for key, fact in exit_state.models.items():
                head = key.split(".")[0]
                if head not in params or (head in ("self", "cls") and "." not in key):
                    continue
                effect = fact.exit_effect
                if effect is None:
                    continue
                summary.effects[key] = effect
                sites = fact.eval_sites if "eval" in effect else fact.train_sites
                site = _first(sites)
                if site is not None:
                    summary.effect_sites[key] = site
        for forward in flow.forwards.values():
            param = forward.key
            head = param.split(".")[0]
            # A parameter, or a model attribute of `self` in a method (`Trainer.validate`).
            if head not in params or param in ("self", "cls") or forward.mode != ENTRY_MODE:
                continue
            if "." in param and head != "self":
                continue
            if forward.grad.definitely_free:
                context = "under no_grad"
            elif forward.in_evaluation_loop:
                context = "over validation/test data"
            elif not flow.trains and not function.uses_gradients and is_evaluation_name(function.name, self.path):
                context = f"in {function.name}()"
            elif forward.grad.unknown and not forward.grad.free_sites:
                context = None
            else:
                continue
            summary.evaluates.append(EvalUse(param, self.path, context, node=forward.call))
        return summary

    @cached_property
    def _call_ordinals(self) -> dict[cst.Call, int]:
        return {site.node: i for i, site in enumerate(self.collector.calls)}

    def remote(self, site, kind: str) -> RemoteSite | None:
        if isinstance(site, RemoteSite):
            return site
        ordinal = self._call_ordinals.get(site)
        if ordinal is None:
            return None
        text = cst.Module(body=[]).code_for_node(site)
        return RemoteSite(self.path, ordinal, kind, " ".join(text.split())[:60])

    def file_summary(self) -> FileSummary:
        """The picklable part other files need: positions are computed here, only for what leaves."""
        # An imported class matters when a model built from it is evaluated in training
        # mode: the index may know it is a pure MLP, which mode cannot change.
        refs = set(self.unresolved) | {
            forward.mode.origin for flow in self.flows for forward in flow.forwards.values()
            if forward.mode.origin and forward.mode.definitely_train and forward.mode.dependence is Dependence.UNKNOWN
        }
        exported: dict[str, FunctionSummary] = {}
        for name, summary in self.summaries.items():
            effects = {k: v for k, v in summary.effects.items() if not k.startswith(("self.", "cls."))}
            if all(v == "unknown" for v in effects.values()) and not summary.evaluates:
                continue  # callers already assume the worst of a helper they cannot see
            out = FunctionSummary(summary.qualname, self.path, summary.params, effects, is_method=summary.is_method,
                                  trains=summary.trains)
            for key in effects:
                site = summary.effect_sites.get(key)
                remote = self.remote(site, "eval" if "eval" in effects[key] else "train") if site is not None else None
                if remote is not None:
                    out.effect_sites[key] = remote
            for use in summary.evaluates:
                if use.param.startswith("self."):
                    continue
                ordinal = self._call_ordinals.get(use.node)
                if ordinal is not None:
                    out.evaluates.append(EvalUse(use.param, self.path, use.context, ordinal))
            exported[name] = out
        return FileSummary(self.path, exported, refs, self.modules.class_summaries())

    # -- calls ------------------------------------------------------------------
    def resolve(self, call: cst.Call, enclosing: FunctionInfo | None) -> tuple[FunctionSummary | None, str | None]:
        """The summary of the function a call runs, and the receiver its `self` maps to."""
        func = call.func
        if isinstance(func, cst.Name):
            name = func.value
            if name in self._local_functions and name not in self.imports.bindings:
                return self.summaries.get(name), None
            qualified = self.imports.bindings.get(name)
            if qualified is not None:
                return self._resolve_imported(qualified), None
            return None, None
        if isinstance(func, cst.Attribute):
            receiver = dotted(func.value)
            if receiver == "self" and enclosing is not None and enclosing.cls is not None:
                for cls_name in self._class_and_bases(enclosing.cls.name):
                    key = f"{cls_name}.{func.attr.value}"
                    if key in self._local_functions:
                        return self.summaries.get(key), "self"
                return None, None
            if receiver is not None:
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
        self._last_unresolved = qualified
        if self.index is None:
            return None
        return self.index.resolve(qualified, self.path)

    def _class_and_bases(self, name: str) -> list[str]:
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

    def grad_effect(self, expr: cst.BaseExpression) -> str | None:
        return grad_effect(self.imports, expr)


def _misspelled_no_grad(qualified: str | None) -> bool:
    if not qualified or not qualified.startswith("torch.") or qualified.count(".") != 1:
        return False
    name = qualified[6:]
    if name in api.TORCH_GRAD_API:
        return False
    from modelint.textutil import edit_distance

    return name == "zero_grad" or any(edit_distance(name, real) <= 2 for real in ("no_grad", "inference_mode"))


def _same_effects(a: dict[str, FunctionSummary], b: dict[str, FunctionSummary]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].effects == b[k].effects and len(a[k].evaluates) == len(b[k].evaluates) for k in a
    )


def _first(sites: frozenset):
    for site in sites:
        if isinstance(site, RemoteSite):
            return site
    nodes = [s for s in sites if not isinstance(s, RemoteSite)]
    return nodes[0] if nodes else None


def disables_grad(imports, expr: cst.BaseExpression) -> bool:
    """Is this decorator/with-item a grad-free region (`@torch.no_grad`, `set_grad_enabled(False)`)?"""
    if isinstance(expr, cst.Call):
        return grad_effect(imports, expr) == "free"
    return imports.qualify(expr) in api.GRAD_DISABLING


def grad_effect(imports, expr: cst.BaseExpression) -> str | None:
    """'free', 'enabled', 'unknown' for a grad-mode call; None for anything else.

    `with torch.no_grad:` (no call) counts as what its author meant: MDL004 reports
    the TypeError, and nothing below it should be blamed on a missing no_grad.
    """
    if isinstance(expr, (cst.Name, cst.Attribute)):
        qualified = imports.qualify(expr)
        return "free" if qualified in api.GRAD_DISABLING else "enabled" if qualified in api.GRAD_ENABLING else None
    if not isinstance(expr, cst.Call):
        return None
    qualified = imports.qualify(expr.func)
    if _misspelled_no_grad(qualified):
        return "free"  # `with torch.zero_grad():` / `torch.nograd()`: MDL011 reports the name
    if qualified in api.GRAD_DISABLING:
        return "enabled" if expr.args and literal_value(expr.args[0].value) is False else "free"
    if qualified in api.GRAD_ENABLING:
        return "enabled"
    if qualified in api.SET_GRAD_ENABLED:
        value = literal_value(expr.args[0].value) if expr.args else None
        return "free" if value is False else "enabled" if value is True else "unknown"
    return None


class _Walker:
    def __init__(self, flow: ModeFlow, out: FunctionFlow) -> None:
        self.flow = flow
        self.out = out
        self.params = set(out.function.params) if out.function is not None else set()
        self.evaluation_loops = 0
        self.loop_exits: list[tuple[list[State], list[State]]] = []  # (breaks, continues)
        self.returns: list[State] = []

    def exit(self, end: State | None) -> State | None:
        result = end
        for state in self.returns:
            result = join(result, state)
        return result

    # -- statements -----------------------------------------------------------
    def block(self, body: cst.BaseSuite, state: State | None) -> State | None:
        if isinstance(body, cst.SimpleStatementSuite):
            return self.small_statements(body.body, state)
        return self.statements(body.body, state)

    def statements(self, stmts, state: State | None) -> State | None:
        for stmt in stmts:
            if state is None:
                return None
            state = self.statement(stmt, state)
        return state

    def small_statements(self, smalls, state: State | None) -> State | None:
        for small in smalls:
            if state is None:
                return None
            state = self.small(small, state)
        return state

    def statement(self, stmt: cst.CSTNode, state: State) -> State | None:
        if isinstance(stmt, cst.SimpleStatementLine):
            return self.small_statements(stmt.body, state)
        if isinstance(stmt, cst.If):
            return self.if_(stmt, state)
        if isinstance(stmt, (cst.For, cst.While)):
            return self.loop(stmt, state)
        if isinstance(stmt, cst.With):
            return self.with_(stmt, state)
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            return self.try_(stmt, state)
        if isinstance(stmt, cst.Match):
            self.calls_of(stmt, state)
            result = state.copy()
            for case in stmt.cases:
                result = join(result, self.block(case.body, state.copy()))
            return result
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            self.kill(state, stmt.name.value)
            return state
        return state

    def if_(self, stmt: cst.If, state: State) -> State | None:
        """An `if`/`elif`/`else` chain, in a loop: a file may have thousands of `elif`s."""
        branches: list[tuple[cst.If, State | None]] = []  # each test's statement and its body's end state
        while True:
            self.calls_of(stmt, state)
            branches.append((stmt, self.block(stmt.body, state.copy())))
            if stmt.orelse is None:
                other = state
                break
            if isinstance(stmt.orelse, cst.If):
                stmt, state = stmt.orelse, state.copy()
                continue
            other = self.block(stmt.orelse.body, state.copy())
            break
        for stmt, then in reversed(branches):
            merged = join(then, other)
            if merged is not None and then is not None and other is not None and stmt.orelse is not None:
                # `if training: model.train() else: model.eval()`: the mode follows a condition
                # the code tests again later; which one holds is not ours to guess.
                for key, fact in merged.models.items():
                    a, b = then.fact(key), other.fact(key)
                    if {a.definitely_train, b.definitely_train} == {True, False} and \
                            {a.definitely_eval, b.definitely_eval} == {True, False} and not fact.havoc:
                        merged.models[key] = replace(fact, havoc=True)
            other = merged
        return other

    def small(self, node: cst.BaseSmallStatement, state: State) -> State | None:
        if isinstance(node, cst.Expr):
            effect = self.flow.grad_effect(node.value)
            self.calls_of(node, state)
            if effect is not None and isinstance(node.value, cst.Call) and \
                    self.flow.imports.qualify(node.value.func) in api.SET_GRAD_ENABLED:
                state.grad = {"free": GradFact(free_sites=frozenset({node})), "enabled": GRAD_ENABLED,
                              "unknown": GRAD_UNKNOWN}[effect]
            return state
        if isinstance(node, cst.Assign):
            self.calls_of(node, state)
            for target in node.targets:
                self.bind(target.target, node.value, state)
            return state
        if isinstance(node, cst.AnnAssign):
            self.calls_of(node, state)
            self.bind(node.target, node.value, state)
            return state
        if isinstance(node, cst.AugAssign):
            self.calls_of(node, state)
            key = dotted(node.target)
            if key is not None:
                self._taint(state, key)
            return state
        if isinstance(node, cst.Return):
            self.calls_of(node, state)
            self.returns.append(state.copy())
            return None
        if isinstance(node, cst.Raise):
            self.calls_of(node, state)
            return None
        if isinstance(node, (cst.Break, cst.Continue)):
            if self.loop_exits:
                breaks, continues = self.loop_exits[-1]
                (breaks if isinstance(node, cst.Break) else continues).append(state)
            return None
        if isinstance(node, cst.Del):
            for element in _flatten(node.target):
                key = dotted(element)
                if key is not None:
                    self.kill(state, key)
            return state
        self.calls_of(node, state)  # assert, global, pass, import...
        return state

    def loop(self, stmt: cst.For | cst.While, state: State) -> State | None:
        evaluation = False
        if isinstance(stmt, cst.For):
            self.calls_of(stmt, state)
            evaluation = names_evaluation_data(stmt.iter)
        head = state.copy()
        exit_states: list[State] = [state.copy()]
        self.evaluation_loops += evaluation
        try:
            for _ in range(4):
                breaks: list[State] = []
                continues: list[State] = []
                self.loop_exits.append((breaks, continues))
                body_state = head.copy()
                if isinstance(stmt, cst.For):
                    for element in _flatten(stmt.target):
                        key = dotted(element)
                        if key is not None:
                            self.kill(body_state, key)
                else:
                    self.calls_of(stmt, body_state)
                end = self.block(stmt.body, body_state)
                self.loop_exits.pop()
                exit_states.extend(breaks)
                new_head = head
                for s in (end, *continues):
                    new_head = join(new_head, s)
                if new_head == head:
                    break
                head = new_head
        finally:
            self.evaluation_loops -= evaluation
        result = None
        for s in (head, *exit_states):
            result = join(result, s)
        if stmt.orelse is not None and result is not None:
            result = self.block(stmt.orelse.body, result)
        return result

    def with_(self, stmt: cst.With, state: State) -> State | None:
        before = state.grad
        self.calls_of(stmt, state)
        for item in stmt.items:
            effect = self.flow.grad_effect(item.item)
            if effect == "free":
                state.grad = GradFact(free_sites=frozenset({item}))
            elif effect == "enabled":
                state.grad = GRAD_ENABLED
            elif effect == "unknown":
                state.grad = GRAD_UNKNOWN
            if item.asname is not None:
                for element in _flatten(item.asname.name):
                    key = dotted(element)
                    if key is not None:
                        self.kill(state, key)
        after = self.block(stmt.body, state)
        if after is not None:
            after.grad = before
        return after

    def try_(self, stmt, state: State) -> State | None:
        body = self.block(stmt.body, state.copy())
        handler_entry = join(state, body)
        result = body
        if stmt.orelse is not None and body is not None:
            result = self.block(stmt.orelse.body, body)
        for handler in stmt.handlers:
            result = join(result, self.block(handler.body, handler_entry.copy()))
        if stmt.finalbody is not None:
            entry = result if result is not None else handler_entry
            finished = self.block(stmt.finalbody.body, entry.copy())
            return finished if result is not None else None
        return result

    # -- bindings -----------------------------------------------------------
    def kill(self, state: State, key: str) -> None:
        for known in list(state.models):
            if known == key or known.startswith(key + "."):
                del state.models[known]
        state.aliases.pop(key, None)
        state.grad_free_values.pop(key, None)
        for alias, target in list(state.aliases.items()):
            if target == key:
                del state.aliases[alias]
        self.params.discard(key)

    def _taint(self, state: State, key: str) -> None:
        if state.grad.definitely_free:
            state.grad_free_values[key] = _first(state.grad.free_sites)
        else:
            state.grad_free_values.pop(key, None)

    def bind(self, target: cst.BaseExpression, value: cst.BaseExpression | None, state: State) -> None:
        key = dotted(target)
        if key is None:
            for element in _flatten(target):
                inner = dotted(element)
                if inner is not None:
                    self.kill(state, inner)
                    self._taint(state, inner)
            return
        key = state.canonical(key) if "." in key else key
        if value is None:
            self.kill(state, key)
            return
        built, applied = self.flow.modules.module_expression(value)
        if built is not None:
            self.kill(state, key)
            fact = ModeFact(
                train_sites=frozenset() if built.starts_in_eval else frozenset({built.call}),
                eval_sites=frozenset({built.call}) if built.starts_in_eval else frozenset(),
                dependence=built.dependence,
                certain=built.certain,
                origin=built.origin,
            )
            for call in applied:
                fact = _apply_mode_call(fact, call) or fact
            state.models[key] = fact
            return
        source = _receiver_of_chain(value, self.flow)
        if source is not None:
            source = state.canonical(source)
            if source in state.models or source in self.params:
                if source == key:
                    return
                self.kill(state, key)
                if "." not in key:
                    state.aliases[key] = source
                else:
                    state.models[key] = state.fact(source)
                return
        self.kill(state, key)
        self._taint(state, key)

    # -- expressions ----------------------------------------------------------
    def calls_of(self, owner: cst.CSTNode, state: State) -> None:
        """Apply the calls made by a small statement or a compound statement's header, in order."""
        for call in self.flow.collector.calls_by_owner.get(owner, ()):
            self.call(call, state)

    def _is_model(self, state: State, key: str) -> bool:
        if key in state.models or key in self.params:
            return True
        # `self.model(x)` in a trainer-like class: its mode comes from the other methods.
        function = self.out.function
        return (key.startswith("self.") and key.count(".") == 1 and function is not None
                and function.cls is not None and not self.flow.modules.is_module_class(function.cls))

    def call(self, call: cst.Call, state: State) -> None:
        flow = self.flow
        func = call.func
        if isinstance(func, cst.Name) or (isinstance(func, cst.Attribute) and dotted(func.value) == "self"):
            name = func.value if isinstance(func, cst.Name) else func.attr.value
            previous = flow.call_grad.get(name)
            flow.call_grad[name] = state.grad if previous is None else previous.join(state.grad)
        key = dotted(func)
        if key is not None:
            canonical = state.canonical(key)
            if self._is_model(state, canonical):
                self._forward(call, canonical, state)
        if isinstance(func, cst.Attribute):
            receiver = dotted(func.value)
            method = func.attr.value
            if receiver is not None:
                receiver = state.canonical(receiver)
                if method in ("eval", "train"):
                    self.set_mode(state, receiver, call)
                    return
                if method == "forward" and self._is_model(state, receiver):
                    self._forward(call, receiver, state)
                elif method == "backward" or (method == "step" and _is_optimizer_step(receiver, call)):
                    self._step(call, "backward" if method == "backward" else "step", state, receiver)
                elif method == "apply" or (method in flow._mode_setting_methods and _tracked(state, receiver)):
                    self.havoc(state, receiver)
        qualified = flow.imports.qualify(func)
        if qualified in api.BACKWARD_FUNCTIONS:
            self._step(call, "backward", state, None)
        if qualified in api.MODE_NEUTRAL_FUNCTIONS or (isinstance(func, cst.Name) and func.value in _NEUTRAL_BUILTINS):
            return
        if isinstance(func, cst.Attribute) and func.attr.value in _NEUTRAL_METHODS | api.MODE_PRESERVING_METHODS:
            return
        flow._last_unresolved = None
        summary, self_receiver = flow.resolve(call, self.out.function)
        if summary is not None:
            self.apply_summary(summary, call, state, self_receiver)
            return
        for arg in call.args:
            arg_key = dotted(arg.value)
            if arg_key is not None:
                arg_key = state.canonical(arg_key)
                if _tracked(state, arg_key) or (arg_key in self.params and arg_key not in ("self", "cls")):
                    self.havoc(state, arg_key)
                    if flow._last_unresolved is not None:
                        # Another file's helper may know what it does to this model.
                        flow.unresolved.add(flow._last_unresolved)

    def apply_summary(self, summary: FunctionSummary, call: cst.Call, state: State, self_receiver: str | None) -> None:
        params = list(summary.params)
        if summary.is_method and params and params[0] in ("self", "cls"):
            params = params[1:]
        bound: dict[str, str] = {}
        positional = 0
        for arg in call.args:
            if arg.star:
                break
            if arg.keyword is not None:
                name = arg.keyword.value
            elif positional < len(params):
                name = params[positional]
                positional += 1
            else:
                continue
            arg_key = dotted(arg.value)
            if arg_key is not None:
                bound[name] = state.canonical(arg_key)
        if self_receiver is not None:
            bound["self"] = self_receiver
        for use in summary.evaluates:
            head, dot, rest = use.param.partition(".")
            target = bound.get(head)
            if target is None:
                continue
            key = f"{target}{dot}{rest}"
            fact = state.fact(key)
            if use.node is not None:  # same file: what the helper's forward receives (runtime verify reads it)
                known = self.out.passed_modes.get(use.node)
                self.out.passed_modes[use.node] = fact if known is None else known.join(fact)
            if not fact.definitely_train or not fact.dependence.may_depend:
                continue
            if not fact.certain and not self.flow.modules.is_module_name(key, self.out.function):
                continue  # a capitalised call we cannot tell from a processor or a config
            if use.context is None and not state.grad.definitely_free:
                continue
            explicit = any(is_train_site(s) for s in fact.train_sites)
            record = HelperEvaluation(use, summary, call, self.out.function, key, fact, explicit)
            seen = self.out.helper_evaluations.get((use, call))
            if seen is not None:
                record.mode = seen.mode.join(fact)
            self.out.helper_evaluations[(use, call)] = record
        for param_key, effect in summary.effects.items():
            head, dot, rest = param_key.partition(".")
            target = bound.get(head)
            if target is None:
                continue
            key = f"{target}{dot}{rest}"
            site = summary.effect_sites.get(param_key)
            current = state.fact(key)
            if effect == "unknown" or site is None:
                self.havoc(state, key)
                continue
            if "eval" in effect:
                changed = replace(current, train_sites=frozenset(), eval_sites=frozenset({site}), entry=False, havoc=False)
            else:
                # A training routine's train() is for training, not deliberate sampling (MC dropout):
                # the call of the routine itself stands for it.
                origin = call if summary.trains else site
                changed = replace(current, train_sites=frozenset({origin}), eval_sites=frozenset(), entry=False,
                                  havoc=False)
            if effect.startswith("may-"):
                changed = changed.join(current)
            self._set(state, key, changed)

    def set_mode(self, state: State, key: str, call: cst.Call) -> None:
        current = state.models.get(key)
        base = current if current is not None else ModeFact()
        updated = _apply_mode_call(replace(base, entry=False, havoc=False), call)
        if updated is None:
            self.havoc(state, key)
            return
        self._set(state, key, updated)

    def _set(self, state: State, key: str, updated: ModeFact) -> None:
        for known in list(state.models):
            if known.startswith(key + "."):
                state.models[known] = replace(state.models[known], train_sites=updated.train_sites,
                                              eval_sites=updated.eval_sites, entry=False, havoc=updated.havoc)
        state.models[key] = updated
        # A parent with one child switched is in no single mode any more (e.g. frozen BatchNorm).
        parts = key.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in state.models:
                state.models[parent] = replace(state.models[parent], havoc=True)

    def havoc(self, state: State, key: str) -> None:
        found = False
        for known in list(state.models):
            if known == key or known.startswith(key + "."):
                state.models[known] = replace(state.models[known], havoc=True)
                found = found or known == key
        if not found:
            state.models[key] = ModeFact(havoc=True)

    def _forward(self, call: cst.Call, key: str, state: State) -> None:
        seen = self.out.forwards.get(call)
        fact = state.fact(key)
        if seen is None:
            self.out.forwards[call] = Forward(call, key, fact, state.grad, self.out.function, self.evaluation_loops > 0)
        else:
            seen.mode = seen.mode.join(fact)
            seen.grad = seen.grad.join(state.grad)

    def _step(self, call: cst.Call, kind: str, state: State, receiver: str | None) -> None:
        seen = self.out.steps.get(call)
        region = state.grad_free_values.get(receiver) if receiver is not None and kind == "backward" else None
        if seen is None:
            self.out.steps[call] = TrainingStep(call, kind, dict(state.models), state.grad, self.out.function,
                                                receiver, region)
        else:
            for key in seen.models.keys() | state.models.keys():
                seen.models[key] = seen.models.get(key, ENTRY_MODE).join(state.fact(key))
            seen.grad = seen.grad.join(state.grad)
            if region is None:
                seen.grad_free_region = None


def is_train_site(site) -> bool:
    """Was this mode set by an explicit `train()` (not by building the model)?"""
    if isinstance(site, RemoteSite):
        return site.kind == "train"
    return isinstance(site, cst.Call) and isinstance(site.func, cst.Attribute) and site.func.attr.value == "train"


_NEUTRAL_BUILTINS = frozenset({"print", "len", "isinstance", "str", "repr", "type", "id", "hasattr", "getattr",
                               "sum", "list", "tuple", "dict", "set", "sorted", "enumerate", "zip", "iter", "next",
                               "vars", "format", "max", "min", "any", "all"})
_NEUTRAL_METHODS = frozenset({"append", "extend", "format", "info", "debug", "warning", "log", "add_graph",
                              "watch", "update", "write", "add_scalar"})


def _tracked(state: State, key: str) -> bool:
    return any(known == key or known.startswith(key + ".") for known in state.models)


def _apply_mode_call(fact: ModeFact, call: cst.Call) -> ModeFact | None:
    """The fact after `.eval()` / `.train(...)`; None when the new mode is unknowable."""
    method = call.func.attr.value if isinstance(call.func, cst.Attribute) else None
    if method == "eval":
        if call.args:
            return None  # eval(x) raises TypeError: MDL006
        return replace(fact, train_sites=frozenset(), eval_sites=frozenset({call}), entry=False, havoc=False)
    if method == "train":
        if not call.args:
            mode: object = True
        elif len(call.args) == 1 and (call.args[0].keyword is None or call.args[0].keyword.value == "mode"):
            mode = literal_value(call.args[0].value)
        else:
            return None
        if mode is True:
            return replace(fact, train_sites=frozenset({call}), eval_sites=frozenset(), entry=False, havoc=False)
        if mode is False:
            return replace(fact, train_sites=frozenset(), eval_sites=frozenset({call}), entry=False, havoc=False)
        return None
    return fact


def _receiver_of_chain(value: cst.BaseExpression, flow: ModeFlow) -> str | None:
    """`model`, `model.to(dev)`, `nn.DataParallel(model)` -> "model"."""
    from modelint.facts.modules import unwrap_chain

    base, _ = unwrap_chain(value)
    if isinstance(base, cst.Call) and flow.imports.qualify(base.func) in api.MODULE_WRAPPERS and base.args:
        base, _ = unwrap_chain(base.args[0].value)
    return dotted(base)


def _is_optimizer_step(receiver: str, call: cst.Call) -> bool:
    last = receiver.rsplit(".", 1)[-1].lower()
    return "optim" in last or last in ("opt", "scaler") or last.endswith("_opt") or last.startswith("opt_")


def _flatten(target: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The names a (nested) tuple/list target binds, left to right."""
    out: list[cst.BaseExpression] = []
    stack = [target]
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.Tuple, cst.List)):
            stack.extend(element.value for element in reversed(node.elements))
        elif isinstance(node, cst.StarredElement):
            stack.append(node.value)
        else:
            out.append(node)
    return out
