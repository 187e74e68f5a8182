"""Closures a factory of this file hands back: `loop = get_train_val_loop(model, optimizer)`, then
`loop(is_train=False)` runs the function `get_train_val_loop` defines and returns. And the names a closure
reads from the functions around it (`names_read_by`)."""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.caller_entry import nested_name
from modelint.facts.names import dotted
from modelint.facts.scopes import FunctionInfo
from modelint.facts.walk import iter_nodes, push_child_nodes


class ReturnedClosures:
    """Mixed into MethodTargets: `visible_bindings`, `local_functions`, `nested_functions`, `collector` come
    from CallGraph."""

    def returned_closure(self, name: str, enclosing: FunctionInfo | None) -> FunctionInfo | None:
        """`loop = get_train_val_loop(model, optimizer)`, then `loop(is_train=False)`: the function defined in
        the factory that every `return` of it hands back, when every binding of the name is such a call."""
        if name not in self._names_of_returned_closures:
            return None
        visible = self.visible_bindings(name, enclosing)
        if visible is None:
            return None
        found = set()
        for binding in visible[0]:
            value = binding.value if binding.kind == "assign" else None
            factory = self.local_functions.get(value.func.value) \
                if type(value) is cst.Call and type(value.func) is cst.Name else None
            found.add(self._closure_handed_back.get(factory) if factory is not None else None)
        return found.pop() if len(found) == 1 else None

    def held_closure(self, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of the closure `self.val_step(x, y)` runs in a method (see closure_held_by)."""
        if type(func) is not cst.Attribute or type(func.value) is not cst.Name or func.value.value != "self":
            return None
        while enclosing is not None and enclosing.cls is None:
            enclosing = enclosing.outer
        closure = self.closure_held_by(f"self.{func.attr.value}", enclosing.cls) if enclosing is not None else None
        return nested_name(closure) if closure is not None else None

    def closure_held_by(self, attribute: str, cls) -> FunctionInfo | None:
        """`self.val_step = self._make_val_step()` in the class's methods, then `self.val_step(x, y)`: the function
        `_make_val_step` defines and hands back, when every assignment of the attribute is such a call."""
        if cls is None or attribute not in self._attributes_of_returned_closures.get(cls.name, ()):
            return None
        found = set()
        for assign in self.collector.assigns_to(cls, attribute):
            value = assign.value
            factory = self.local_functions.get(f"{cls.name}.{value.func.attr.value}") \
                if type(value) is cst.Call and type(value.func) is cst.Attribute \
                and type(value.func.value) is cst.Name and value.func.value.value == "self" else None
            found.add(self._closure_handed_back.get(factory) if factory is not None else None)
        return found.pop() if len(found) == 1 else None

    @cached_property
    def _closure_handed_back(self) -> dict:
        """Top-level function (or method) -> the function it defines that every `return` of it hands back (of the
        functions some `name = factory(...)` or `self.x = self.factory(...)` calls: no other is asked about)."""
        called = {value.func.value for key, value, _site in self.collector.call_assigns
                  if "." not in key and type(value.func) is cst.Name}
        called |= {value.func.attr.value for key, value, _site in self.collector.call_assigns if key.startswith("self.")
                   and type(value.func) is cst.Attribute and dotted(value.func.value) == "self"}
        out = {}
        returns_of: dict = {}
        for (outer, name), nested in self.nested_functions.items():
            if outer.outer is not None or nested.cls is not None or outer.name not in called:
                continue
            returns = returns_of.get(outer)
            if returns is None:
                returns = returns_of[outer] = own_returns(outer.node)
            if returns and all(type(r.value) is cst.Name and r.value.value == name for r in returns):
                out[outer] = nested
        return out

    @cached_property
    def _attributes_of_returned_closures(self) -> dict[str, frozenset[str]]:
        """class -> the `self.<attr>` some assignment in its methods binds to a call of its own closure factory."""
        factories = {(function.cls.name, function.name) for function in self._closure_handed_back
                     if function.cls is not None}
        out: dict[str, set[str]] = {}
        for key, value, site in self.collector.call_assigns:
            if site.cls is not None and key.startswith("self.") and type(value.func) is cst.Attribute \
                    and dotted(value.func.value) == "self" and (site.cls.name, value.func.attr.value) in factories:
                out.setdefault(site.cls.name, set()).add(key)
        return {name: frozenset(keys) for name, keys in out.items()}

    @cached_property
    def _names_of_returned_closures(self) -> frozenset[str]:
        """Plain names some assignment binds to a call of a function that hands back a closure."""
        factories = {function.name for function in self._closure_handed_back if function.cls is None}
        return frozenset(key for key, value, _site in self.collector.call_assigns
                         if "." not in key and type(value.func) is cst.Name and value.func.value in factories)


def own_returns(node: cst.FunctionDef) -> list[cst.Return]:
    """The `return` statements of a function's body, not those of the functions or classes defined in it."""
    found = []
    stack: list = [node.body]
    while stack:
        current = stack.pop()
        kind = type(current)
        if kind is cst.Return:
            found.append(current)
        elif kind not in _OTHER_SCOPES and not isinstance(current, cst.BaseExpression):  # (no statement in those)
            push_child_nodes(stack, current)
    return found


_OTHER_SCOPES = (cst.FunctionDef, cst.ClassDef)


def names_read_by(nested: FunctionInfo) -> set[str]:
    """The plain names a nested function reads that are not its own parameters (not `x.target`, an attribute,
    nor `f(target=...)`, a keyword): what it may take from the enclosing function's variables."""
    named, not_read = set(), set()
    for node in iter_nodes(nested.node.body):
        if type(node) is cst.Attribute:
            not_read.add(id(node.attr))
        elif type(node) is cst.Arg and node.keyword is not None:
            not_read.add(id(node.keyword))
        elif type(node) is cst.Name and id(node) not in not_read and node.value not in nested.param_set:
            named.add(node.value)
    return named
