"""Functions of the file that build modules: `def conv_bn(c_in, c_out): return nn.Sequential(...)`.

A model's definition often calls such a builder instead of a constructor; what the
builder returns is as mode-dependent as the layers it builds (a layer built and kept
in a list it then registers counts too), and a call of it is as good as a construction
of what it returns.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.collector import Collector
from modelint.facts.names import NOT_LITERAL, literal_value
from modelint.facts.scopes import flag_outcomes
from modelint.facts.torch_layers import Dependence
from modelint.facts.walk import iter_nodes


class Builders:
    """Mixed into ModuleTable: `_builders`, `_built`, `_collector`, `imports`, `layer_dependence()` come from there;
    `unbuilt_calls`, the layer calls a builder's call at hand never makes, is this mixin's."""

    unbuilt_calls: frozenset = frozenset()

    def builder_calls(self, func: cst.BaseExpression) -> list[cst.Call] | None:
        """The calls in the body of the file's function `func` names, if it names one."""
        name = self._builder_name(func)
        return [call for call, _returned, _tests in self._builders[name]] if name is not None else None

    def builder_returns_mode_dependent(self, call: cst.Call) -> bool:
        """Does `call` run a function of this file that returns a module it builds with Dropout or
        BatchNorm in it (`make_member()`: `return nn.Sequential(..., nn.Dropout(p), ...)`)?"""
        name = self._builder_name(call.func)
        return name is not None and self._builder_dependence(name, call) is Dependence.DEPENDENT

    def _builder_name(self, func: cst.BaseExpression) -> str | None:
        """The name of a module-level function of this file that `func` calls (not an import)."""
        if type(func) is cst.Name and func.value in self._builders and func.value not in self.imports.bindings:
            return func.value
        return None

    def _builder_dependence(self, name: str, call: cst.Call | None = None) -> Dependence | None:
        """A function that returns a module it builds (`return nn.Sequential(*layers)`) holds every layer
        it builds; None when it returns no module it builds (then it is no builder). Given the call, the
        layers built only under a flag it turns off (`if batch_norm:` in `make_layers(cfg)`, whose default
        is False) are not built."""
        flags = self._flags_passed(name, call) if call is not None else {}
        if name in self._built and (not flags or self._built[name] is None):
            return self._built[name]
        key = (name, tuple(sorted(flags.items())))
        if key in self._built:
            return self._built[key]
        self._built[key if flags else name] = None  # recursion guard: a builder calling itself adds nothing
        returned: Dependence | None = None
        inside = Dependence.INDEPENDENT
        # (on a branch this call's flags never take: not built, nor held by the list the builder fills)
        off = {built for built, _returned, tests in self._builders[name]
               if any(flags.get(param, wanted) != wanted for param, wanted in tests)}
        outer_off, self.unbuilt_calls = self.unbuilt_calls, self.unbuilt_calls | off
        try:
            for built, is_return, _tests in self._builders[name]:
                dependence = self.layer_dependence(built) if built not in off else None
                if dependence is None:
                    continue
                if is_return:
                    returned = dependence if returned is None else max(returned, dependence)
                else:
                    inside = max(inside, dependence)
        finally:
            self.unbuilt_calls = outer_off
        if returned is Dependence.UNKNOWN and inside is Dependence.DEPENDENT:
            returned = Dependence.DEPENDENT  # `layers.append(nn.BatchNorm2d(c))` ... `nn.Sequential(*layers)`
        self._built[key if flags else name] = returned
        return returned

    def _flags_passed(self, name: str, call: cst.Call) -> dict[str, bool]:
        """The truth of each flag the builder's layers are built under (`if batch_norm:`), as the call passes
        it or the default gives it, where that is a literal; the builder must be the file's only one so named."""
        tested = {param for _call, _returned, tests in self._builders[name] for param, _wanted in tests}
        function = self._builder_function(name) if tested else None
        if function is None:
            return {}
        params = function.node.params
        positional = [*params.posonly_params, *params.params]
        passed: dict[str, cst.BaseExpression | None] = {p.name.value: p.default for p in
                                                          (*positional, *params.kwonly_params)}
        for index, arg in enumerate(call.args):
            if arg.star:
                return {}  # (`make_layers(*settings)`: which is which is unknown)
            if arg.keyword is not None:
                passed[arg.keyword.value] = arg.value
            elif index < len(positional):
                passed[positional[index].name.value] = arg.value
        flags = {}
        for param in tested:
            value = literal_value(passed.get(param))
            if value is not NOT_LITERAL and param in passed:
                flags[param] = bool(value)
        return flags

    def _builder_function(self, name: str):
        found = [f for f in self._collector.functions if f.cls is None and f.name == name]
        return found[0] if len(found) == 1 else None


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
        # (`if batch_norm: layers += [conv, nn.BatchNorm2d(v)]`: the outcomes of its parameters' tests it needs)
        function = site.site.function
        calls[name].append((site.node, returned, flag_outcomes(site.site.guards, function.param_set.__contains__)))
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
        cache = set()
        for node in iter_nodes(function.node.body):
            if type(node) is not cst.Assign:
                continue
            for target in node.targets:
                pairs = [(target.target, node.value)]
                if type(target.target) is cst.Tuple and type(node.value) is cst.Tuple \
                        and len(target.target.elements) == len(node.value.elements):
                    pairs = [(t.value, v.value) for t, v in zip(target.target.elements, node.value.elements)]
                cache.update(name.value for name, value in pairs  # (`layers, channels = [], 3` too)
                             if type(name) is cst.Name and type(value) in (cst.List, cst.ListComp))
        function.__dict__["_list_names"] = cache
    return cache
