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
from dataclasses import dataclass, field, replace

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.collector import Collector, FunctionInfo
from modelint.facts.modules import Dependence, ModuleTable
from modelint.facts.names import dotted, literal_value, tokens

EVAL_WORDS = frozenset({"eval", "evaluate", "evaluation", "evaluating", "validate", "validation", "validating",
                        "valid", "val", "test", "testing", "predict", "prediction", "predictions", "infer",
                        "inference", "inferring"})
TRAIN_WORDS = frozenset({"train", "training", "fit", "finetune", "optimize", "backward", "learn"})
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

    class _Words(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            words.update(tokens(node.value))

        def visit_SimpleString(self, node: cst.SimpleString) -> None:
            value = node.evaluated_value
            if isinstance(value, str) and len(value) < 40:
                words.update(tokens(value))

    expr.visit(_Words())
    return bool(words & (EVAL_WORDS - {"predict", "prediction", "predictions", "infer", "inference"})) and not (
        words & TRAIN_WORDS
    )


@dataclass(frozen=True)
class ModeFact:
    """What may be true of one model's mode here, over all paths."""

    train_sites: frozenset = frozenset()  # constructions and train() calls that may reach here
    eval_sites: frozenset = frozenset()  # eval()/train(False) calls that may reach here
    unknown: bool = False  # some path reaches with a mode we cannot know
    dependence: Dependence = Dependence.UNKNOWN
    certain: bool = True  # known to be an nn.Module (not merely a capitalised call)

    def join(self, other: "ModeFact") -> "ModeFact":
        return ModeFact(
            self.train_sites | other.train_sites,
            self.eval_sites | other.eval_sites,
            self.unknown or other.unknown,
            max(self.dependence, other.dependence),
            self.certain and other.certain,
        )

    @property
    def definitely_train(self) -> bool:
        return bool(self.train_sites) and not self.eval_sites and not self.unknown

    @property
    def definitely_eval(self) -> bool:
        return bool(self.eval_sites) and not self.train_sites and not self.unknown


UNKNOWN_MODE = ModeFact(unknown=True)


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

    def copy(self) -> "State":
        return State(dict(self.models), self.grad, dict(self.aliases))

    def canonical(self, key: str) -> str:
        head, dot, rest = key.partition(".")
        target = self.aliases.get(head)
        return f"{target}{dot}{rest}" if target else key

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, State) and self.models == other.models and self.grad == other.grad
                and self.aliases == other.aliases)


def join(a: State | None, b: State | None) -> State | None:
    if a is None:
        return b.copy() if b is not None else None
    if b is None:
        return a.copy()
    models: dict[str, ModeFact] = {}
    for key in a.models.keys() | b.models.keys():
        fa, fb = a.models.get(key), b.models.get(key)
        if fa is None or fb is None:
            models[key] = (fa or fb).join(UNKNOWN_MODE)
        else:
            models[key] = fa.join(fb)
    aliases = {k: v for k, v in a.aliases.items() if b.aliases.get(k) == v}
    return State(models, a.grad.join(b.grad), aliases)


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


@dataclass
class FunctionFlow:
    function: FunctionInfo | None
    forwards: dict[cst.Call, Forward] = field(default_factory=dict)
    steps: dict[cst.Call, TrainingStep] = field(default_factory=dict)
    exit_state: State | None = None


class _Break(Exception):
    pass


class ModeFlow:
    """Runs the interpreter lazily, once per function, on functions that touch mode."""

    def __init__(self, collector: Collector, modules: ModuleTable, path: str) -> None:
        self.collector = collector
        self.modules = modules
        self.imports = collector.imports
        self.path = path
        self.flows: list[FunctionFlow] = []
        # Grad facts at calls of this file's own functions: "is evaluate() called under no_grad?"
        self.call_grad: dict[str, GradFact] = {}
        self._mode_setting_methods = {
            site.site.function.name
            for site in collector.calls
            if site.site.function is not None and site.site.function.cls is not None
            and isinstance(site.node.func, cst.Attribute) and site.node.func.attr.value in ("eval", "train")
        }
        constructing = {
            site.function for _key, value, site in collector.call_assigns
            if modules.module_expression(value)[0] is not None
        }
        for function in collector.functions:
            if function.mode_relevant or function in constructing:
                self.flows.append(self._run_function(function))
        if collector.module_mode_relevant or None in constructing:
            self.flows.append(self._run_module(collector))

    # -- entry points ---------------------------------------------------------
    def _run_function(self, function: FunctionInfo) -> FunctionFlow:
        flow = FunctionFlow(function)
        grad = GRAD_UNKNOWN
        for decorator in function.decorators:
            if disables_grad(self.imports, decorator):
                grad = GradFact(free_sites=frozenset({decorator}))
        state = State({}, grad, {})
        walker = _Walker(self, flow, in_loop=False)
        flow.exit_state = walker.block(function.node.body, state)
        return flow

    def _run_module(self, collector: Collector) -> FunctionFlow:
        flow = FunctionFlow(None)
        module = collector.module_node
        walker = _Walker(self, flow, in_loop=False)
        flow.exit_state = walker.statements(module.body, State({}, GRAD_ENABLED, {}))
        return flow

    def grad_effect(self, expr: cst.BaseExpression) -> str | None:
        return grad_effect(self.imports, expr)


