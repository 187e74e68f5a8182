from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.names import NOT_LITERAL, dotted, literal_value
from modelint.facts.receivers import instance_method
from modelint.facts.walk import iter_nodes
from modelint.rule import NodeEdit, NodeFix, Report, Rule
from modelint.textutil import code_of

# Layers without children: setting their own flag is all there is to set.
_LEAF_HINTS = ("BatchNorm", "Dropout", "InstanceNorm", "RReLU", "Norm")


class TrainingFlagAssigned(Rule):
    """
    ## What it does
    Finds `model.training = False` / `= True` on a module, other than `self` inside
    the module's own `train()` override. What the receiver is comes from its class
    (built here, annotated, passed by the callers in this file, assigned to
    `self.model`) or from calls only modules have; single layers (a BatchNorm has no
    children) and a method that switches each child itself and then records its own
    flag are left alone.

    ## Why is this bad?
    `training` is a plain attribute of each module. Assigning it changes that one
    module and none of its children: the Dropout and BatchNorm layers inside keep
    their old mode. `model.eval()` and `model.train()` walk the whole tree.

    ## Example
    ```python
    model.training = False
    ```

    ## Use instead
    ```python
    model.eval()
    ```

    ## Fix safety
    Safe: `eval()` / `train(flag)` set the same flag on the module and also on
    every submodule, which is what the assignment was meant to do.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.train
    """

    code = "MDL010"
    name = "training-flag-assigned"
    severity = "warning"
    summary = "`module.training = ...` changes only that module, not its children."
    fix_safety = "safe"
    fixtures = "MDL010_training_flag_assigned"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        applied = _functions_passed_to_apply(facts)
        leaves = _leaf_layers(facts)
        for assign in facts.collector.attribute_assigns:
            if assign.target.attr.value != "training":
                continue
            receiver = dotted(assign.target.value)
            if receiver is None:
                continue
            site = assign.site
            function = site.function
            # What the receiver is: an nn.Module by its class (built here, annotated, `self` of a module
            # class, what `self.x` was assigned, what the callers pass) or by calls only modules have.
            # A leaf layer (BatchNorm, Dropout) has no children to miss; a class of its own `training`
            # (an agent, a config) is not the module flag.
            known = facts.receivers.of(assign.target.value, function, site.stmt)
            if known.module is not True or known.leaf or "training" in known.defines:
                continue
            own = instance_method(function, receiver)
            if own is not None and (own.name == "train" or _children_follow(facts, own, receiver, assign.value)):
                continue  # its own train(), or a mode switch that sets each child first and then its own flag
            if own is not None and _constructor_flag_alone(facts, own, assign):
                continue  # the constructor's word on its flag, with no child in another mode
            if function is not None and function.name in applied:
                continue  # model.apply(fn) visits every submodule
            if receiver in leaves:
                continue  # a BatchNorm/Dropout layer has no children to miss
            if _covers_every_module(facts, receiver, site.guards):
                continue
            value = literal_value(assign.value) if assign.value is not None else None
            call = "eval()" if value is False else "train()" if value is True else "train(flag)"
            fix = None
            if type(assign.node) is cst.Assign and len(assign.node.targets) == 1 and assign.value is not None:
                shown = call if value in (True, False) else f"train({code_of(assign.value, 200)})"
                # The edit takes the value's own text: code_of shortens it and joins its lines (and a
                # comment inside would swallow the rest), which is for messages only.
                replacement = call if value in (True, False) else \
                    f"train({cst.Module(body=[]).code_for_node(assign.value)})"
                fix = NodeFix(f"Replace with `{receiver}.{shown}`",
                              (NodeEdit(assign.node, f"{receiver}.{replacement}", "replace"),))
            yield Report(assign.node, f"`{receiver}.training = ...` flips only this module's flag: its submodules "
                                      f"(Dropout, BatchNorm) keep their mode; call `{receiver}.{call}`",
                         stmt=site.stmt, fix=fix)


