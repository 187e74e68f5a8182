from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.containers import plain_containers
from modelint.facts.modules import Dependence
from modelint.facts.names import dotted, literal_value
from modelint.facts.walk import iter_nodes
from modelint.rule import NodeEdit, NodeFix, Report, Rule


class UnregisteredSubmodule(Rule):
    """
    ## What it does
    Finds `nn.Module`s stored in a plain `list`, `dict` or `tuple` attribute of a
    module (`self.blocks = [Block() for _ in range(4)]`, `self.layers = []` followed
    by `self.layers.append(nn.Linear(...))` or `self.tables[key] = nn.Embedding(...)`,
    `self.stages = stages` for `*stages: nn.Module`), reported at the container's
    assignment, where the fix goes; and mode-dependent layers (Dropout, BatchNorm)
    constructed inside `forward` or a method it runs. Containers that only
    `__init__` reads (a dict of candidate backbones, keyword arguments for the
    blocks' constructors) or that are registered another way (`nn.Sequential(*layers)`,
    `self.net = nn.ModuleList(self.convs.values())`) are left alone.

    ## Why is this bad?
    Only direct attributes and `nn.ModuleList`/`nn.ModuleDict` register submodules.
    Modules in a plain container are invisible to `model.eval()`, `.to(device)`,
    `parameters()` (the optimizer never updates them) and `state_dict()` (they are
    not saved). After `eval()` their Dropout and BatchNorm stay in training mode. A
    layer built inside `forward` is new at every call: always in training mode, with
    fresh statistics, and never moved or saved.

    ## Example
    ```python
    self.blocks = [ResidualBlock(c) for _ in range(depth)]
    ```

    ## Use instead
    ```python
    self.blocks = nn.ModuleList(ResidualBlock(c) for _ in range(depth))
    ```

    ## Fix safety
    Safe for a list/dict literal or comprehension (wrap it in `nn.ModuleList` /
    `nn.ModuleDict`); a layer built in `forward` must move to `__init__`, by hand.
    Unsafe where the elements' parameters are also registered by hand
    (`self.register_parameter(...)` for each): the state dict would then hold them
    twice, under new names, and old checkpoints would not load as they are.
    For a dict filled later, `nn.ModuleDict()` takes string keys only: no fix where
    it is filled under an int or tuple key, unsafe where the key is computed.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.ModuleList.html
    - https://pytorch.org/docs/stable/generated/torch.nn.ModuleDict.html
    """

    code = "MDL009"
    name = "unregistered-submodule"
    severity = "error"
    summary = "Submodules in a plain list/dict (or built in forward) escape eval(), .to() and the optimizer."
    fix_safety = "safe"
    fixtures = "MDL009_unregistered_submodule"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        nn = _nn_name(facts)
        for container in plain_containers(facts):
            attr, kind, assign = container.attr, container.kind, container.assign
            wrapper = "nn.ModuleDict" if kind == "dict" else "nn.ModuleList"
            missed = "eval() and train() miss them (their parameters are registered by hand)" if container.by_hand \
                else "eval(), .to() and parameters() miss them"
            # (registered by hand too, the parameters would be in the state dict twice, under new names)
            safety = "unsafe" if container.by_hand else "safe"
            if container.empty:
                added = " added later" if container.fills else ""
                fix = None
                keys = _keys_filled(container.fills) if kind == "dict" else "strings"
                if nn is not None and keys != "other":
                    # (`self.convs["pose", 0] = ...`: ModuleDict takes string keys only; a key computed at run time
                    # may be one, or not)
                    fix = NodeFix(f"Make `self.{attr}` an `{nn}.{wrapper[3:]}()`",
                                  (NodeEdit(assign.value, f"{nn}.{wrapper[3:]}()", "replace"),),
                                  safety if keys == "strings" else "unsafe")
                yield Report(assign.node, f"modules{added} to the plain {kind} `self.{attr}` are not registered: "
                                          f"{missed}; make it an `{wrapper}()`",
                             stmt=assign.site.stmt, fix=fix, notes=tuple((n, "a module is put in it here")
                                                                         for n in container.fills[:1]))
                continue
            yield Report(assign.node, f"modules in a plain {kind} `self.{attr}` are not registered: {missed}; "
                                      f"use `{wrapper}(...)`",
                         stmt=assign.site.stmt, fix=_wrap(assign.value, kind, nn, safety))
        modules = facts.modules
        reachable = facts.forward_reachable
        for call_site in facts.collector.calls:
            site = call_site.site
            if site.function is None or site.function not in reachable:
                continue
            built = modules.construction(call_site.node)
            qualified = call_site.qualified or ""
            if built is not None and built.dependence is Dependence.DEPENDENT and qualified.startswith("torch.nn.") \
                    and not _built_once_onto_self(call_site) and not _regroups_own_children(call_site.node, qualified):
                layer = qualified.rsplit(".", 1)[-1]
                where = "forward" if site.function.name == "forward" else f"`{site.function.name}()` (run by forward)"
                yield Report(call_site.node, f"`nn.{layer}` built inside {where} is a new layer at every call, always "
                                             f"in training mode and unseen by eval(); create it in __init__ as "
                                             f"`self.<name>`", stmt=site.stmt)


