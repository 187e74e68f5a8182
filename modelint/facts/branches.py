"""What the branches of an `if` know, and what holds after it: a test on a model's own flag
(`if not model.training: model.train()`) says its mode on each side; branches that switch a model one way
and the other leave it to a condition we do not follow."""

from __future__ import annotations

from dataclasses import replace

import libcst as cst

from modelint.facts.lattice import ModeFact
from modelint.facts.names import dotted, literal_value
from modelint.facts.scopes import condition_key
from modelint.facts.state import State, join
from modelint.facts.walk import iter_nodes


def asserting_the_flag(state: State, stmt: cst.Assert) -> State:
    """`assert not self.nets.training`: past the assertion the model is in the mode the flag says (robomimic's
    `get_action()`, run only after `set_eval()`)."""
    test, holds = stmt.test, True
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test, holds = test.expression, False
    if type(test) is cst.Comparison and len(test.comparisons) == 1 \
            and type(test.comparisons[0].operator) in (cst.Equal, cst.Is, cst.NotEqual, cst.IsNot) \
            and literal_value(test.comparisons[0].comparator) in (True, False):
        # (`assert net.training == False`, `assert model.training is True`)
        negated = type(test.comparisons[0].operator) in (cst.NotEqual, cst.IsNot)
        test, holds = test.left, holds is (bool(literal_value(test.comparisons[0].comparator)) is not negated)
    key = dotted(test.value) if type(test) is cst.Attribute and test.attr.value == "training" else None
    if key is None or key in ("self", "cls"):
        return state
    key = state.canonical(key)
    current = state.models.get(key)
    state.put(key, (current if current is not None else ModeFact()).switched("train" if holds else "eval", test))
    return state


def knowing_the_flag(state: State, stmt: cst.If, holds: bool) -> State:
    """`if not model.training: model.train()`: where the test came out `holds`, a model whose own flag it reads
    is in the mode the flag says (the guard's fall-through is in training mode too). The model is one the state
    follows or one the branch switches; a module's own `self.training` in its `forward` is no model here."""
    test = stmt.test
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test, holds = test.expression, not holds
    if type(test) is not cst.Attribute or test.attr.value != "training":
        return state
    key = dotted(test.value)
    if key is None or key in ("self", "cls"):
        return state
    if state.canonical(key) not in state.models and not _switches(stmt.body, key):
        return state
    key = state.canonical(key)
    current = state.models.get(key)
    if current is not None and ((current.definitely_train and not holds) or (current.definitely_eval and holds)):
        return state  # (`model.train()`, then `if model.training: x = jitter(x)`: the other branch never runs)
    fact = (current if current is not None else ModeFact()).switched("train" if holds else "eval", test)
    if not holds and current is not None and current.eval_sites:
        fact = replace(fact, eval_sites=current.eval_sites)  # (what put it in eval mode: the test only reads it)
    state.put(key, fact)
    return state


def knowing_it_is_none(state: State, stmt: cst.If, holds: bool) -> State:
    """`if head: head.train()`: where the test came out `holds` and says a followed model's name holds None
    (`if head:` false, `if head is None:` true), there is no model under it on that path, so the path adds
    nothing to its mode after the `if` (as a name not bound yet, State.unbound): an optional part switched
    under the same guard wherever it is switched is in the mode the switches say."""
    key, none_when = _tested_for_presence(stmt.test)
    if key is None or holds is not none_when:
        return state
    key = state.canonical(key)
    if key in ("self", "cls"):
        return state
    state.forget(key)
    state.unbound = state.unbound | {key}
    return state


def _tested_for_presence(test: cst.BaseExpression) -> tuple[str | None, bool]:
    """(`x`, the outcome under which `x` is None) for `x`, `not x`, `x is None`, `x is not None` (and `==`)."""
    none_when = False
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test, none_when = test.expression, True
    if type(test) is cst.Comparison and len(test.comparisons) == 1 \
            and type(test.comparisons[0].comparator) is cst.Name and test.comparisons[0].comparator.value == "None":
        operator = type(test.comparisons[0].operator)
        if operator not in (cst.Is, cst.Equal, cst.IsNot, cst.NotEqual):
            return None, False
        test, none_when = test.left, none_when is (operator in (cst.IsNot, cst.NotEqual))
    if type(test) not in (cst.Name, cst.Attribute):
        return None, False
    return dotted(test), none_when


