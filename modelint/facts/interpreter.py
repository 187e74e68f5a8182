"""The walk over one function body (or the module-level script): statements in order.

`if`/`match` branches are joined, loop bodies re-run until the state at the loop head is stable (an
`eval()` late in a body reaches the top of the next pass, unless only the last pass runs it), `try`/`finally`,
`with` blocks that switch autograd, early `return`/`break`/`continue`.
Each small statement first applies its calls (modelint.facts.calls), then binds its
targets (modelint.facts.bindings): which module a name now holds and which forward
outputs its value derives from.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.bindings import Bindings, flatten
from modelint.facts.branches import (Constants, asserting_the_flag, join_branches, knowing_the_condition,
                                      knowing_it_is_none, knowing_the_flag, tested_for_none)
from modelint.facts.calls import CallEffects
from modelint.facts.grad_choices import GradChoices
from modelint.facts.hidden_backward import models_held_by, names_handed
from modelint.facts.helper_arguments import argument_uses
from modelint.facts.input_gradients import gradients_of_inputs_only
from modelint.facts.intent import OutputUses
from modelint.facts.uses import CHECKED, TRAIN
from modelint.facts.value_calls import in_place, storage_owner
from modelint.facts.lattice import GRAD_ENABLED, GRAD_UNKNOWN, GradFact
from modelint.facts.loops import Loops
from modelint.facts.names import dotted, literal_value
from modelint.facts.phases import decide
from modelint.facts.returned_closures import names_read_by
from modelint.facts.scopes import flag_outcomes
from modelint.facts.state import State, join
from modelint.facts.training_steps import update_call
from modelint.facts.walk import iter_nodes


class Interpreter(Loops, Bindings, CallEffects, GradChoices):
    def __init__(self, flow, out, params: set[str]) -> None:
        super().__init__(flow, out, params)
        self.uses = OutputUses(flow.imports, out.forwards)
        self.uses.argument_uses = lambda call: argument_uses(flow, out.function, call)
        self.uses.update_call = lambda call: update_call(flow, out.function, call)
        self.uses.models_held_by = lambda call: models_held_by(flow, out.function, call)
        self.uses.models_handed = lambda call: names_handed(flow, call)
        self.uses.draws_on = lambda func: flow.figures.draws_on(func, out.function)
        self.uses.of_inputs_only = lambda call: gradients_of_inputs_only(out.function, call)
        self.loop_exits: list[tuple] = []  # (breaks, continues, the loop statement or None)
        self.returns: list[State] = []
        # Names whose value is known here: a phase loop's variable, `phases = ("train", "val")`.
        self.constants: dict[str, object] = {}
        # Names bound to a grad context picked by a test (`ctx = nullcontext() if training else torch.no_grad()`):
        # what entering them does ("free", "enabled", "unknown"; "keep" for a context that changes nothing).
        self.grad_choices: dict[str, str] = {}
        # `for m in net.modules():` while its body runs: m -> net (switching m switches part of net)
        self.parts: dict[str, str] = {}
        # Parameters whose `if p is None:` body runs: binding them there replaces no model of the caller's.
        self.filling: set[str] = set()

    @property
    def _local_calls(self):
        return self.flow.local_calls

    def run(self, body, state: State, phases: tuple[str, tuple] | None = None) -> State | None:
        """The function body (or the module's statements); with `phases`, once per value of a parameter that
        decides between training and evaluation, each pass with its value known (see modelint.facts.phases)."""
        run = self.block if not isinstance(body, (list, tuple)) else self.statements  # (a script's statements)
        if phases is None:
            end = run(body, state)
        else:
            name, values = phases
            self.out.phase_param = name
            end = None
            try:
                for value in values:
                    self.constants[name] = value
                    self.tag = self.uses.tag = ((name, value),)
                    returned = len(self.returns)
                    this_end = run(body, state.copy())
                    for s in self.returns[returned:]:
                        this_end = join(this_end, s)
                    self.out.phase_exits[value] = this_end  # (a caller naming the value gets this one)
                    end = join(end, this_end)
            finally:
                self.tag = self.uses.tag = ()
                self.constants.pop(name, None)
        for returned in self.returns:
            end = join(end, returned)
        self.out.uses = self.uses.uses
        self.out.feeds_into = self.uses.feeds_into
        self.out.compares = self.uses.compares
        return end

    # -- statements -----------------------------------------------------------
    def block(self, body: cst.BaseSuite, state: State | None) -> State | None:
        if type(body) is cst.SimpleStatementSuite:
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
        if type(stmt) is cst.SimpleStatementLine:
            return self.small_statements(stmt.body, state)
        if type(stmt) is cst.If:
            return self.if_(stmt, state)
        if type(stmt) in (cst.For, cst.While):
            return self.loop(stmt, state)
        if type(stmt) is cst.With:
            return self.with_(stmt, state)
        if type(stmt) in (cst.Try, cst.TryStar):
            return self.try_(stmt, state)
        if type(stmt) is cst.Match:
            self.calls_of(stmt, state)
            self.uses.expression(stmt.subject, state.values)
            result = state.copy()
            for case in stmt.cases:
                result = join(result, self.block(case.body, state.copy()))
            return result
        if type(stmt) in (cst.FunctionDef, cst.ClassDef):
            if type(stmt) is cst.FunctionDef:
                self._read_by_closure(stmt, state)
            self.forget(state, stmt.name.value)
            return state
        return state

    def _read_by_closure(self, stmt: cst.FunctionDef, state: State) -> None:
        """`def step(x): loss = mse_loss(target, net(x)); loss.backward()`, a closure defined here that back-propagates:
        the outputs it reads as free variables reach its backward pass (a style target, a teacher's logits)."""
        nested = self.flow.nested_functions.get((self.out.function, stmt.name.value)) \
            if self.out.function is not None else None
        if nested is not None and nested.uses_gradients:
            for name in names_read_by(nested):
                if state.values.get(name):
                    self.uses.use(state.values[name], TRAIN)

    def if_(self, stmt: cst.If, state: State) -> State | None:
        """An `if`/`elif`/`else` chain, in a loop: a file may have thousands of `elif`s."""
        branches: list[tuple[cst.If, State | None]] = []  # each test's statement and its body's end state
        constants = Constants(self)  # (`warming = False` in one branch: unknown after the `if`)
        while True:
            self.calls_of(stmt, state)
            self.uses.expression(stmt.test, state.values)
            decided = decide(stmt.test, self.constants)
            if decided is not None:  # `if phase == "train":` in a phase loop: one branch runs
                run_in = knowing_it_is_none(state.copy() if branches else state, stmt, decided)
                # (earlier branches compare with `state`)
                if decided or stmt.orelse is None or type(stmt.orelse) is not cst.If:
                    body = stmt.body if decided else stmt.orelse.body if stmt.orelse is not None else None
                    other = constants.branch(body, run_in)
                    break
                stmt = stmt.orelse
                continue
            filled = tested_for_none(stmt.test)
            filled = filled if filled in self.params and filled not in self.filling else None
            if filled is not None:
                self.filling.add(filled)
            then = constants.branch(stmt.body, self._knowing(state.copy(), stmt, True))
            if not branches:
                then = self.on_the_last_pass(stmt, then)
            branches.append((stmt, then))
            self.filling.discard(filled)
            if stmt.orelse is None:
                other = constants.branch(None, self._knowing(state, stmt, False))
                break
            if type(stmt.orelse) is cst.If:
                stmt, state = stmt.orelse, self._knowing(state.copy(), stmt, False)
                continue
            other = constants.branch(stmt.orelse.body, self._knowing(state.copy(), stmt, False))
            break
        constants.join()
        before = state  # (the state the tests ran in: what each branch started from)
        for stmt, then in reversed(branches):
            other = join_branches(before, then, other, stmt.orelse is not None)
        return other

    def _knowing(self, state: State, stmt: cst.If, holds: bool) -> State:
        """What a branch of `stmt` knows: a model's own flag (`if not m.training`), and the outcome of a flag
        tested before (`if args.eval_only:` again)."""
        return knowing_the_condition(knowing_it_is_none(knowing_the_flag(state, stmt, holds), stmt, holds), stmt,
                                     holds, self._made_under, self.flow.unchanging_flag)

    def _made_under(self, call: cst.Call) -> frozenset:
        cache = self.flow.__dict__.setdefault("_flag_outcomes", {})  # (asked at every `if` for every site)
        if call not in cache:
            site = self.flow.site_of_call.get(call)
            cache[call] = flag_outcomes(site.site.guards, _any_flag) if site is not None else frozenset()
        return cache[call]

    def conditional_switch(self, node: cst.Expr, state: State) -> State:
        """`net.train() if is_train else net.eval()` as a statement: an `if`/`else` of two calls (of grad-mode
        switches too: `torch.set_grad_enabled(True) if phase == "train" else torch.set_grad_enabled(False)`)."""
        expr = node.value
        parts = {}
        for part in (expr.body, expr.orelse):
            for inner in iter_nodes(part):
                if type(inner) is cst.Call:
                    parts[inner] = part
        calls = self.flow.collector.calls_by_owner.get(node, ())
        for call in calls:
            if call not in parts:
                self.call(call, state)  # the test's calls run first, whatever their place in the text
        decided = decide(expr.test, self.constants)  # (a phase's pass knows its test)
        then, other = state.copy(), state.copy()
        for call in calls:
            if call in parts:
                self.call(call, then if parts[call] is expr.body else other)
        for branch, part in ((then, expr.body), (other, expr.orelse)):
            if (effect := self._statement_grad_effect(part)) is not None:
                branch.grad = _grad_after(effect, node)
        if decided is not None:
            return then if decided else other
        return join_branches(state, then, other, True)

    def small(self, node: cst.BaseSmallStatement, state: State) -> State | None:
        if type(node) is cst.Expr and type(node.value) is cst.IfExp \
                and type(node.value.body) is cst.Call and type(node.value.orelse) is cst.Call:
            state = self.conditional_switch(node, state)
            self.expression_statement(node.value, state)
            return state
        if type(node) is cst.Expr:
            effect = self._statement_grad_effect(node.value)
            self.calls_of(node, state)
            if effect is not None:
                state.grad = _grad_after(effect, node)
            self.expression_statement(node.value, state)
            return None if node.value in self.flow.raising_calls else state
        if type(node) is cst.Assign:
            self.calls_of(node, state)
            origins = self.uses.expression(node.value, state.values)
            for target in node.targets:
                self.bind(target.target, node.value, origins, state)
                self._remember_constant(target.target, node.value)
                self._remember_grad_choice(target.target, node.value)
            return state
        if type(node) is cst.AnnAssign:
            self.calls_of(node, state)
            origins = self.uses.expression(node.value, state.values)
            self.bind(node.target, node.value, origins, state)
            return state
        if type(node) is cst.AugAssign:
            self.calls_of(node, state)
            origins = self.uses.expression(node.value, state.values) | self.uses.expression(node.target, state.values)
            key = dotted(node.target)
            if key is not None:
                self._taint(state, key)
                self._derive(state, node.target, origins)
            elif type(node.target) is cst.Subscript:  # `totals["loss"] += loss.detach()`: the container
                self._derive(state, node.target, origins)
            return state
        if type(node) is cst.Return:
            self.calls_of(node, state)
            origins = self.uses.returned_expression(node.value, state.values)
            if self.flow.is_training_hook(self.out.function):
                self.uses.trained_by_the_framework(origins)
            self.returned_value(node.value, state)
            self.returns.append(state.copy())
            return None
        if type(node) is cst.Raise:
            self.calls_of(node, state)
            return None
        if type(node) in (cst.Break, cst.Continue):
            if self.loop_exits:
                breaks, continues, _loop = self.loop_exits[-1]
                (breaks if type(node) is cst.Break else continues).append(state)
            return None
        if type(node) is cst.Del:
            for element in flatten(node.target):
                key = dotted(element)
                if key is not None:
                    self.forget(state, key)
            return state
        self.calls_of(node, state)  # assert, global, pass, import...
        if type(node) is cst.Assert:
            if not _guards_against_nan(node.test):  # (`assert not math.isnan(total)`: a guard, no self-test)
                self.uses.use(self.uses.expression(node.test, state.values), CHECKED)
            if literal_value(node.test) is False:
                return None  # `else: assert False`: the path ends, like a raise
            return asserting_the_flag(state, node)
        return state

    def _statement_grad_effect(self, value: cst.BaseExpression) -> str | None:
        """`torch.set_grad_enabled(False)` as a statement, or `stack.enter_context(torch.no_grad())`
        (an ExitStack: the region lasts until the enclosing `with` ends, which restores the grad mode)."""
        if type(value) is not cst.Call:
            return None
        if self.flow.imports.qualify(value.func) in api.SET_GRAD_ENABLED:
            if len(value.args) == 1:
                decided = decide(value.args[0].value, self.constants)  # set_grad_enabled(is_train) in a phase
                if decided is not None:
                    return "enabled" if decided else "free"
            return self.flow.grad_effect(value)
        if type(value.func) is cst.Attribute and value.func.attr.value == "enter_context" and value.args:
            return self.flow.grad_effect(value.args[0].value)
        if type(value.func) is cst.Attribute and value.func.attr.value == "__enter__" and not value.args:
            return self.flow.grad_effect(value.func.value)  # `torch.no_grad().__enter__()`: off from here on
        return None

    def expression_statement(self, value: cst.BaseExpression, state: State) -> None:
        if type(value) is cst.Yield:  # a generator hands the value to its consumer, as a return
            if value.value is not None and type(value.value) is not cst.From:
                self.uses.returned(self.uses.expression(value.value, state.values))
            return
        if type(value) is cst.Await:
            value = value.expression
        added = self.uses.dropped(value, state.values)
        if added and type(value) is cst.Call and type(value.func) is cst.Attribute:
            receiver = value.func.value
            self._derive(state, storage_owner(receiver) if in_place(value.func.attr.value) else receiver, added,
                         extend=True)

    def with_(self, stmt: cst.With, state: State) -> State | None:
        before = state.grad
        self.calls_of(stmt, state)
        restored = []
        for item in stmt.items:
            effect = self._chosen_context(item.item) or self.flow.grad_effect(item.item)
            if effect == "unknown" and type(item.item) is cst.IfExp:
                decided = decide(item.item.test, self.constants)  # `enable_grad() if training else no_grad()`
                effect = effect if decided is None else self.flow.branch_grad_effect(
                    item.item.body if decided else item.item.orelse)
            if effect == "keep":
                continue
            if effect == "unknown" and type(item.item) is cst.Call and item.item.args:
                decided = decide(item.item.args[0].value, self.constants)  # set_grad_enabled(phase == "train")
                effect = effect if decided is None else "enabled" if decided else "free"
            if effect == "free":
                state.grad = GradFact(free_sites=frozenset({item}))
            elif effect == "enabled":
                state.grad = GRAD_ENABLED
            elif effect == "unknown":
                # `set_grad_enabled(self.model.training)`, `set_grad_enabled(cfg.finetune)`: autograd on or off as
                # the author chose, on each path; a forward there is under a (conditional) no_grad, not left on
                state.grad = GradFact(free_sites=frozenset({item}), may_enabled=True)
            elif effect is None:
                restored.extend(self.mode_context(item, state))
            origins = self.uses.expression(item.item, state.values) or self.loss_yielded(item.item, state)
            if item.asname is not None:
                for element in flatten(item.asname.name):
                    key = dotted(element)
                    if key is not None:
                        self.forget(state, key)
                        if origins:
                            state.values[key] = origins
        returned = len(self.returns)
        after = self.block(stmt.body, state)
        # A context manager that switched mode restores it on exit, a `return` inside the block included.
        for exit_state in ([after] if after is not None else []) + self.returns[returned:]:
            for key, fact in restored:
                exit_state.models[key] = fact
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


def _any_flag(_flag: str) -> bool:
    return True  # (whether nothing rebinds it is asked only of a flag tested again: knowing_the_condition)


_NAN_CHECKS = frozenset({"isnan", "isfinite", "isinf"})


def _guards_against_nan(test: cst.BaseExpression) -> bool:
    """An assert that a number is finite (`assert not np.isnan(loss)`, `assert torch.isfinite(x).all()`): a
    run's guard against a diverging value, whatever the value is for, not a test of what the module computes."""
    return any(type(node) is cst.Call and ((type(node.func) is cst.Attribute and node.func.attr.value in _NAN_CHECKS)
                                           or (type(node.func) is cst.Name and node.func.value in _NAN_CHECKS))
               for node in iter_nodes(test))


def _grad_after(effect: str, node: cst.CSTNode) -> GradFact:  # (after a statement setting it, at `node`)
    return {"free": GradFact(free_sites=frozenset({node})), "enabled": GRAD_ENABLED, "unknown": GRAD_UNKNOWN}[effect]

