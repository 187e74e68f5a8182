"""Modes a script sets once for good: `net.eval()` as a statement of the module, for a module-level model
that no function or method of the file switches (`net.train()`/`net.eval()` nowhere else). Every function
using that global then starts with it in eval mode, as the script left it (a run that keeps BatchNorm frozen
throughout, batch size 1), rather than in the training mode a function that trains it would be assumed to
expect."""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import dotted


def globals_left_in_eval(collector, global_models: frozenset[str]) -> dict[str, cst.Call]:
    """Module-level model -> its module-level `model.eval()` (or `model.train(False)`) statement."""
    if not global_models:
        return {}
    switched_at_top: dict[str, cst.Call] = {}
    switched_elsewhere: set[str] = set()
    for site in collector.calls:
        func = site.node.func
        if type(func) is not cst.Attribute or func.attr.value not in ("eval", "train"):
            continue
        key = dotted(func.value)
        if key not in global_models:
            continue
        to_eval = func.attr.value == "eval" and not site.node.args or (
            func.attr.value == "train" and len(site.node.args) == 1 and dotted(site.node.args[0].value) == "False")
        at_top = site.site.function is None and site.site.cls is None and not site.site.guards \
            and type(site.site.stmt) is cst.SimpleStatementLine
        if to_eval and at_top and key not in switched_at_top:
            switched_at_top[key] = site.node
        else:
            switched_elsewhere.add(key)
    return {key: call for key, call in switched_at_top.items() if key not in switched_elsewhere}
