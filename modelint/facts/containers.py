"""Plain containers of modules kept on an nn.Module (the facts behind MDL009).

`plain_containers(facts)` finds, per nn.Module class, the attributes made plain
`list`/`dict`/`tuple` containers (`self.layers = []`, `self.heads = {...}`,
`self.blocks = modules` for `*modules: nn.Module`) that end up holding modules: built
in the container itself, or put in later (`self.layers.append(Block())`,
`self.tables[name] = nn.Embedding(...)`). Left out are containers registered some
other way (`nn.Sequential(*self.layers)`, `add_module`, a module built of them under
another name), and containers no method but `__init__` ever reads: a dict of candidate
backbones of which one is kept as a registered attribute holds nothing the module uses.

A layer built from an imported class this file cannot see (`LSTMCell(...)` from a
sibling file the run was not given) counts when the module calls the container's
elements in a method, as it calls its layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from modelint.facts.container_registration import calls_add_module, elements_taken_by, registered_after, wraps_itself
from modelint.facts.scopes import AttributeAssign, ClassInfo
from modelint.facts.modules import Dependence
from modelint.facts.names import dotted
from modelint.facts.receivers import instance_method
from modelint.facts.walk import iter_nodes

_FILLERS = ("append", "extend", "insert", "update", "setdefault")


@dataclass(eq=False)
class PlainContainer:
    cls: ClassInfo
    attr: str
    assign: AttributeAssign  # where the container is made: the finding and the fix go here
    kind: str  # "list" | "dict" | "tuple"
    empty: bool  # `[]` / `{}` filled later
    fills: list[cst.CSTNode] = field(default_factory=list)  # appends and item assignments that add modules
    # Its elements' parameters are registered one by one (`self._add(m.parameters())`): only the mode switches
    # miss them, which matters because some element depends on the mode.
    by_hand: bool = False


def plain_containers(facts) -> list[PlainContainer]:
    modules = facts.modules
    found: list[PlainContainer] = []
    by_class: dict[ClassInfo, list[AttributeAssign]] = {}
    for assign in facts.collector.attribute_assigns:
        cls = assign.site.cls
        method = instance_method(assign.site.function, None)
        if cls is None or method is None or method.cls is not cls or assign.value is None \
                or dotted(assign.target.value) != method.params[0] or not modules.is_module_class(cls):
            continue
        by_class.setdefault(cls, []).append(assign)
    for cls, assigns in by_class.items():
        if not any(_empty_kind(a.value) or _container_kind(facts, a.value, a.site.function) for a in assigns) \
                or calls_add_module(facts, cls):
            continue  # nothing that could be a plain container of modules
        # (`self.layers = nn.ModuleList(self.layers)`, or any callable taking the list whole, `Seq(*self.layers)`:
        # the attribute no longer holds the plain list)
        registering = [a for a in assigns if _builds_module(facts, a.value) or wraps_itself(a)]
        reads = _attribute_reads(facts, cls)
        # (`self.net = nn.ModuleList(list(self.convs.values()))`: the dict's modules registered under another name)
        held_by_modules = {attr for a in registering for attr in elements_taken_by(a) if attr != a.target.attr.value}
        for position, assign in enumerate(assigns):
            attr = assign.target.attr.value
            if registered_after(assign, position, assigns, registering) or attr in reads.passed_to_modules \
                    or attr not in reads.outside_init or attr in held_by_modules:
                continue
            by_hand = _elements_registered_by_hand(facts, cls, attr)
            value = assign.value
            function = assign.site.function
            empty = _empty_kind(value)
            if empty is not None:
                declared = any(_declares_modules(facts, a) for a in assigns if a.target.attr.value == attr)
                filled = [(node, put) for node, put in reads.fills.get(attr, [])
                          if declared or _holds_modules(facts, put, reads.functions.get(node), attr in reads.called)]
                if filled and (not by_hand or any(_holds_modules(facts, put, reads.functions.get(node), False, True)
                                                  for node, put in filled)):
                    found.append(PlainContainer(cls, attr, assign, empty, True, [node for node, _ in filled], by_hand))
                continue
            kind = _container_kind(facts, value, function)
            if kind is not None and _holds_modules(facts, value, function, attr in reads.called, by_hand):
                found.append(PlainContainer(cls, attr, assign, kind, False, by_hand=by_hand))
    return found


@dataclass
class _Reads:
    outside_init: set[str] = field(default_factory=set)  # attributes read in a method other than __init__
    passed_to_modules: set[str] = field(default_factory=set)  # `nn.Sequential(*self.x)`, `nn.ModuleList(self.x)`
    called: set[str] = field(default_factory=set)  # `self.x[i](h)`, `for m in self.x: m(h)`
    fills: dict[str, list] = field(default_factory=dict)  # attr -> [(statement node, value put in)]
    functions: dict = field(default_factory=dict)  # fill node -> its function


def _attribute_reads(facts, cls: ClassInfo) -> _Reads:
    reads = _Reads()
    built_by = _construction_helpers(facts, cls)
    for function in facts.collector.functions:
        method = instance_method(function, None)
        if method is None or function.cls is not cls:
            continue
        owner = method.params[0]
        outside = function.name != "__init__" and function not in built_by
        body = function.node.body
        for node in iter_nodes(body, skip_lambdas=False):
            kind = type(node)
            if kind is cst.Attribute and dotted(node.value) == owner:
                if outside:
                    reads.outside_init.add(node.attr.value)
            elif kind is cst.Call:
                _read_call(facts, node, owner, reads, function)
            elif kind is cst.Assign:
                for target in node.targets:
                    attr = _item_of(target.target, owner)
                    if attr is not None:
                        reads.fills.setdefault(attr, []).append((node, node.value))
                        reads.functions[node] = function
            elif kind is cst.For:
                attr = _iterated_attribute(node.iter, owner)
                if attr is not None and _target_called(node):
                    reads.called.add(attr)
            elif kind in (cst.ListComp, cst.GeneratorExp, cst.SetComp):  # `[gen(x) for gen in self.gens]`
                comp = node.for_in
                attr = _iterated_attribute(comp.iter, owner)
                if attr is not None and _names_called(comp.target, node.elt):
                    reads.called.add(attr)
    # A subclass in this file reads the container in its own methods too.
    for other in facts.collector.functions:
        if other.cls is not None and other.cls is not cls and other.name != "__init__" \
                and any(dotted(b) == cls.name for b in other.cls.bases):
            owner_method = instance_method(other, None)
            if owner_method is not None:
                for node in iter_nodes(other.node.body):
                    if type(node) is cst.Attribute and dotted(node.value) == owner_method.params[0]:
                        reads.outside_init.add(node.attr.value)
    return reads


def _construction_helpers(facts, cls: ClassInfo) -> set:
    """Private methods (`_get_basemodel`) that only `__init__` calls, as `self._x(...)`: they run while the
    module is built, so what they read of a container is read at construction, as `__init__`'s reads are."""
    callers: dict[str, set] = {}
    for call in cls.calls:  # (the calls in its own methods)
        func = call.func
        function = facts.call_sites[call].site.function
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self" \
                and function is not None and function.cls is cls:
            callers.setdefault(func.attr.value, set()).add(function.name)
    return {function for function in facts.collector.functions
            if function.cls is cls and function.name.startswith("_") and not function.name.startswith("__")
            and callers.get(function.name, set()) == {"__init__"}}


