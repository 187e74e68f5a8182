"""Registries: module-level dicts that map names to classes, picked by a key at run time.

`ARCHS = {"rec": RecModel, "det": DetModel}` then `ARCHS[cfg["type"]](cfg)`: whichever key
the configuration names, the call builds one of those classes. When every value is a module
class, the call builds a module, as dependent on the mode as the most dependent of them.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.names import dotted


class Registries:
    """Mixed into ModuleTable (which provides `_collector` and `construction`)."""

    @cached_property
    def registries(self) -> dict[str, list[cst.BaseExpression]]:
        """Module-level `NAME = {key: Class, ...}` (or `dict(key=Class, ...)`) whose values are all names of
        classes (capitalised names or dotted names ending in one) -> those values; a name bound twice is none."""
        found: dict[str, list[cst.BaseExpression]] = {}
        bound: dict[str, int] = {}
        for statement in self._collector.module_node.body:
            if type(statement) is not cst.SimpleStatementLine:
                continue
            for small in statement.body:
                if type(small) is not cst.Assign or len(small.targets) != 1 \
                        or type(small.targets[0].target) is not cst.Name:
                    continue
                name = small.targets[0].target.value
                bound[name] = bound.get(name, 0) + 1
                values = _class_values(small.value)
                if values:
                    found[name] = values
        return {name: values for name, values in found.items() if bound[name] == 1}

    def registered(self, call: cst.Call):
        """The module `ARCHS[key](...)` builds, when every class the registry holds builds one."""
        func = call.func
        if type(func) is not cst.Subscript or type(func.value) is not cst.Name:
            return None
        classes = self.registries.get(func.value.value)
        if not classes:
            return None
        built = [self.construction(cst.Call(func=cls, args=call.args)) for cls in classes]
        if any(b is None for b in built):
            return None
        from modelint.facts.modules import Construction

        return Construction(call, max(b.dependence for b in built), certain=all(b.certain for b in built),
                            parameterless=all(b.parameterless for b in built),
                            runs_loaded=any(b.runs_loaded for b in built))


def _class_values(value: cst.BaseExpression) -> list[cst.BaseExpression]:
    if type(value) is cst.Dict:
        values = [element.value for element in value.elements if type(element) is cst.DictElement]
        if len(values) != len(value.elements):
            return []  # (`**other`: entries we cannot see)
    elif type(value) is cst.Call and type(value.func) is cst.Name and value.func.value == "dict" \
            and all(arg.keyword is not None for arg in value.args):
        values = [arg.value for arg in value.args]
    else:
        return []
    names = [dotted(v) for v in values]
    if not values or any(n is None or not n.rsplit(".", 1)[-1][:1].isupper() for n in names):
        return []
    return values
