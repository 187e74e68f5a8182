"""What the passes of a loop bind: the names a loop (or a comprehension) binds anew in each pass, and the
names a call is fed. A forward fed only names no pass binds anew sees the same input every pass (Monte
Carlo sampling, a tensor a model is fitted to); one fed names a pass binds sees new data each time.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.walk import iter_nodes


def input_names(call: cst.Call) -> set[str]:
    """The plain names anywhere in a call's arguments."""
    return {node.value for arg in call.args for node in iter_nodes(arg.value) if type(node) is cst.Name}


def bound_in(loop: cst.CSTNode) -> set[str]:
    """Names a loop (or comprehension) binds anew in each of its passes: its targets and what its body
    assigns, but not what an inner loop over the same data in every pass binds (`for _ in range(n_drop):
    for x, y in loader: model(x)` replays the loader's batches: each pass sees the same inputs)."""
    inner = [node for node in iter_nodes(loop) if node is not loop and type(node) in (cst.For, cst.While)]
    skipped = {id(node) for loop_ in inner for node in iter_nodes(loop_)}
    names = _targets_of(node for node in iter_nodes(loop) if id(node) not in skipped)
    for nested in inner:
        if type(nested) is not cst.For or {n.value for n in iter_nodes(nested.iter) if type(n) is cst.Name} & names:
            names |= _targets_of(iter_nodes(nested))  # (data that changes from pass to pass)
    return names


def _targets_of(nodes) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        targets = []
        if type(node) in (cst.For, cst.CompFor):
            targets.append(node.target)
        elif type(node) is cst.Assign:
            targets.extend(t.target for t in node.targets)
        elif type(node) in (cst.AugAssign, cst.AnnAssign):
            targets.append(node.target)
        for target in targets:
            names.update(n.value for n in iter_nodes(target) if type(n) is cst.Name)
    return names


def bound_between(facts, loop: cst.CSTNode, names: set[str], first: int, last: int) -> list:
    """The values the loop's statements on rows strictly between `first` and `last` bind to these names
    (None for a binding whose value is not a single expression: unpacking, augmented assignment)."""
    values = []
    for node in iter_nodes(loop):
        if type(node) not in (cst.Assign, cst.AugAssign, cst.AnnAssign):
            continue
        where = facts.locate(node)
        if where is None or not first < where[0] < last:
            continue
        targets = [t.target for t in node.targets] if type(node) is cst.Assign else [node.target]
        bound = {n.value for t in targets for n in iter_nodes(t) if type(n) is cst.Name}
        if bound & names:
            single = type(node) is cst.Assign and all(type(t) is cst.Name for t in targets)
            values.append(node.value if single else None)
    return values


def comprehensions_around(site, call: cst.Call) -> list:
    """The comprehensions of the call's statement that hold the call (`[model(x) for _ in range(n)]`)."""
    return [node for node in iter_nodes(site.site.stmt)
            if type(node) in (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)
            and any(inner is call for inner in iter_nodes(node))]
