"""In which orders a script runs the methods of the objects it builds from classes of other files.

`trainer = Trainer(args)`, then `trainer.train()` or `trainer.evaluate()` in the two branches of an
`if`: the object's file cannot see that `evaluate()` never runs before `train()`; this file can.
For each class reference it calls, the file exports the pairs (method run first, method that may
run after it on the same object), or None when it cannot follow an object built from it (one
stored on `self`, handed to a call, returned, or bound to a name used any other way). The runner
reads them (ProjectIndex.run_after) to judge a guess about the object's users.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.libraries import is_not_project
from modelint.facts.names import tokens
from modelint.facts.walk import iter_nodes

_LOOPS = (cst.For, cst.While)
# A method of a part named for one of these may set a mode (`gan.D.eval()`, `gan.G.set_train_mode()`).
_MODE_WORDS = frozenset({"eval", "train", "training", "mode", "freeze", "unfreeze", "requires"})


def handed_methods(flow) -> dict[str, frozenset[str]]:
    """class reference -> methods of objects built from it here that a call is handed as values
    (`trainer.train(epoch_run=trainer.epoch_ce_loss)`): callbacks, run where the call runs them."""
    collector = flow.collector
    built = {(site.function, key): value.func for key, value, site in collector.call_assigns if "." not in key}
    out: dict[str, set[str]] = {}
    for call in collector.calls:
        for arg in call.node.args:
            value = arg.value
            if type(value) is not cst.Attribute or type(value.value) is not cst.Name:
                continue
            func = built.get((call.site.function, value.value.value))
            reference = flow.imports.qualify(func) if func is not None else None
            if reference is not None and not is_not_project(reference):  # (`argparse.ArgumentParser()`: no project class)
                out.setdefault(reference, set()).add(value.attr.value)
    return {reference: frozenset(names) for reference, names in out.items()}


def object_orders(flow) -> dict[str, frozenset[tuple[str, str]] | None]:
    """class reference as this file calls it -> the method orders its objects may run in here (see the module)."""
    collector = flow.collector
    bound: dict[int, tuple[object, str]] = {}  # id(call) -> (its scope, the local name it is bound to)
    for key, value, site in collector.call_assigns:
        if "." not in key:
            bound[id(value)] = (site.function, key)
    out: dict[str, set[tuple[str, str]] | None] = {}
    followed: dict[object, dict[str, list[str]]] = {}  # scope -> name -> the references built into it
    for call in collector.calls:
        for reference in _references(flow, call):
            place = bound.get(id(call.node))
            if place is None:
                out[reference] = None  # (built and stored, handed or returned: its users are out of sight)
            else:
                followed.setdefault(place[0], {}).setdefault(place[1], []).append(reference)
    for scope, names in followed.items():
        orders = _method_orders(collector, scope, set(names))
        for name, references in names.items():
            pairs = orders.get(name)  # (None too for a name no method is called on: nothing to follow)
            for reference in references:
                if pairs is None or out.get(reference, set()) is None:
                    out[reference] = None
                else:
                    out.setdefault(reference, set()).update(pairs)
    return {reference: (frozenset(pairs) if pairs is not None else None) for reference, pairs in out.items()}


def _references(flow, call) -> list[str]:
    """The class references a call may build from: its qualified name, or after `from segan.models import *`
    the name in each star-imported module (the index knows which defines it)."""
    reference = call.qualified
    if reference is None and type(call.node.func) is cst.Name and flow.imports.star_modules:
        name = call.node.func.value
        if name[:1].isupper() and name not in flow.modules.classes and name not in flow.local_functions:
            return [f"{module}.{name}" for module in flow.imports.star_modules]
    return [reference] if reference is not None and not is_not_project(reference) else []


def _method_orders(collector, scope, names: set[str]) -> dict[str, set[tuple[str, str]] | None]:
    """name -> (first, then) for the method calls on the local `name` of `scope` (None: module level) that may
    run one after the other; None for a name used other than as the receiver of method calls, or bound to
    anything but a call or None."""
    calls: dict[str, list] = {}
    receivers: set[int] = set()
    for site in collector.calls:
        func = site.node.func
        if site.site.function is not scope or type(func) is not cst.Attribute:
            continue
        if type(func.value) is cst.Name and func.value.value in names:
            calls.setdefault(func.value.value, []).append(site)
            receivers.add(id(func.value))
        elif type(func.value) is cst.Attribute and type(func.value.value) is cst.Name \
                and func.value.value.value in names:
            if func.attr.value in ("eval", "train") and not site.node.args:
                # (`gan.G.eval()`: a part switched, which orders like a method of the object switching it)
                calls.setdefault(func.value.value.value, []).append(site)
                receivers.add(id(func.value.value))
            elif not set(tokens(func.attr.value)) & _MODE_WORDS:
                receivers.add(id(func.value.value))  # (`gan.G.load_pretrained(ckpt)`: a part's own business)
    if not calls:  # (a name no method is called on here: `path = os.path.join(...)`, or an object handed on)
        return {}
    handed_to_own_methods = {id(arg) for name, sites in calls.items() for site in sites for arg in site.node.args
                             if type(arg.value) is cst.Attribute and type(arg.value.value) is cst.Name
                             and arg.value.value.value == name}
    lost: set[str] = set()
    for current in iter_nodes(scope.node if scope is not None else collector.module_node):
        kind = type(current)
        if kind is cst.Assign and len(current.targets) == 1 and type(current.targets[0].target) is cst.Name \
                and current.targets[0].target.value in calls:
            value = current.value
            if not (type(value) is cst.Call or (type(value) is cst.Name and value.value == "None")):
                lost.add(current.targets[0].target.value)
            receivers.add(id(current.targets[0].target))
        elif kind is cst.Attribute:
            receivers.add(id(current.attr))  # (`args.model`: an attribute's own name is no use of a local)
        elif kind is cst.Arg and current.keyword is not None:
            receivers.add(id(current.keyword))
        if kind is cst.Arg and type(current.value) is cst.Attribute and type(current.value.value) is cst.Name \
                and id(current) in handed_to_own_methods:
            receivers.add(id(current.value.value))  # (`t.train(epoch_run=t.epoch_ce_loss)`: a callback of its own)
        elif kind is cst.Name and current.value in calls and id(current) not in receivers:
            lost.add(current.value)  # (handed on, returned, aliased, read by a nested function, bound otherwise)
    out: dict[str, set[tuple[str, str]] | None] = {}
    for name, sites in calls.items():
        if name in lost:
            out[name] = None
            continue
        # (a loop that builds a new object each time round: its next round runs the methods of another object)
        built_in = [frozenset(id(guard) for guard in site.guards if type(guard) in _LOOPS)
                    for key, _value, site in collector.call_assigns if key == name and site.function is scope]
        rebuilt = frozenset.intersection(*built_in) if built_in else frozenset()
        pairs = out[name] = set()
        for i, first in enumerate(sites):
            for then in sites[i:]:
                methods = (first.node.func.attr.value, then.node.func.attr.value)
                if _common_loops(first, then, rebuilt):
                    pairs.update({methods, methods[::-1]})
                elif then is not first and not _exclusive(first, then):
                    pairs.add(methods)
    return out


def _common_loops(first, then, rebuilt: frozenset[int]) -> bool:
    return any(type(guard) in _LOOPS and id(guard) not in rebuilt and any(guard is other for other in then.site.guards)
               for guard in first.site.guards)


def _exclusive(first, then) -> bool:
    """Do the two calls sit in the two branches of one `if` (`if train: t.fit() else: t.evaluate()`)?"""
    for guard in first.site.guards:
        if type(guard) is not cst.If or not any(guard is other for other in then.site.guards):
            continue
        sides = {_side(guard, site.node) for site in (first, then)}
        if sides == {"body", "orelse"}:
            return True
    return False


def _side(guard: cst.If, node: cst.CSTNode) -> str | None:
    for side in ("body", "orelse"):
        part = getattr(guard, side)
        if part is not None and any(current is node for current in iter_nodes(part)):
            return side
    return None