def _read_call(facts, call: cst.Call, owner: str, reads: _Reads, function) -> None:
    func = call.func
    if type(func) is cst.Attribute and func.attr.value in _FILLERS and type(func.value) is cst.Attribute \
            and dotted(func.value.value) == owner:
        for arg in call.args:
            reads.fills.setdefault(func.value.attr.value, []).append((call, arg.value))
            reads.functions[call] = function
        return
    if type(func) is cst.Subscript and type(func.value) is cst.Attribute and dotted(func.value.value) == owner:
        reads.called.add(func.value.attr.value)
        return
    built = facts.modules.construction(call)
    if built is not None and built.certain:
        for arg in call.args:
            inner = arg.value
            if type(inner) is cst.Call and dotted(inner.func) in ("list", "tuple") and inner.args:
                inner = inner.args[0].value
            if type(inner) is cst.Attribute and dotted(inner.value) == owner:
                reads.passed_to_modules.add(inner.attr.value)


def _item_of(target: cst.BaseExpression, owner: str) -> str | None:
    """`self.x[key] = ...` -> "x"."""
    if type(target) is cst.Subscript and type(target.value) is cst.Attribute \
            and dotted(target.value.value) == owner:
        return target.value.attr.value
    return None


def _iterated_attribute(iterated: cst.BaseExpression, owner: str) -> str | None:
    """`self.x`, `self.x.values()`, `enumerate(self.x)`, `zip(self.x, ...)` -> "x"."""
    if type(iterated) is cst.Call:
        if type(iterated.func) is cst.Attribute and iterated.func.attr.value == "values":
            iterated = iterated.func.value
        elif dotted(iterated.func) in ("enumerate", "zip", "reversed") and iterated.args:
            iterated = iterated.args[0].value
    if type(iterated) is cst.Attribute and dotted(iterated.value) == owner:
        return iterated.attr.value
    return None