def knowing_the_condition(state: State, stmt: cst.If, holds: bool, made_under, unchanging) -> State:
    """`if args.inference_only: model.eval()`, later `if args.inference_only: break` before training: where a
    test of the same flag (a name or an attribute chain nothing here assigns: `unchanging(flag)`) came out
    `holds`, the switches made where it came out the other way did not happen. `made_under(site)`: the (flag,
    outcome) pairs the `if`s around a call require (the flag's own assignments not looked at: only a repeated
    test asks, once per `if`)."""
    test = stmt.test
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test, holds = test.expression, not holds
    condition = condition_key(test)
    flag = condition[0] if condition is not None else None
    if flag is None or flag.endswith(".training"):
        return state
    dropped = {key: {site for site in fact.train_sites | fact.eval_sites
                     if type(site) is cst.Call and (flag, not holds) in made_under(site)}
               for key, fact in state.models.items()}
    tested = {site for sites in dropped.values() for site in sites}
    if not tested or not unchanging(condition[1], (stmt, *tested)):
        return state
    for key, sites in dropped.items():
        if sites:
            fact = state.models[key]
            state.models[key] = replace(fact, train_sites=fact.train_sites - sites, eval_sites=fact.eval_sites - sites)
    return state


def _switches(body: cst.BaseSuite, key: str) -> bool:
    """Does the block call `key.train()` or `key.eval()`?"""
    return any(type(node) is cst.Call and type(node.func) is cst.Attribute
               and node.func.attr.value in ("train", "eval") and dotted(node.func.value) == key
               for node in iter_nodes(body))


def join_branches(before: State, then: State | None, other: State | None, has_else: bool) -> State | None:
    """The state after an `if` whose branch ends in `then` and whose `else` (or the fall-through) ends in
    `other`. `if training: model.train() else: model.eval()`: the mode follows a condition the code tests
    again later; which one holds is not ours to guess. Only when both branches switch it: a branch that
    validates (eval) beside one that saves a checkpoint leaves training in eval mode on the first path."""
    merged = join(then, other)
    if merged is not None and then is not None and other is not None and has_else:
        for key, fact in merged.models.items():
            a, b, entry = then.fact(key), other.fact(key), before.fact(key)
            if {a.definitely_train, b.definitely_train} == {True, False} and \
                    {a.definitely_eval, b.definitely_eval} == {True, False} and not fact.havoc \
                    and a != entry and b != entry:
                merged.models[key] = replace(fact, havoc=True)
    return merged


class Constants:
    """The names an undecided `if` chain's branches know the values of (`warming = False` in one of them): after
    the chain, only those every branch (and the fall-through) agrees on. A decided test runs one branch only."""

    def __init__(self, interpreter) -> None:
        self.interpreter, self.before, self.ends = interpreter, dict(interpreter.constants), []

    def branch(self, body, state):
        self.interpreter.constants = dict(self.before)
        end = self.interpreter.block(body, state) if body is not None else state
        self.ends.append(self.interpreter.constants)
        return end

    def join(self) -> None:
        if self.ends:
            self.interpreter.constants = {name: value for name, value in self.ends[0].items()
                                          if all(name in end and end[name] == value for end in self.ends[1:])}


def tested_for_none(test: cst.BaseExpression) -> str | None:
    """`p is None` or `p == None`: `p`."""
    if type(test) is cst.Comparison and type(test.left) is cst.Name and len(test.comparisons) == 1 \
            and type(test.comparisons[0].operator) in (cst.Is, cst.Equal) \
            and type(test.comparisons[0].comparator) is cst.Name and test.comparisons[0].comparator.value == "None":
        return test.left.value
    return None
