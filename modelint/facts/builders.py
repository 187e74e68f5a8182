"""Functions of the file that build modules: `def conv_bn(c_in, c_out): return nn.Sequential(...)`.

A model's definition often calls such a builder instead of a constructor; what the
builder returns is as mode-dependent as the layers it builds (a layer built and kept
in a list it then registers counts too), and a call of it is as good as a construction
of what it returns.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.collector import Collector
from modelint.facts.torch_layers import Dependence
from modelint.facts.walk import iter_nodes


class Builders:
    """Mixed into ModuleTable: `_builders`, `_built`, `imports`, `layer_dependence()` come from there."""

    def builder_calls(self, func: cst.BaseExpression) -> list[cst.Call] | None:
        """The calls in the body of the file's function `func` names, if it names one."""
        name = self._builder_name(func)
        return [call for call, _returned in self._builders[name]] if name is not None else None

    def builder_returns_mode_dependent(self, call: cst.Call) -> bool:
        """Does `call` run a function of this file that returns a module it builds with Dropout or
        BatchNorm in it (`make_member()`: `return nn.Sequential(..., nn.Dropout(p), ...)`)?"""
        name = self._builder_name(call.func)
        return name is not None and self._builder_dependence(name) is Dependence.DEPENDENT

    def _builder_name(self, func: cst.BaseExpression) -> str | None:
        """The name of a module-level function of this file that `func` calls (not an import)."""
        if type(func) is cst.Name and func.value in self._builders and func.value not in self.imports.bindings:
            return func.value
        return None

    def _builder_dependence(self, name: str) -> Dependence | None:
        """A function that returns a module it builds (`return nn.Sequential(*layers)`) holds every layer
        it builds; None when it returns no module it builds (then it is no builder)."""
        if name in self._built:
            return self._built[name]
        self._built[name] = None  # recursion guard: a builder calling itself adds nothing
        returned: Dependence | None = None
        inside = Dependence.INDEPENDENT
        for call, is_return in self._builders[name]:
            dependence = self.layer_dependence(call)
            if dependence is None:
                continue
            if is_return:
                returned = dependence if returned is None else max(returned, dependence)
            else:
                inside = max(inside, dependence)
        if returned is Dependence.UNKNOWN and inside is Dependence.DEPENDENT:
            returned = Dependence.DEPENDENT  # `layers.append(nn.BatchNorm2d(c))` ... `nn.Sequential(*layers)`
        self._built[name] = returned
        return returned


def builder_functions(collector: Collector) -> dict[str, list[tuple[cst.Call, bool]]]:
    """Functions of the file that are no methods (module-level, or nested in a constructor as in
    `def block(c_in, c_out): ...` inside `__init__`), with the calls in their bodies: (call, returned
    directly). Namesakes share one entry: a call of the name builds what any of them builds."""
    functions = {f: f.name for f in collector.functions if f.cls is None}
    calls: dict[str, list[tuple[cst.Call, bool]]] = {name: [] for name in functions.values()}
    # A module built into a name the function returns, alone or in a tuple (`module_list = nn.ModuleList()`,
    # ..., `return net_info, module_list`), is returned too.
    held = {value: key for key, value, site in collector.call_assigns if site.function in functions}
    for site in collector.calls:
        name = functions.get(site.site.function)
        if name is None:
            continue
        stmt = site.site.stmt
        returned = type(stmt) is cst.SimpleStatementLine and any(
            type(small) is cst.Return and small.value is site.node for small in stmt.body)
        if not returned and site.node in held:
            returned = held[site.node] in _returned_names(site.site.function)
        if not returned:
            # `layers = [nn.Conv2d(...), nn.LeakyReLU(0.2)]`, `layers.append(nn.BatchNorm2d(c))`, `return layers`:
            # a function returning a list it fills returns every layer it builds
            returned = bool(_returned_names(site.site.function) & _list_names(site.site.function))
        calls[name].append((site.node, returned))
    return calls


def _returned_names(function) -> set[str]:
    """The names a function returns, alone or as items of a returned tuple."""
    cache = function.__dict__.setdefault("_returned_names", None)
    if cache is None:
        cache = set()
        for node in iter_nodes(function.node.body):
            if type(node) is cst.Return and node.value is not None:
                values = [e.value for e in node.value.elements] if type(node.value) is cst.Tuple else [node.value]
                cache.update(v.value for v in values if type(v) is cst.Name)
        function.__dict__["_returned_names"] = cache
    return cache


def _list_names(function) -> set[str]:
    """The names a function binds to a list display or comprehension (`layers = []`)."""
    cache = function.__dict__.get("_list_names")
    if cache is None:
        cache = {target.target.value for node in iter_nodes(function.node.body)
                 if type(node) is cst.Assign and type(node.value) in (cst.List, cst.ListComp)
                 for target in node.targets if type(target.target) is cst.Name}
        function.__dict__["_list_names"] = cache
    return cache
