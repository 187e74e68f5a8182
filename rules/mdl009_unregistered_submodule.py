from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.modules import Dependence
from modelint.facts.names import dotted
from modelint.facts.walk import iter_nodes
from modelint.rule import NodeEdit, NodeFix, Report, Rule


class UnregisteredSubmodule(Rule):
    """
    ## What it does
    Finds `nn.Module`s stored in a plain `list`, `dict` or `tuple` attribute of a
    module (`self.blocks = [Block() for _ in range(4)]`, or `self.layers = []`
    followed by `self.layers.append(nn.Linear(...))`), and mode-dependent layers
    (Dropout, BatchNorm) constructed inside `forward`.

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
        modules = facts.modules
        nn = _nn_name(facts)
        plain_lists: dict[tuple[object, str], cst.BaseExpression] = {}
        registered = _registered_attributes(facts)
        for assign in facts.collector.attribute_assigns:
            site = assign.site
            if not _self_attribute(assign.target) or site.cls is None or not modules.is_module_class(site.cls):
                continue
            value = assign.value
            if value is None:
                continue
            attr = assign.target.attr.value
            if (site.cls, attr) in registered or (site.cls, "*") in registered:
                continue  # later wrapped (`self.x = nn.ModuleList(self.x)`) or add_module()d
            if _empty_container(value):
                plain_lists[(site.cls, attr)] = value
                continue
            kind = _container_kind(value)
            if kind is not None and self._holds_modules(facts, value, site.function):
                wrapper = "nn.ModuleDict" if kind == "dict" else "nn.ModuleList"
                yield Report(assign.node, f"modules in a plain {kind} `self.{attr}` are not registered: eval(), "
                                          f".to() and parameters() miss them; use `{wrapper}(...)`",
                             stmt=site.stmt, fix=_wrap(value, kind, nn))
        for call_site in facts.collector.calls:
            call = call_site.node
            site = call_site.site
            func = call.func
            if site.cls is None or not modules.is_module_class(site.cls):
                continue
            if isinstance(func, cst.Attribute) and func.attr.value in ("append", "extend", "insert") \
                    and _self_attribute(func.value) and (site.cls, func.value.attr.value) in plain_lists:
                if any(self._holds_modules(facts, arg.value, site.function) for arg in call.args):
                    attr = func.value.attr.value
                    empty = plain_lists[(site.cls, attr)]
                    fix = None
                    if nn is not None and isinstance(empty, cst.List):
                        fix = NodeFix(f"Make `self.{attr}` an `{nn}.ModuleList()`",
                                      (NodeEdit(empty, f"{nn}.ModuleList()", "replace"),))
                    yield Report(call, f"modules added to the plain list `self.{attr}` are not registered: eval(), "
                                       f".to() and parameters() miss them; make `self.{attr}` an `nn.ModuleList()`",
                                 stmt=site.stmt, fix=fix)
                continue
            if site.function is not None and site.function.name == "forward" and site.function.cls is site.cls:
                built = modules.construction(call)
                qualified = call_site.qualified or ""
                if built is not None and built.dependence is Dependence.DEPENDENT and qualified.startswith("torch.nn."):
                    layer = qualified.rsplit(".", 1)[-1]
                    yield Report(call, f"`nn.{layer}` built inside forward is a new layer at every call, always in "
                                       f"training mode and unseen by eval(); create it in __init__ as `self.<name>`",
                                 stmt=site.stmt)

    @staticmethod
    def _holds_modules(facts: FileFacts, value: cst.BaseExpression, function) -> bool:
        """Does the container hold modules: built right there, or bound to a module in this method?"""
        modules = facts.modules
        local_modules = {
            key for key, call, site in facts.collector.call_assigns
            if site.function is function and "." not in key
            and (built := modules.construction(call)) is not None and built.certain
        }
        for node in iter_nodes(value, skip_lambdas=True):
            if isinstance(node, cst.Call):
                built = modules.construction(node)
                if built is not None and built.certain:
                    return True
            elif isinstance(node, cst.Name) and node.value in local_modules:
                return True
        return False


def _registered_attributes(facts: FileFacts) -> set[tuple[object, str]]:
    """(class, attr) pairs registered some other way; (class, "*") if the class calls add_module()."""
    found: set[tuple[object, str]] = set()
    for assign in facts.collector.attribute_assigns:
        value = assign.value
        if isinstance(value, cst.Call) and _self_attribute(assign.target) and assign.site.cls is not None:
            built = facts.modules.construction(value)
            if built is not None and built.certain:
                found.add((assign.site.cls, assign.target.attr.value))
    for site in facts.collector.calls:
        func = site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("add_module", "register_module") \
                and dotted(func.value) == "self" and site.site.cls is not None:
            found.add((site.site.cls, "*"))
    return found


def _nn_name(facts: FileFacts) -> str | None:
    """How this file spells `torch.nn` (`nn`, `torch.nn`), or None."""
    for local, qualified in facts.imports.bindings.items():
        if qualified == "torch.nn":
            return local
    if facts.imports.bindings.get("torch") == "torch":
        return "torch.nn"
    return None


def _wrap(value: cst.BaseExpression, kind: str, nn: str | None) -> NodeFix | None:
    if nn is None:
        return None
    if kind == "dict":
        if isinstance(value, cst.Dict) and not all(
            isinstance(e, cst.DictElement) and isinstance(e.key, cst.SimpleString) for e in value.elements
        ):
            return None  # ModuleDict needs string keys
        wrapper = f"{nn}.ModuleDict"
    else:
        wrapper = f"{nn}.ModuleList"
    if isinstance(value, cst.Tuple) and not value.lpar:
        return None
    return NodeFix(f"Wrap in `{wrapper}(...)`", (NodeEdit(value, f"{wrapper}(", "before"), NodeEdit(value, ")", "after")))


def _self_attribute(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Attribute) and dotted(node.value) == "self"


def _empty_container(value: cst.BaseExpression) -> bool:
    if isinstance(value, (cst.List, cst.Dict)) and not value.elements:
        return True
    return isinstance(value, cst.Call) and dotted(value.func) in ("list", "dict") and not value.args


def _container_kind(value: cst.BaseExpression) -> str | None:
    if isinstance(value, (cst.List, cst.ListComp)):
        return "list"
    if isinstance(value, (cst.Dict, cst.DictComp)):
        return "dict"
    if isinstance(value, cst.Tuple):
        return "tuple"
    if isinstance(value, cst.Call) and dotted(value.func) in ("list", "tuple", "dict") and value.args:
        return dotted(value.func)
    return None