def disables_grad(imports, expr: cst.BaseExpression) -> bool:
    """Is this decorator/with-item a grad-free region (`@torch.no_grad`, `set_grad_enabled(False)`)?"""
    if isinstance(expr, cst.Call):
        return grad_effect(imports, expr) == "free"
    return imports.qualify(expr) in api.GRAD_DISABLING


def grad_effect(imports, expr: cst.BaseExpression) -> str | None:
    """'free', 'enabled', 'unknown' for a grad-mode call; None for anything else."""
    if not isinstance(expr, cst.Call):
        return None
    qualified = imports.qualify(expr.func)
    if qualified in api.GRAD_DISABLING:
        return "enabled" if expr.args and literal_value(expr.args[0].value) is False else "free"
    if qualified in api.GRAD_ENABLING:
        return "enabled"
    if qualified in api.SET_GRAD_ENABLED:
        value = literal_value(expr.args[0].value) if expr.args else None
        return "free" if value is False else "enabled" if value is True else "unknown"
    return None


class _Walker:
    def __init__(self, flow: ModeFlow, out: FunctionFlow, in_loop: bool) -> None:
        self.flow = flow
        self.out = out
        self.evaluation_loops = 0
        self.loop_exits: list[tuple[list[State], list[State]]] = []  # (breaks, continues)

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
            self.expr(stmt.test, state)
            then = self.block(stmt.body, state.copy())
            if stmt.orelse is None:
                other = state
            elif isinstance(stmt.orelse, cst.If):
                other = self.statement(stmt.orelse, state.copy())
            else:
                other = self.block(stmt.orelse.body, state.copy())
            return join(then, other)
        if isinstance(stmt, (cst.For, cst.While)):
            return self.loop(stmt, state)
        if isinstance(stmt, cst.With):
            return self.with_(stmt, state)
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            return self.try_(stmt, state)
        if isinstance(stmt, cst.Match):
            self.expr(stmt.subject, state)
            result = state.copy()
            for case in stmt.cases:
                result = join(result, self.block(case.body, state.copy()))
            return result
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            self.kill(state, stmt.name.value)
            return state
        return state

    def small(self, node: cst.BaseSmallStatement, state: State) -> State | None:
        if isinstance(node, cst.Expr):
            effect = self.flow.grad_effect(node.value)
            self.expr(node.value, state)
            if effect is not None and self.flow.imports.qualify(node.value.func) in api.SET_GRAD_ENABLED:
                state.grad = {"free": GradFact(free_sites=frozenset({node})), "enabled": GRAD_ENABLED,
                              "unknown": GRAD_UNKNOWN}[effect]
            return state
        if isinstance(node, cst.Assign):
            self.expr(node.value, state)
            for target in node.targets:
                self.bind(target.target, node.value, state)
            return state
        if isinstance(node, cst.AnnAssign):
            if node.value is not None:
                self.expr(node.value, state)
            self.bind(node.target, node.value, state)
            return state
        if isinstance(node, cst.AugAssign):
            self.expr(node.value, state)
            return state
        if isinstance(node, cst.Return):
            if node.value is not None:
                self.expr(node.value, state)
            return None
        if isinstance(node, cst.Raise):
            if node.exc is not None:
                self.expr(node.exc, state)
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
        if isinstance(node, (cst.Assert,)):
            self.expr(node.test, state)
        return state

    def loop(self, stmt: cst.For | cst.While, state: State) -> State | None:
        evaluation = False
        if isinstance(stmt, cst.For):
            self.expr(stmt.iter, state)
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
                    self.expr(stmt.test, body_state)
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
        for item in stmt.items:
            self.expr(item.item, state)
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
        for alias, target in list(state.aliases.items()):
            if target == key:
                del state.aliases[alias]

    def bind(self, target: cst.BaseExpression, value: cst.BaseExpression | None, state: State) -> None:
        key = dotted(target)
        if key is None:
            for element in _flatten(target):
                inner = dotted(element)
                if inner is not None:
                    self.kill(state, inner)
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
            )
            for call in applied:
                fact = _apply_mode_call(fact, call) or fact
            state.models[key] = fact
            return
        source = _receiver_of_chain(value, self.flow)
        if source is not None:
            source = state.canonical(source)
            if source in state.models:
                if source == key:
                    return
                self.kill(state, key)
                if "." not in key:
                    state.aliases[key] = source
                else:
                    state.models[key] = state.models[source]
                return
        self.kill(state, key)

    # -- expressions ----------------------------------------------------------
    def expr(self, expr: cst.BaseExpression, state: State) -> None:
        walker = self

        class _Calls(cst.CSTVisitor):
            def visit_Lambda(self, node: cst.Lambda) -> bool:
                return False

            def leave_Call(self, original_node: cst.Call) -> None:
                walker.call(original_node, state)

        expr.visit(_Calls())

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
            if canonical in state.models:
                self._forward(call, canonical, state)
        if isinstance(func, cst.Attribute):
            receiver = dotted(func.value)
            method = func.attr.value
            if receiver is not None:
                receiver = state.canonical(receiver)
                if method in ("eval", "train"):
                    self.set_mode(state, receiver, call)
                elif method == "forward" and receiver in state.models:
                    self._forward(call, receiver, state)
                elif method == "backward" or (method == "step" and _is_optimizer_step(receiver, call)):
                    self._step(call, "backward" if method == "backward" else "step", state)
                elif method == "apply" or (method in flow._mode_setting_methods and _tracked(state, receiver)):
                    self.havoc(state, receiver)
        qualified = flow.imports.qualify(func)
        if qualified in api.BACKWARD_FUNCTIONS:
            self._step(call, "backward", state)
        if qualified in api.MODE_NEUTRAL_FUNCTIONS or (isinstance(func, cst.Name) and func.value in _NEUTRAL_BUILTINS):
            return
        if isinstance(func, cst.Attribute) and func.attr.value in _NEUTRAL_METHODS:
            return
        for arg in call.args:
            value = arg.value
            arg_key = dotted(value)
            if arg_key is not None:
                arg_key = state.canonical(arg_key)
                if _tracked(state, arg_key):
                    self.havoc(state, arg_key)

    def set_mode(self, state: State, key: str, call: cst.Call) -> None:
        current = state.models.get(key)
        base = current if current is not None else ModeFact(unknown=True)
        updated = _apply_mode_call(replace(base, unknown=False), call)
        if updated is None:
            self.havoc(state, key)
            return
        if current is None:
            # First sight of this model in this scope: what it holds is not known here.
            updated = replace(updated, dependence=Dependence.UNKNOWN)
        for known in list(state.models):
            if known.startswith(key + "."):
                state.models[known] = replace(state.models[known], train_sites=updated.train_sites,
                                              eval_sites=updated.eval_sites, unknown=updated.unknown)
        state.models[key] = updated
        # A parent whose child changed mode is now partly in that mode.
        parts = key.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in state.models:
                state.models[parent] = state.models[parent].join(updated)

    def havoc(self, state: State, key: str) -> None:
        for known in list(state.models):
            if known == key or known.startswith(key + "."):
                state.models[known] = replace(state.models[known], unknown=True)

    def _forward(self, call: cst.Call, key: str, state: State) -> None:
        seen = self.out.forwards.get(call)
        fact = state.models[key]
        if seen is None:
            self.out.forwards[call] = Forward(call, key, fact, state.grad, self.out.function, self.evaluation_loops > 0)
        else:
            seen.mode = seen.mode.join(fact)
            seen.grad = seen.grad.join(state.grad)

    def _step(self, call: cst.Call, kind: str, state: State) -> None:
        seen = self.out.steps.get(call)
        if seen is None:
            self.out.steps[call] = TrainingStep(call, kind, dict(state.models), state.grad, self.out.function)
        else:
            for key, fact in state.models.items():
                seen.models[key] = seen.models[key].join(fact) if key in seen.models else fact.join(UNKNOWN_MODE)
            seen.grad = seen.grad.join(state.grad)


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
        return replace(fact, train_sites=frozenset(), eval_sites=frozenset({call}), unknown=False)
    if method == "train":
        if not call.args:
            mode: object = True
        elif len(call.args) == 1 and (call.args[0].keyword is None or call.args[0].keyword.value == "mode"):
            mode = literal_value(call.args[0].value)
        else:
            return None
        if mode is True:
            return replace(fact, train_sites=frozenset({call}), eval_sites=frozenset(), unknown=False)
        if mode is False:
            return replace(fact, train_sites=frozenset(), eval_sites=frozenset({call}), unknown=False)
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
    if isinstance(target, (cst.Tuple, cst.List)):
        out: list[cst.BaseExpression] = []
        for element in target.elements:
            out.extend(_flatten(element.value))
        return out
    if isinstance(target, cst.StarredElement):
        return _flatten(target.value)
    return [target]
