"""Whether a plain container of modules on an nn.Module is registered some other way (MDL009's exceptions):
rebound to what a call makes of it (`self.blocks = Seq(*self.blocks)`, `nn.ModuleList(self.layers)`), its
elements taken by a module built under another name (`self.net = nn.ModuleList(list(self.convs.values()))`),
or the class registering modules by hand (`add_module`, `setattr(self, name, layer)`)."""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import dotted
from modelint.facts.receivers import instance_method
from modelint.facts.scopes import AttributeAssign, ClassInfo


def wraps_itself(assign: AttributeAssign) -> bool:
    """`self.blocks = Seq(*self.blocks)`: the attribute rebound to what a call makes of the container itself."""
    value = assign.value
    return type(value) is cst.Call and dotted(value.func) not in ("list", "tuple", "dict") and any(
        dotted(arg.value) == dotted(assign.target) for arg in value.args)


def elements_taken_by(assign: AttributeAssign) -> set[str]:
    """The `self.<attr>` whose elements a module construction assigned to an attribute takes (`X(self.convs)`,
    `X(*self.layers)`, `X(list(self.convs.values()))`; not `nn.Linear(d * len(self.tables), d)`)."""
    receiver, value, out = dotted(assign.target.value), assign.value, set()
    for arg in value.args if type(value) is cst.Call else ():
        held = arg.value
        while type(held) is cst.Call and (len(held.args) == 1 and dotted(held.func) in ("list", "tuple") or (
                not held.args and type(held.func) is cst.Attribute and held.func.attr.value == "values")):
            held = held.args[0].value if held.args else held.func.value
        if type(held) is cst.Attribute and dotted(held.value) == receiver:
            out.add(held.attr.value)
    return out


def registered_after(assign: AttributeAssign, position: int, assigns: list, registering: list) -> bool:
    """Is the attribute made a module elsewhere: in another method (a `build()` replacing it), or later
    in this one on every path through it (`self.layers = nn.ModuleList(self.layers)`)? A module
    assigned in another branch (`self.head = Head()` if one level, a list of heads if several) leaves
    the list unregistered on its own path."""
    attr = assign.target.attr.value
    for other in registering:
        if other.target.attr.value != attr or other is assign:
            continue
        if other.site.function is not assign.site.function:
            return True
        if assigns.index(other) > position and set(other.site.guards) <= set(assign.site.guards):
            return True
    return False


def calls_add_module(facts, cls: ClassInfo) -> bool:
    """Does the class register modules by hand: `add_module`, `setattr(self, f"fc{i}", fc)` or
    `self.__setattr__(f"fc{i}", fc)` (the layers a plain list also holds are attributes then)?"""
    for site in facts.collector.calls:
        func = site.node.func
        if site.site.cls is not cls:
            continue
        if type(func) is cst.Attribute and func.attr.value in ("add_module", "register_module"):
            return True
        method = instance_method(site.site.function, None)
        if type(func) is cst.Attribute and func.attr.value == "__setattr__" and method is not None \
                and dotted(func.value) == method.params[0]:
            return True
        if type(func) is cst.Name and func.value == "setattr" and method is not None and site.node.args \
                and dotted(site.node.args[0].value) == method.params[0]:
            return True
    return False