def _target_called(loop: cst.For) -> bool:
    return _names_called(loop.target, loop.body)


def _names_called(target: cst.BaseExpression, body: cst.CSTNode) -> bool:
    """Is a name the loop binds (`gen`, or one of `gen, s, d`) called in the body?"""
    names = _loop_names(target)
    return any(type(node) is cst.Call and dotted(node.func) in names for node in iter_nodes(body))


def _loop_names(target: cst.BaseExpression) -> set[str]:
    """The names a loop binds: `gen`, or those of `i, (gen, s)`'s first level."""
    names = {dotted(e.value) for e in target.elements} if type(target) is cst.Tuple else {dotted(target)}
    names.discard(None)
    return names


def _elements_registered_by_hand(facts, cls: ClassInfo, attr: str) -> bool:
    """`for i, m in enumerate(self.linear): self._add_to_parameters(m.parameters(), ...)`: each element's
    parameters are handed to a method of the object, which registers them one by one."""
    for function in facts.collector.functions:
        method = instance_method(function, None)
        if method is None or function.cls is not cls:
            continue
        owner = method.params[0]
        for node in iter_nodes(function.node.body):
            if type(node) is not cst.For or _iterated_attribute(node.iter, owner) != attr:
                continue
            names = _loop_names(node.target)
            for call in iter_nodes(node.body):
                if type(call) is cst.Call and type(call.func) is cst.Attribute \
                        and dotted(call.func.value) == owner and any(
                            type(arg.value) is cst.Call and type(arg.value.func) is cst.Attribute
                            and arg.value.func.attr.value == "parameters" and dotted(arg.value.func.value) in names
                            for arg in call.args):
                    return True
    return False


def _declares_modules(facts, assign: AttributeAssign) -> bool:
    """`self.layers: List[nn.Module] = []` (or `Optional[Dict[str, nn.Module]]`): the author says the
    container's elements are modules (not `Dict[str, Tuple[nn.Module, Tensor]]`, which holds pairs)."""
    node = assign.node
    if type(node) is not cst.AnnAssign:
        return False
    return _element_is_module(facts, node.annotation.annotation, 0)


_WRAPPERS = {"Optional": -1, "Union": -1, "List": 0, "list": 0, "Sequence": 0, "MutableSequence": 0,
             "Iterable": 0, "Set": 0, "set": 0, "Dict": 1, "dict": 1, "Mapping": 1, "MutableMapping": 1}


def _element_is_module(facts, annotation: cst.BaseExpression, depth: int) -> bool:
    if type(annotation) is not cst.Subscript:
        return depth > 0 and facts.receivers.of_annotation(annotation).module is True
    name = (dotted(annotation.value) or "").rsplit(".", 1)[-1]
    position = _WRAPPERS.get(name)
    if position is None or depth > 3:
        return False
    elements = [e.slice.value for e in annotation.slice if type(e.slice) is cst.Index]
    if position == -1:  # Optional[X], Union[X, None]: any of them
        return any(_element_is_module(facts, e, depth) for e in elements if dotted(e) != "None")
    return len(elements) > position and _element_is_module(facts, elements[position], depth + 1)