def _children_follow(facts: FileFacts, method, owner: str, value) -> bool:
    """Does `method` switch `owner`'s children itself (`self.net.train(mode)`, `self.q.set_mode(mode)`)?

    A call on one of `owner`'s attributes that passes the same value, or any other module's
    train()/eval() (`for m in self.children(): m.train(mode)`).
    """
    wanted = dotted(value) if value is not None else None
    for site in facts.collector.calls:
        if site.site.function is not method or type(site.node.func) is not cst.Attribute:
            continue
        target = dotted(site.node.func.value) or ""
        if target == owner:
            continue
        if site.node.func.attr.value in ("train", "eval"):
            return True
        if target.startswith(owner + ".") and wanted is not None and any(
                dotted(arg.value) == wanted or (literal_value(arg.value) is literal_value(value)
                                                 and literal_value(value) in (True, False))
                for arg in site.node.args):
            return True
    return False


def _constructor_flag_alone(facts: FileFacts, method, assign) -> bool:
    """`self.training = flag` in a module's own `__init__`, where no child can be in another mode: `= True`,
    the mode every module is built in; or any flag before it keeps a submodule, with nothing but `nn.Module` to
    build one in `super().__init__()`, where `self.train(flag)` would set the same one flag (a flag `forward()`
    reads to pick its outputs)."""
    if method.name != "__init__" or method.cls is None or dotted(assign.target.value) != "self":
        return False
    if assign.value is not None and literal_value(assign.value) is True:
        return True
    bases = [facts.imports.qualify(base.value) for base in method.cls.node.bases]
    if not bases or any(base not in ("torch.nn.Module", "torch.nn.modules.module.Module") for base in bases):
        return False
    for earlier in facts.collector.attribute_assigns:
        if earlier is assign:
            return True
        if earlier.site.function is method and earlier.value is not None and \
                dotted(earlier.target.value) == "self" and literal_value(earlier.value) is NOT_LITERAL:
            return False  # (`self.body = nn.Sequential(...)`, `self.net = net`: maybe a child; not `self.depth = 4`)
    return False


def _covers_every_module(facts: FileFacts, receiver: str, guards) -> bool:
    for guard in guards:
        if type(guard) is cst.For and dotted(guard.target) == receiver or (
            type(guard) is cst.For and type(guard.target) is cst.Tuple
            and any(dotted(e.value) == receiver for e in guard.target.elements)
        ):
            iterated = guard.iter
            if type(iterated) is cst.Call and type(iterated.func) is cst.Attribute and \
                    iterated.func.attr.value in ("modules", "named_modules", "children", "named_children"):
                return True
        if type(guard) is cst.If and _isinstance_leaf(guard.test, receiver, facts):
            return True
    return False


def _isinstance_leaf(test: cst.BaseExpression, receiver: str, facts: FileFacts) -> bool:
    for node in iter_nodes(test):
        if type(node) is cst.Call and dotted(node.func) == "isinstance" and len(node.args) == 2 \
                and dotted(node.args[0].value) == receiver:
            text = cst.Module(body=[]).code_for_node(node.args[1].value)
            if any(hint in text for hint in _LEAF_HINTS):
                return True
    return False


def _leaf_layers(facts: FileFacts) -> set[str]:
    """Names bound to a single torch.nn layer (not a container): its own flag is all there is."""
    from modelint.facts import torch_api as api

    names: set[str] = set()
    for key, call, _site in facts.collector.call_assigns:
        qualified = facts.imports.qualify(call.func) or ""
        layer = qualified.rsplit(".", 1)[-1]
        if qualified.startswith("torch.nn.") and layer[:1].isupper() and layer not in api.CONTAINERS \
                and layer not in api.STACKS and not layer.startswith("Transformer") \
                and qualified not in api.MODULE_WRAPPERS:  # (`nn.DataParallel(model)`: the whole model inside)
            names.add(key)
    return names


def _functions_passed_to_apply(facts: FileFacts) -> set[str]:
    names: set[str] = set()
    for site in facts.collector.calls:
        func = site.node.func
        if type(func) is cst.Attribute and func.attr.value == "apply" and site.node.args:
            name = dotted(site.node.args[0].value)
            if name:
                names.add(name.rsplit(".", 1)[-1])
    return names
