"""Layers a model's definition keeps in local names before it registers them.

The most common way to write a model is to collect its layers in a list and then
register the list: `layers = [nn.Conv1d(...)]`, `layers += [nn.LeakyReLU(0.2)]`,
`layers.append(Block(c))` in a loop, then `nn.Sequential(*layers)`; or to bind one
layer to a name and put it in a container (`act = nn.Tanh()`, `nn.Sequential(lin, act)`).
What such a container holds is what its function put in that name: the most
mode-dependent of those layers. A name bound any other way (a parameter, a call of
something that is no layer, a loop variable) holds what we cannot see: unknown.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.name_values import scope_bindings
from modelint.facts.torch_layers import Dependence

_MUTATORS = frozenset({"append", "extend", "insert"})
_RECORD_FACTORIES = frozenset({"collections.namedtuple", "typing.NamedTuple", "dataclasses.make_dataclass"})
_DISPLAYS = (cst.List, cst.Tuple)


class LocalLayers:
    """Mixed into ModuleTable: `_collector`, `layer_dependence()` come from there."""

    def local_layers(self, name: str, call: cst.Call) -> Dependence:
        """What the local `name`, used in `call`'s arguments, holds: the layers its function binds to it."""
        return self._held(name, self._function_of_call.get(call))

    def _held(self, name: str, function) -> Dependence:
        key = (function, name)
        following = self.__dict__.setdefault("_following_names", set())
        if key in following:
            return Dependence.UNKNOWN  # (`layers = [nn.Sequential(*layers)]`: not followed again)
        following.add(key)
        try:
            return self._bound_layers(name, function)
        finally:
            following.discard(key)

    def _bound_layers(self, name: str, function) -> Dependence:
        bindings = self._bindings_of(function).get(name)
        if not bindings:
            return Dependence.UNKNOWN
        values = list(self._mutations.get((function, name), ()))  # `layers.append(nn.ReLU())`
        for binding in bindings:
            if binding.kind == "assign":
                values.append(binding.value)
            elif binding.kind == "other" and type(binding.node) is cst.AugAssign \
                    and type(binding.node.operator) is cst.AddAssign:
                values.append(binding.node.value)  # `layers += [nn.ReLU()]`
            else:
                return Dependence.UNKNOWN
        found = Dependence.INDEPENDENT
        for value in values:
            held = self._layers_in(value, function)
            if held is None:
                return Dependence.UNKNOWN
            found = max(found, held)
        return found

    def _layers_in(self, value: cst.BaseExpression | None, function) -> Dependence | None:
        """The layers an expression builds: a constructor, a list or tuple of them, a comprehension of them,
        a name holding them."""
        kind = type(value)
        if kind is cst.Call:
            return self.layer_dependence(value)
        if kind is cst.Name:
            held = self._held(value.value, function)
            return None if held is Dependence.UNKNOWN else held
        if kind in _DISPLAYS:
            found = Dependence.INDEPENDENT
            for element in value.elements:
                held = self._layers_in(element.value, function) if type(element) is cst.Element else None
                if held is None:
                    return None
                found = max(found, held)
            return found
        if kind in (cst.ListComp, cst.GeneratorExp):
            return self._layers_in(value.elt, function)
        return None

    @property
    def _mutations(self) -> dict:
        """(function, name) -> what `name.append(x)` / `.insert(i, x)` / `.extend(xs)` add to it there."""
        found = self.__dict__.get("_list_mutations")
        if found is None:
            found = self.__dict__["_list_mutations"] = {}
            for site in self._collector.calls:
                func = site.node.func
                if type(func) is cst.Attribute and func.attr.value in _MUTATORS and type(func.value) is cst.Name:
                    args = site.node.args
                    added = None if not args else args[-1].value if func.attr.value == "extend" \
                        else cst.List([cst.Element(args[-1].value)])
                    found.setdefault((site.site.function, func.value.value), []).append(added)
        return found

    def _bound_to_a_function(self, name: str) -> bool:
        """Is the module-level `name` only ever bound to a lambda (`Variable = lambda *a: ...cuda()`) or a
        named tuple (`ModelPrediction = namedtuple(...)`): a callable that builds no module?"""
        bindings = self._bindings_of(None).get(name)
        return bool(bindings) and all(b.kind == "assign" and (type(b.value) is cst.Lambda or (
            type(b.value) is cst.Call and self.imports.qualify(b.value.func) in _RECORD_FACTORIES)) for b in bindings)

    def _bindings_of(self, function) -> dict:
        cache = self.__dict__.setdefault("_bindings_by_function", {})
        found = cache.get(function)
        if found is None:
            node = function.node if function is not None else self._collector.module_node
            found = cache[function] = scope_bindings(node)
        return found

    @property
    def _function_of_call(self) -> dict:
        found = self.__dict__.get("_call_functions")
        if found is None:
            found = self.__dict__["_call_functions"] = {site.node: site.site.function for site in self._collector.calls}
        return found
