"""Properties that hand back an attribute of the object: `self.model` read through

    @property
    def model(self):
        if self._model is None:
            self._model = self.setup_model()
        return self._model.to(self.device)

is `self._model`, moved at most: `self.model.eval()` switches it, `self.model(x)` runs it. And methods that
hand back the object itself (a fluent setter, `def patch(self, size): self.size = size; return self`): what
they return is the receiver.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.modules import unwrap_chain
from modelint.facts.names import dotted
from modelint.facts.walk import iter_nodes

_PROPERTIES = frozenset({"property", "functools.cached_property", "cached_property"})


def is_property(function) -> bool:
    """A method read as an attribute: `self.model(x)` runs the getter with no arguments and calls what it gives."""
    return any(dotted(d) in _PROPERTIES for d in function.decorators)


def property_aliases(collector) -> dict:
    """class -> {`self.model`: `self._model`} for each property of it (not an attribute the class also sets)
    whose every `return` hands back the same attribute of `self`, as it is or through `.to()`-like chains."""
    out: dict = {}
    assigned = {(assign.site.cls, dotted(assign.target)) for assign in collector.attribute_assigns}
    for function in collector.functions:
        if function.cls is None or not is_property(function):
            continue
        key = f"self.{function.name}"
        if (function.cls, key) in assigned:
            continue
        returned = {_attribute_handed_back(node.value) for node in iter_nodes(function.node.body)
                    if type(node) is cst.Return}
        if len(returned) == 1 and None not in returned and key not in returned:
            out.setdefault(function.cls, {})[key] = returned.pop()
    return out


def _attribute_handed_back(value: cst.BaseExpression | None) -> str | None:
    """`self._model`, or `self._model.to(device)`: "self._model"."""
    if value is None:
        return None
    base, _chain = unwrap_chain(value)
    key = dotted(base)
    return key if key is not None and key.startswith("self.") and key.count(".") == 1 else None


def methods_returning_self(collector) -> dict[str, set[str]]:
    """Method name -> the classes of the file whose method of that name hands back `self` on every return."""
    out: dict[str, set[str]] = {}
    for function in collector.functions:
        if function.cls is None or function.outer is not None or not _ends_returning_self(function.node):
            continue  # (the last statement first: most methods are not fluent setters, and their bodies go unread)
        returns = [node.value for node in iter_nodes(function.node.body) if type(node) is cst.Return]
        if returns and all(type(value) is cst.Name and value.value == "self" for value in returns):
            out.setdefault(function.name, set()).add(function.cls.name)
    return out


def _ends_returning_self(method: cst.FunctionDef) -> bool:
    body = method.body.body if type(method.body) is cst.IndentedBlock else ()
    last = body[-1] if body else None
    small = last.body[-1] if type(last) is cst.SimpleStatementLine and last.body else None
    return type(small) is cst.Return and type(small.value) is cst.Name and small.value.value == "self"
