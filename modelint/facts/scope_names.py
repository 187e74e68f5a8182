"""Which names a file ever binds: to tell an undefined name (`mode.train()` where `model` was meant)
from a name defined somewhere in the file. A name bound anywhere counts as bound everywhere; a
star import makes every name possibly bound."""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import BUILTIN_NAMES, dotted
from modelint.facts.torch_api import torch_meant
from modelint.facts.walk import iter_nodes

_BUILTINS = BUILTIN_NAMES | {"__file__", "__name__", "__doc__", "__spec__", "__builtins__"}


def bound_names(module: cst.Module) -> frozenset[str] | None:
    """Every name the file binds, with the builtins; None when `from x import *` may bind any."""
    names: set[str] = set(_BUILTINS)
    for node in iter_nodes(module):
        kind = type(node)
        if kind in (cst.AssignTarget, cst.AnnAssign, cst.AugAssign, cst.NamedExpr):
            names.update(_target_names(node.target))
        elif kind in (cst.For, cst.CompFor):
            names.update(_target_names(node.target))
        elif kind is cst.AsName:
            names.update(_target_names(node.name))
        elif kind in (cst.Param, cst.FunctionDef, cst.ClassDef):
            names.add(node.name.value)
        elif kind is cst.Import:
            for alias in node.names:
                names.add(alias.asname.name.value if alias.asname else (dotted(alias.name) or "").split(".")[0])
        elif kind is cst.ImportFrom:
            if type(node.names) is cst.ImportStar:
                return None
            for alias in node.names:
                names.add(alias.asname.name.value if alias.asname else dotted(alias.name) or "")
        elif kind in (cst.Global, cst.Nonlocal):
            names.update(item.name.value for item in node.names)
        elif kind in (cst.MatchAs, cst.MatchStar) and node.name is not None:
            names.add(node.name.value)
        elif kind is cst.MatchMapping and node.rest is not None:
            names.add(node.rest.value)
    return frozenset(names)


def _target_names(target: cst.BaseExpression) -> list[str]:
    if type(target) is cst.Name:
        return [target.value]
    if type(target) in (cst.Tuple, cst.List):
        return [name for element in target.elements for name in _target_names(element.value)]
    if type(target) is cst.StarredElement:
        return _target_names(target.value)
    return []


def unbound_mode_receivers(collector, module: cst.Module) -> frozenset[cst.Call]:
    """`mode.train()` / `net.eval()` whose receiver the file binds nowhere: each raises NameError, so
    nothing after it in its block runs (and MDL011 looks for the model that was meant)."""
    sites = [site for site in collector.calls if type(site.node.func) is cst.Attribute
             and site.node.func.attr.value in ("train", "eval") and type(site.node.func.value) is cst.Name]
    if sites:  # most receivers are bound where the collector already looked: no walk of the file for them
        seen = {key for key, _value, _site in collector.call_assigns} | set(collector.imports.bindings)
        seen.update(name for function in collector.functions for name in (function.name, *function.params))
        sites = [site for site in sites if site.node.func.value.value not in seen]
    bound = bound_names(module) if sites else None
    if not bound:
        return frozenset()
    return frozenset(site.node for site in sites if site.node.func.value.value not in bound)


def misspelled_torch_calls(collector) -> dict[cst.Call, str]:
    """`torch.set_grad_enable(False)` -> "torch.set_grad_enabled": a name torch does not have raises
    AttributeError, so nothing after it in its block runs (MDL011 reports the call, with what was meant)."""
    out: dict[cst.Call, str] = {}
    for site in collector.calls:
        qualified = site.qualified
        if qualified is not None and qualified.startswith("torch.") and qualified.count(".") == 1:
            meant = torch_meant(qualified[6:])
            if meant is not None:
                out[site.node] = meant
    return out


_PROCESS_EXITS = frozenset({"sys.exit", "os._exit", "os.abort"})


def process_exits(collector) -> frozenset[cst.Call]:
    """`sys.exit()`, `os._exit(1)`, and the builtins `exit()` / `quit()` where the file does not define
    those names itself: the process ends there, so nothing after them on their path runs (a test-only
    branch that calls `model.eval()` and then `quit()` leaves no eval mode behind)."""
    out = set()
    for site in collector.calls:
        if site.qualified in _PROCESS_EXITS:
            out.add(site.node)
        elif site.qualified is None and site.text in ("exit", "quit"):
            out.add(site.node)
    if any(type(site.node.func) is cst.Name for site in collector.calls if site.node in out):
        local = {function.name for function in collector.functions} | {key for key, _v, _s in collector.call_assigns}
        out = {call for call in out if type(call.func) is not cst.Name or call.func.value not in local}
    return frozenset(out)