def _regroups_own_children(call: cst.Call, qualified: str) -> bool:
    """`nn.Sequential(self.reduce, self.middle, self.expand)` in forward: a container of layers the module already
    holds, each registered and switched by eval() on it; nothing new is built."""
    parts = [arg.value for arg in call.args if not arg.star and arg.keyword is None]
    return qualified == "torch.nn.Sequential" and bool(parts) and len(parts) == len(call.args) and all(
        (dotted(part) or "").startswith("self.") for part in parts)


def _built_once_onto_self(call_site) -> bool:
    """`if not hasattr(self, "bn"): self.bn = nn.BatchNorm1d(n)` (or `if self.bn is None:`): a layer sized at the
    first call, kept on `self` and registered from then on, not a new one at every call."""
    stmt = call_site.site.stmt
    small = stmt.body[0] if type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 else None
    if type(small) is not cst.Assign or len(small.targets) != 1 or type(small.targets[0].target) is not cst.Attribute:
        return False
    target = small.targets[0].target
    owner, attr = dotted(target.value), target.attr.value
    if owner is None or "." in owner:
        return False
    for guard in call_site.site.guards:
        if type(guard) is not cst.If:
            continue
        for node in iter_nodes(guard.test):
            if type(node) is cst.UnaryOperation and type(node.operator) is cst.Not and type(node.expression) is \
                    cst.Call and dotted(node.expression.func) == "hasattr" and len(node.expression.args) == 2 \
                    and dotted(node.expression.args[0].value) == owner \
                    and literal_value(node.expression.args[1].value) == attr:
                return True
            if type(node) is cst.Comparison and dotted(node.left) == f"{owner}.{attr}" and len(node.comparisons) == 1 \
                    and type(node.comparisons[0].operator) is cst.Is \
                    and literal_value(node.comparisons[0].comparator) is None:
                return True
    return False


def _nn_name(facts: FileFacts) -> str | None:
    """How this file spells `torch.nn` (`nn`, `torch.nn`), or None."""
    for local, qualified in facts.imports.bindings.items():
        if qualified == "torch.nn":
            return local
    if facts.imports.bindings.get("torch") == "torch":
        return "torch.nn"
    return None


def _keys_filled(fills) -> str:
    """What keys the item assignments filling a dict use: "strings" (literals, f-strings), "other" (an int or a
    tuple, which `nn.ModuleDict` refuses), or "unknown" (a name or a call)."""
    found = "strings"
    for node in fills:
        targets = [t.target for t in node.targets] if type(node) is cst.Assign else []
        for target in targets:
            if type(target) is not cst.Subscript:
                continue
            if len(target.slice) > 1:
                return "other"  # (`self.convs["pose", i]`: a tuple)
            if type(target.slice[0].slice) is not cst.Index:
                continue
            key = target.slice[0].slice.value
            if type(key) in (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString):
                continue
            if type(key) in (cst.Integer, cst.Tuple, cst.Float):
                return "other"
            found = "unknown"
    return found


def _wrap(value: cst.BaseExpression, kind: str, nn: str | None, safety: str) -> NodeFix | None:
    if nn is None:
        return None
    if kind == "dict":
        if type(value) is cst.Dict and not all(
            type(e) is cst.DictElement and type(e.key) is cst.SimpleString for e in value.elements
        ):
            return None  # ModuleDict needs string keys
        wrapper = f"{nn}.ModuleDict"
    else:
        wrapper = f"{nn}.ModuleList"
    if type(value) is cst.Tuple and not value.lpar:
        return None
    return NodeFix(f"Wrap in `{wrapper}(...)`",
                   (NodeEdit(value, f"{wrapper}(", "before"), NodeEdit(value, ")", "after")), safety)


