"""Mode gates: code that runs, and values that are non-zero, only in training mode or on the caller's request.

A functional dropout needs no `training=` flag when the module's mode already
decides whether it runs: `if self.training and p > 0: x = F.dropout(x, p)`, an
early `if not self.training: return x`, `F.dropout(x, p) if self.training else x`,
or a rate that is zero outside training (`p = self.p if self.training else 0.0`).
A flag the caller passes (`def forward(self, x, mc=False)`, off unless asked) is the
caller's explicit choice, which is how MC dropout is offered.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.lattice import mode_argument
from modelint.facts.name_values import reaching, scope_bindings
from modelint.facts.scopes import FunctionInfo, Site
from modelint.facts.names import dotted, literal_value, same_or_nested
from modelint.facts.walk import child_list, iter_nodes

_EXITS = (cst.Return, cst.Raise)


class Gates:
    def __init__(self, receivers) -> None:
        self.receivers = receivers  # for the bindings of a function's names

    # -- tests --------------------------------------------------------------
    def mode_test(self, test: cst.BaseExpression, function: FunctionInfo | None, depth: int = 0) -> bool:
        """True only in training mode or when the caller asked: `self.training`, `self.training and p > 0`,
        `self.training or mc`, a local holding such a test, a flag parameter that is off by default."""
        if depth > 4:
            return False
        if type(test) is cst.BooleanOperation:
            left = self.mode_test(test.left, function, depth + 1)
            right = self.mode_test(test.right, function, depth + 1)
            return (left or right) if type(test.operator) is cst.And else (left and right)
        if type(test) is cst.Attribute:
            return test.attr.value == "training"
        if type(test) is cst.Name and function is not None:
            bindings, _ = self.receivers.scope(function)
            found = bindings.get(test.value) or []
            if not found:
                return False
            for binding in found:
                if binding.kind == "param":
                    if binding.value is not None and literal_value(binding.value) not in (False, None, 0):
                        return False  # on unless the caller says otherwise: not a request
                elif binding.kind != "assign" or not self.mode_test(binding.value, function, depth + 1):
                    return False
            return True
        return False

    def exits_unless_mode(self, test: cst.BaseExpression, function: FunctionInfo | None) -> bool:
        """`if not self.training or p == 0: return x`: going past it means training mode."""
        operands = [test]
        while operands and isinstance(operands[-1], cst.BooleanOperation) and isinstance(operands[-1].operator, cst.Or):
            last = operands.pop()
            operands.extend((last.left, last.right))
        return any(type(o) is cst.UnaryOperation and type(o.operator) is cst.Not
                   and self.mode_test(o.expression, function) for o in operands)

    # -- code ---------------------------------------------------------------
    def guarded(self, node: cst.CSTNode, site: Site) -> bool:
        """Does `node` (in statement `site.stmt`) run only under a mode test?"""
        function = site.function
        for guard in site.guards:
            if type(guard) is cst.If:
                if _within(node, guard.body) and self.mode_test(guard.test, function):
                    return True
                if guard.orelse is not None and _within(node, guard.orelse) \
                        and self.exits_unless_mode(guard.test, function):
                    return True
        for inner in iter_nodes(site.stmt):
            if type(inner) is cst.IfExp and _within(node, inner.body) and self.mode_test(inner.test, function):
                return True
        return self._after_early_exit(site)

    def _after_early_exit(self, site: Site) -> bool:
        _, parents = self.receivers.scope(site.function)
        current = site.stmt
        while current in parents:
            block, index, owner = parents[current]
            for earlier in block[:index]:
                if type(earlier) is cst.If and earlier.orelse is None and _ends_in_exit(earlier.body) \
                        and self.exits_unless_mode(earlier.test, site.function):
                    return True
            if owner is None or type(owner) in (cst.FunctionDef, cst.ClassDef):
                return False
            current = owner
        return False

    def only_in_eval(self, node: cst.CSTNode, site: Site) -> bool:
        """Does `node` run only in the module's eval mode: under `if not self.training:`, in the `else` of `if
        self.training:`, or after `if self.training: return ...`? A dropout written there is asked for at test
        time (Monte-Carlo dropout sampling a prediction's spread), not forgotten."""
        for guard in site.guards:
            if type(guard) is cst.If:
                if _within(node, guard.body) and _not_own_flag(guard.test):
                    return True
                if guard.orelse is not None and _within(node, guard.orelse) and _own_flag(guard.test):
                    return True
        _, parents = self.receivers.scope(site.function)
        current = site.stmt
        while current in parents:
            block, index, owner = parents[current]
            if any(type(earlier) is cst.If and earlier.orelse is None and _ends_in_exit(earlier.body)
                   and _own_flag(earlier.test) for earlier in block[:index]):
                return True
            if owner is None or type(owner) in (cst.FunctionDef, cst.ClassDef):
                return False
            current = owner
        return False

    # -- values -------------------------------------------------------------
    def zero_outside_mode(self, value: cst.BaseExpression, function: FunctionInfo | None, stmt=None,
                          depth: int = 0) -> bool:
        """Is this rate zero unless in training mode (or asked for)? `p if self.training else 0.0`, a local
        holding one, `0.0` overwritten under `if self.training:`."""
        if depth > 4:
            return False
        if literal_value(value) in (0, 0.0):
            return True
        if type(value) is cst.IfExp:
            if literal_value(value.orelse) in (0, 0.0) and self.mode_test(value.test, function):
                return True
            return literal_value(value.body) in (0, 0.0) and type(value.test) is cst.UnaryOperation \
                and type(value.test.operator) is cst.Not and self.mode_test(value.test.expression, function)
        if type(value) is cst.Name:
            bindings, parents = self.receivers.scope(function)
            found = bindings.get(value.value) or []
            if stmt is not None:
                found = reaching(found, stmt, parents) if found else found
            if not found:
                return False
            for binding in found:
                if binding.kind != "assign":
                    return False
                if self.zero_outside_mode(binding.value, function, None, depth + 1):
                    continue
                line = _statement_of(binding.node, parents)
                guards = _enclosing_ifs(line, parents)
                if not any(_within(binding.node, g.body) and self.mode_test(g.test, function) for g in guards):
                    return False
            return True
        return False


def _own_flag(test: cst.BaseExpression) -> bool:
    return type(test) is cst.Attribute and test.attr.value == "training" and type(test.value) is cst.Name \
        and test.value.value == "self"


def _not_own_flag(test: cst.BaseExpression) -> bool:
    return type(test) is cst.UnaryOperation and type(test.operator) is cst.Not and _own_flag(test.expression)


def _within(node: cst.CSTNode, container: cst.CSTNode) -> bool:
    stack = [container]
    while stack:
        current = stack.pop()
        if current is node:
            return True
        stack.extend(child_list(current))
    return False


def _ends_in_exit(body: cst.BaseSuite) -> bool:
    statements = body.body if type(body) in (cst.IndentedBlock, cst.SimpleStatementSuite) else ()
    if not statements:
        return False
    last = statements[-1]
    if type(last) is cst.SimpleStatementLine:
        return isinstance(last.body[-1], _EXITS)
    return isinstance(last, _EXITS)


def _statement_of(node: cst.CSTNode, parents: dict) -> cst.CSTNode | None:
    if node in parents:
        return node
    for stmt in parents:
        if type(stmt) is cst.SimpleStatementLine and any(small is node for small in stmt.body):
            return stmt
    return None


def _enclosing_ifs(stmt: cst.CSTNode | None, parents: dict) -> list[cst.If]:
    found = []
    while stmt is not None and stmt in parents:
        _, _, owner = parents[stmt]
        if type(owner) is cst.If:
            found.append(owner)
        stmt = owner
    return found


def runs_only_in_training(site: Site, key: str, node: cst.CSTNode) -> bool:
    """Is `node` (at `site`) in the body of an `if` that requires `key`'s training flag (`if self.model.training:`,
    `if model.training and step % k == 0:`)? It cannot run with that model in eval mode."""
    for guard in site.guards:
        if type(guard) is not cst.If:
            continue
        flags = _training_flags(guard.test, site.function)
        if any(flag is not None and same_or_nested(flag, key) for flag in flags) \
                and any(inner is node for inner in iter_nodes(guard.body)):
            return True
    return False


def _training_flags(test: cst.BaseExpression, function, depth: int = 0) -> list:
    """The models whose training flag `test` requires: `model.training` among its conjuncts, or `mode == "train"`
    with `mode = "train" if model.training else "val"` the function's one binding of `mode`."""
    flags = []
    for part in _conjuncts(test):
        if type(part) is cst.Attribute and part.attr.value == "training":
            flags.append(dotted(part.value))
        elif type(part) is cst.Comparison and len(part.comparisons) == 1 and depth == 0 and function is not None \
                and type(part.comparisons[0].operator) in (cst.Equal, cst.Is) and type(part.left) is cst.Name \
                and type(part.comparisons[0].comparator) is cst.SimpleString:
            bound = scope_bindings(function.node).get(part.left.value, ())
            chosen = bound[0].value if len(bound) == 1 and bound[0].kind == "assign" else None
            if type(chosen) is cst.IfExp and type(chosen.body) is cst.SimpleString \
                    and chosen.body.evaluated_value == part.comparisons[0].comparator.evaluated_value:
                flags.extend(_training_flags(chosen.test, function, depth + 1))
    return flags


def _conjuncts(test: cst.BaseExpression):
    while type(test) is cst.BooleanOperation and type(test.operator) is cst.And:
        yield from _conjuncts(test.left)
        test = test.right
    yield test


def toggled_for_one_forward(facts, forward) -> bool:
    """`model.train(); loss_dict = model(images, targets); model.eval()` in one block: training mode switched on
    for this forward alone and off right after (a torchvision detector hands back its losses only in training
    mode; FixMatch guessing labels with batch statistics, then `net.train(was_training)`): the code's explicit
    choice, whatever it evaluates around it. The switch back may come once out of the block."""
    from modelint.facts.lattice import is_train_site

    site = facts.call_sites.get(forward.call)
    here = facts.locate(forward.call)
    trains = [s for s in forward.mode.train_sites if is_train_site(s)]
    if site is None or here is None or not trains or len(trains) != len(forward.mode.train_sites):
        return False

    def beside(call) -> tuple | None:  # (its position, when in the forward's block)
        where = facts.call_sites.get(call) if type(call) is cst.Call else None
        same = where is not None and where.site.function is site.site.function and where.site.guards == site.site.guards
        return facts.locate(call) if same else None

    if not all((at := beside(s)) is not None and at[:2] < here[:2] for s in trains):
        return False

    def switches_back(c) -> bool:  # (`model.eval()`, `model.train(was_training)`, here or around the block)
        func = c.node.func
        if type(func) is not cst.Attribute or dotted(func.value) != forward.key or not (
                (func.attr.value == "eval" and not c.node.args) or (func.attr.value == "train" and (
                    given := mode_argument(c.node)) is not None and literal_value(given) is not True)):
            return False
        at = facts.locate(c.node)
        return at is not None and at[:2] > here[:2] and c.site.guards == site.site.guards[:len(c.site.guards)]

    return _hands_back_its_losses(site, forward.call) \
        or any(switches_back(c) for c in facts.collector.calls_made_in(site.site.function))


def _hands_back_its_losses(site, call: cst.Call) -> bool:
    """`losses = model(images, targets)`, then `sum(losses.values())`: a model handed its targets that hands back
    a mapping of its losses (a torchvision detector, only in training mode), switched to training mode for it."""
    statement = site.site.stmt
    small = statement.body[0] if type(statement) is cst.SimpleStatementLine and len(statement.body) == 1 else None
    if type(small) is not cst.Assign or small.value is not call or len(small.targets) != 1 \
            or type(small.targets[0].target) is not cst.Name or site.site.function is None \
            or sum(1 for arg in call.args if arg.keyword is None and not arg.star) < 2:
        return False
    name = small.targets[0].target.value
    return any(type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in ("values", "items")
               and dotted(node.func.value) == name for node in iter_nodes(site.site.function.node.body))


def switched_to_training_without_grad(facts, forward) -> bool:
    """`with torch.no_grad(): model.eval(); val = run(val); model.train(); val_tr = run(val)`: every `train()` that
    left the model in training mode was called where autograd is off, where nothing can be trained, between two
    runs of the same evaluation (the forward, or the call of its function) in that block: training mode asked for,
    to measure the evaluation in both modes, not left over from a training step (nor a `train()` before the
    block's only evaluation, which makes its `eval()` pointless)."""
    from modelint.facts.lattice import is_train_site
    from modelint.facts.regions import no_grad_blocks

    trains = forward.mode.train_sites
    if not trains or not all(is_train_site(s) for s in trains):
        return False
    switched = []  # (the train() call's site, the innermost no_grad block around it)
    for train in trains:
        where = facts.call_sites.get(train) if type(train) is cst.Call else None
        blocks = no_grad_blocks(facts.imports, where.site) if where is not None else []
        if not blocks:
            return False
        switched.append((where, blocks[-1]))
    # (the evaluation's runs: the forward's own call, calls of the same model or function, calls of its function)
    call = forward.call
    callees = {facts.flow.callee_of(call) if type(call) is cst.Call else None, forward.function} - {None}
    text = dotted(call.func) if type(call) is cst.Call else None
    entries = [facts.call_sites.get(call)] + [
        site for site in facts.collector.calls if site.node is not call and (
            facts.flow.callee_of(site.node) in callees or (text is not None and dotted(site.node.func) == text))]
    for where, block in switched:
        at = facts.locate(where.node)
        if at is None:
            return False
        runs = [here[:2] for entry in entries if entry is not None and block in entry.site.guards
                and entry.site.function is where.site.function and (here := facts.locate(entry.node)) is not None]
        if not (any(run < at[:2] for run in runs) and any(run > at[:2] for run in runs)):
            return False
    return True

