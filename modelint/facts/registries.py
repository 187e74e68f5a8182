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
    """Mixed into ModuleTable (which provides `_collector`, `construction` and the builders' lookups)."""

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

    @cached_property
    def function_registries(self) -> dict[str, list[str]]:
        """Module-level `LOADERS = {"open_clip": load_open_clip, ...}`, bound once, whose values are all plain
        names -> those names: `LOADERS[kind](name)` calls one of them (the flow resolves them to functions)."""
        found: dict[str, list[str]] = {}
        bound: dict[str, int] = {}
        for statement in self._collector.module_node.body:
            for small in statement.body if type(statement) is cst.SimpleStatementLine else ():
                if type(small) is not cst.Assign or len(small.targets) != 1 \
                        or type(small.targets[0].target) is not cst.Name:
                    continue
                name = small.targets[0].target.value
                bound[name] = bound.get(name, 0) + 1
                values = _listed_names(small.value) if type(small.value) is cst.Dict else []
                if values and all(type(v) is cst.Name for v in values):
                    found[name] = [v.value for v in values]
        return {name: values for name, values in found.items() if bound[name] == 1}

    @cached_property
    def held_registries(self) -> dict[str, list[cst.BaseExpression]]:
        """`self.edition = [resnet18, resnet50]` (a list, tuple or dict of names), the one assignment of that
        attribute in the file -> those names: a class's choice of backbone builders, picked by an index."""
        found: dict[str, list[cst.BaseExpression]] = {}
        bound: dict[str, int] = {}
        for assign in self._collector.attribute_assigns:
            key = dotted(assign.target)
            if key is None or not key.startswith("self.") or assign.site.cls is None:
                continue
            bound[key] = bound.get(key, 0) + 1
            values = _listed_names(assign.value)
            if values:
                found[key] = values
        return {key: values for key, values in found.items() if bound[key] == 1}

    def registered(self, call: cst.Call):
        """The module `ARCHS[key](...)` (or `self.edition[phi](...)`) builds, when every class or builder the
        registry holds builds one."""
        func = call.func
        if type(func) is not cst.Subscript:
            return None
        from modelint.facts.torch_layers import Construction

        if type(func.value) is cst.Name:
            classes = self.registries.get(func.value.value)
        else:
            classes = self.held_registries.get(dotted(func.value) or "")
        built = []
        for cls in classes or ():
            made = self.construction(cst.Call(func=cls, args=call.args))
            builder = self._builder_name(cls) if made is None else None
            dependence = self._builder_dependence(builder) if builder is not None else None
            built.append(made if dependence is None else Construction(call, dependence))  # `resnet18`: a builder here
        if not classes or any(b is None for b in built):
            return None
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


def _listed_names(value: cst.BaseExpression | None) -> list[cst.BaseExpression]:
    """The names a list, tuple or dict literal holds, when it holds nothing else."""
    if type(value) in (cst.List, cst.Tuple):
        values = [element.value for element in value.elements if type(element) is cst.Element]
        if len(values) != len(value.elements):
            return []
    elif type(value) is cst.Dict:
        values = [element.value for element in value.elements if type(element) is cst.DictElement]
        if len(values) != len(value.elements):
            return []
    else:
        return []
    return values if values and all(dotted(v) is not None for v in values) else []
