"""Which calls of a helper can reach a statement in it: the arguments a call passes decide the `if`s on
the helper's parameters around that statement.

`def evaluate(model, loader, augment=False)` runs `model(flip(x))` only under `if augment:`; a call
that leaves `augment` out never runs that forward, so what that call's grad mode is says nothing about it
(`evaluate(model, test_loader)` with autograd on, `evaluate(model, test_loader, augment=True)` under
no_grad). The same for an optional callback (`if run_fn is not None: run_fn(model, x) else: model(x)`)
and for an optional input (`if unlabeled is None: ... else: model(torch.cat([x, next(unlabeled)]))`).
A test is decided only from what the call shows: a literal, `None`, something given for a parameter that
defaults to None, or the literal default of one it leaves out; a parameter the helper rebinds is unknown.
A `Reach` is kept as text, so that a summary carries it to the callers of other files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import libcst as cst

from modelint.facts.names import NOT_LITERAL, literal_value
from modelint.facts.phases import GIVEN, OMITTED, decide, defaults_to_none, hands_on_an_optional
from modelint.facts.scopes import FunctionInfo, Site
from modelint.facts.walk import iter_nodes
from modelint.textutil import code_of


@dataclass(frozen=True)
class Reach:
    """What a call must pass for a statement of the helper to run."""

    tests: tuple[tuple[str, bool], ...]  # (an `if`'s test on parameters, as code; the value it must have)
    defaults: tuple[tuple[str, object], ...]  # (parameter it names, OMITTED for `=None` or its literal default)


def reach_of(function: FunctionInfo, site: Site | None) -> Reach | None:
    """The `if`s of `function` around `site`'s statement that test only its parameters (`if augment:`
    true; the `else` of `if run_fn is not None:` false; an `elif`: its `if` false); None when there are none."""
    if site is None or site.function is not function or not site.guards:
        return None
    params = function.param_set - {"self", "cls"} - _rebound(function)
    guards = site.guards
    tests = []
    for i, guard in enumerate(guards):
        if type(guard) is not cst.If or guard is site.stmt:
            continue  # (a forward in the `if`'s own test runs whatever it decides)
        inner = guards[i + 1] if i + 1 < len(guards) else None
        wanted = inner is None or inner is not guard.orelse  # (in its `else` or `elif`: the test was false)
        names = _names(guard.test)
        if names and names <= params:
            tests.append((code_of(guard.test, limit=10**6), wanted))
    if not tests:
        return None
    defaults = []
    for name in sorted({name for code, _ in tests for name in _names(_parsed(code))}):
        param = function.param(name)
        if defaults_to_none(function, name):
            defaults.append((name, OMITTED))
        elif param is not None and param.default is not None \
                and isinstance(value := literal_value(param.default), (bool, int, str)):
            defaults.append((name, value))
    return Reach(tuple(tests), tuple(defaults))


def forward_site(facts, forward) -> Site | None:
    """Where a forward's call sits (function, statement, the `if`s around it); None if unknown."""
    site = facts.call_sites.get(forward.call)
    return site.site if site is not None else None


def call_reaches(function: FunctionInfo, call: cst.Call, site: Site | None, caller: FunctionInfo | None = None) -> bool:
    """Can `call` of `function` run the statement at `site` (inside `function`)? False only when the call's
    arguments decide an `if` around it the other way."""
    reach = reach_of(function, site)
    return reach is None or call_runs(reach, function.params, function.cls is not None, call, caller)


def call_runs(reach: Reach, params, is_method: bool, call: cst.Call, caller: FunctionInfo | None = None) -> bool:
    """Does `call` (of a helper with `params`) leave every test of `reach` undecided or decide it as wanted?"""
    from modelint.facts.summary_effects import bind_arguments

    passed = bind_arguments(params, is_method, call)
    starred = any(arg.star for arg in call.args)
    defaults = dict(reach.defaults)
    constants: dict[str, object] = {}
    for name in {name for code, _ in reach.tests for name in _names(_parsed(code))}:
        expr = passed.get(name)
        optional = defaults.get(name) == OMITTED
        if expr is None:
            if not starred and name in defaults:  # (`evaluate(*args)`: it may be among them)
                constants[name] = defaults[name]
        elif type(expr) is cst.Name and expr.value == "None":
            constants[name] = OMITTED if optional else None
        elif isinstance(value := literal_value(expr), (bool, int, str)) and value is not NOT_LITERAL:
            constants[name] = value
        elif optional and type(expr) in (cst.Lambda, cst.Call, cst.Attribute, cst.Name) \
                and not hands_on_an_optional(caller, expr):
            constants[name] = GIVEN  # (`run_fn=fwd_bwd`, `unlabeled=iter(u)`; not the caller's own `x=None` handed on)
    if not constants:
        return True
    return all((decided := decide(_parsed(code), constants)) is None or decided == wanted
               for code, wanted in reach.tests)


@lru_cache(maxsize=512)
def _parsed(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


def _names(test: cst.BaseExpression) -> set[str]:
    """The names a test reads; {"."} (no parameter's name) when it reads anything else (`args.augment`)."""
    names = set()
    for node in iter_nodes(test):
        if type(node) in (cst.Attribute, cst.Call, cst.Subscript, cst.Lambda, cst.NamedExpr):
            return {"."}
        if type(node) is cst.Name and node.value not in ("None", "True", "False"):
            names.add(node.value)
    return names


def _rebound(function: FunctionInfo) -> set[str]:
    """Parameters the function assigns to (`if augment is None: augment = cfg.augment`): unknown at its `if`s."""
    found = function.__dict__.get("_rebound_params")
    if found is None:
        found = function.__dict__["_rebound_params"] = _assigned_params(function)
    return found


def _assigned_params(function: FunctionInfo) -> set[str]:
    out = set()
    for node in iter_nodes(function.node.body):
        targets = ()
        if type(node) is cst.Assign:
            targets = [t.target for t in node.targets]
        elif type(node) in (cst.AugAssign, cst.AnnAssign, cst.NamedExpr, cst.For, cst.CompFor):
            targets = [node.target]
        for target in targets:
            out |= {n.value for n in iter_nodes(target) if type(n) is cst.Name}
    return out & function.param_set