def _builds_module(facts, value: cst.BaseExpression) -> bool:
    if type(value) is not cst.Call:
        return False
    built = facts.modules.construction(value)
    return built is not None and built.certain


def _empty_kind(value: cst.BaseExpression) -> str | None:
    if type(value) is cst.List and not value.elements:
        return "list"
    if type(value) is cst.Dict and not value.elements:
        return "dict"
    if type(value) is cst.Call and dotted(value.func) in ("list", "dict") and not value.args:
        return dotted(value.func)
    return None


def _container_kind(facts, value: cst.BaseExpression, function) -> str | None:
    if type(value) in (cst.List, cst.ListComp):
        return "list"
    if type(value) in (cst.Dict, cst.DictComp):
        return "dict"
    if type(value) is cst.Tuple:
        return "tuple"
    if type(value) is cst.Call and dotted(value.func) in ("list", "tuple", "dict") and value.args:
        return dotted(value.func)
    if type(value) is cst.Name and _star_modules(facts, value, function):
        return "tuple"
    return None


def _star_modules(facts, name: cst.Name, function) -> bool:
    """`*modules: nn.Module` (each extra positional argument a module): the tuple the method gets."""
    if function is None:
        return False
    star = function.node.params.star_arg
    if type(star) is not cst.Param or star.name.value != name.value or star.annotation is None:
        return False
    return facts.receivers.of_annotation(star.annotation.annotation).module is True


def _inert(built) -> bool:
    """A module with no weights and no mode (pooling, an activation, a wrapper of one): left out of
    eval(), .to() and parameters(), it loses nothing."""
    return built.parameterless and built.dependence is Dependence.INDEPENDENT


def _holds_modules(facts, value: cst.BaseExpression, function, elements_called: bool,
                   mode_dependent: bool = False) -> bool:
    """Does this value put modules in the container (with `mode_dependent`, modules whose mode matters): built
    right there, bound to one in this method, or the `*modules` of the method? `elements_called`: the module
    calls the container's elements, so an imported class this file cannot see counts too."""
    modules = facts.modules
    local: dict[str, bool] = {}
    for key, call, site in facts.collector.call_assigns:
        if site.function is function and "." not in key and _puts_module(modules, call, elements_called,
                                                                         mode_dependent):
            local[key] = True
    taken_apart = _taken_apart(value)
    for node in iter_nodes(value, skip_lambdas=True):
        if type(node) is cst.Call:
            if node not in taken_apart and _puts_module(modules, node, elements_called, mode_dependent):
                return True
        elif type(node) is cst.Name and node not in taken_apart and (
                local.get(node.value) or (not mode_dependent and _star_modules(facts, node, function))):
            return True
    return False


def _taken_apart(value: cst.BaseExpression) -> set:
    """The values of which only an attribute goes in (`nn.Linear(d, k).weight`: a parameter, not the layer)."""
    methods = {node.func for node in iter_nodes(value, skip_lambdas=True)
               if type(node) is cst.Call and type(node.func) is cst.Attribute}
    return {node.value for node in iter_nodes(value, skip_lambdas=True)
            if type(node) is cst.Attribute and node not in methods}


def _puts_module(modules, call: cst.Call, elements_called: bool, mode_dependent: bool = False) -> bool:
    """A module built by the call, or a mode-dependent one returned by a builder function of this file
    (`make_member()`: `return nn.Sequential(..., nn.Dropout(p), ...)`; a builder of activations, whose
    modules hold nothing a container could lose, is left alone)."""
    built = modules.construction(call)
    if mode_dependent:
        return modules.builder_returns_mode_dependent(call) if built is None \
            else built.dependence is Dependence.DEPENDENT
    if built is None:
        return modules.builder_returns_mode_dependent(call)
    if not built.certain and built.origin is not None and elements_called and modules.index is None:
        # (a class of another file, `MovingAvgBlock`: the file is analysed again once the index can say whether
        # it holds anything a container could lose, a pooling does not)
        modules.undecided_bases.add(built.origin)
    return not _inert(built) and (built.certain or (elements_called and built.origin is not None))
