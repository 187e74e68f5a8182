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

from modelint.facts import torch_api as api
from modelint.facts.name_values import scope_bindings
from modelint.facts.names import dotted
from modelint.facts.torch_layers import Dependence

_MUTATORS = frozenset({"append", "extend", "insert"})
_RECORD_FACTORIES = frozenset({"collections.namedtuple", "typing.NamedTuple", "dataclasses.make_dataclass"})
_DISPLAYS = (cst.List, cst.Tuple)


class LocalLayers:
    """Mixed into ModuleTable: `_collector`, `layer_dependence()` come from there, `unbuilt_calls` from Builders."""

    def local_layers(self, name: str, call: cst.Call) -> Dependence:
        """What the local `name`, used in `call`'s arguments, holds: the layers its function binds to it."""
        return self._held(name, self._function_of_call.get(call))

    def part_built_for(self, name: str, call: cst.Call) -> Dependence | None:
        """A local name bound to layers built for this call alone (`ff = FeedForward(d, h, dropout)`, handed
        only to `Transformer(ff, ...)`): what it holds. None for a name used anywhere else: a model of its own
        that the constructor wraps (`TimeShiftTTA(net)`, with `net.eval()` and `net(x)` elsewhere)."""
        from modelint.facts.walk import iter_nodes

        function = self._function_of_call.get(call)
        bindings = self._bindings_of(function).get(name) or []
        if not bindings or any(b.kind != "assign" for b in bindings):
            return None
        counted = self.__dict__.setdefault("_name_uses", {})  # (asked again in every solving round)
        if (function, name) not in counted:
            scope = function.node if function is not None else self._collector.module_node
            counted[function, name] = sum(1 for node in iter_nodes(scope)
                                          if type(node) is cst.Name and node.value == name)
        if counted[function, name] != len(bindings) + 1:
            return None
        held = self._held(name, function)
        return held if held is not Dependence.UNKNOWN else None

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
        if not bindings and function is not None and name not in function.param_set \
                and self._bindings_of(None).get(name):
            return self._held(name, None)  # a module-level layer (`swish = Swish()`) put in a class's container
        if not bindings:
            return Dependence.UNKNOWN
        values = list(self._mutations.get((function, name), ()))  # `layers.append(nn.ReLU())`
        for binding in bindings:
            if binding.kind == "assign":
                values.append(binding.value)
            elif binding.kind == "other" and type(binding.node) is cst.AugAssign \
                    and type(binding.node.operator) is cst.AddAssign:
                values.append(binding.node.value)  # `layers += [nn.ReLU()]`
            elif self._own_element(binding, name, function):
                continue  # (a layer the module already holds: whatever built it counts where it was built)
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
        if kind is cst.Call and value in self.unbuilt_calls:
            return Dependence.INDEPENDENT  # (`if batch_norm:` in a builder called without it)
        if kind is cst.Call and type(value.func) is cst.Attribute and value.func.attr.value in api.MOVES \
                and type(value.func.value) is cst.Name:
            return self._layers_in(value.func.value, function)  # `emb.to(device)`: the layer `emb` holds
        if kind is cst.Call:
            built = self.layer_dependence(value)
            if built is None and type(value.func) is cst.Name:
                built = self._partial_layer(value, function)
            if built is None and type(value.func) is cst.Name:
                built = self._class_handed_in(value.func.value, function)  # `act()`, `act = activation`
            return built
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
        if kind is cst.IfExp:  # `activation = nn.GLU(1) if glu else nn.ReLU()`: either one
            body, orelse = self._layers_in(value.body, function), self._layers_in(value.orelse, function)
            return None if body is None or orelse is None else max(body, orelse)
        return None

    @staticmethod
    def _own_element(binding, name: str, function) -> bool:
        """`for emb in self.emb_l:` (or `for k, emb in enumerate(self.emb_l):`) in a method: `emb` is one of the
        module's own layers, as mode-dependent as what its class built there."""
        loop = binding.node
        if function is None or function.cls is None or type(loop) is not cst.For:
            return False
        iterable, target = loop.iter, loop.target
        if type(iterable) is cst.Call and (dotted(iterable.func) or "") == "enumerate" and len(iterable.args) == 1 \
                and type(target) is cst.Tuple and len(target.elements) == 2 \
                and type(target.elements[1].value) is cst.Name and target.elements[1].value.value == name:
            iterable = iterable.args[0].value
        elif not (type(target) is cst.Name and target.value == name):
            return False
        held = dotted(iterable) or ""
        return held.startswith("self.") and held.count(".") == 1

    def _partial_layer(self, call: cst.Call, function) -> Dependence | None:
        """`norm_layer(c)` after `norm_layer = functools.partial(nn.InstanceNorm2d, affine=False)`: the layer
        the partial builds with the arguments of both."""
        bindings = self._bindings_of(function).get(call.func.value) or []
        if len(bindings) != 1 or bindings[0].kind != "assign":
            return None
        made = bindings[0].value
        if type(made) is not cst.Call or not made.args or made.args[0].keyword is not None \
                or self.imports.qualify(made.func) != "functools.partial":
            return None
        args = (*made.args[1:], *call.args)
        positional = [arg for arg in args if arg.keyword is None and not arg.star]
        rest = [arg for arg in args if arg.keyword is not None or arg.star]
        return self.layer_dependence(call.with_changes(func=made.args[0].value, args=(*positional, *rest)))

    def _class_handed_in(self, name: str, function, depth: int = 0) -> Dependence | None:
        """`act()` where `act` is a parameter of this builder (or a local picking one: `act = activation if
        j < n else output_activation`) that its default and every call of it here fill with a layer class
        (`mlp(sizes, nn.ReLU, nn.Identity)`): the most mode-dependent of those classes."""
        if function is None or function.cls is not None or function.outer is not None or depth > 2:
            return None
        if name not in function.param_set:
            bindings = self._bindings_of(function).get(name) or []
            if not bindings or any(b.kind != "assign" for b in bindings):
                return None
            found = Dependence.INDEPENDENT
            for binding in bindings:
                value = binding.value
                picked = (value.body, value.orelse) if type(value) is cst.IfExp else (value,)
                for option in picked:
                    held = self._class_handed_in(option.value, function, depth + 1) \
                        if type(option) is cst.Name else None
                    if held is None:
                        return None
                    found = max(found, held)
            return found
        from modelint.facts.summary_effects import bind_arguments

        param = function.param(name)
        passed = [param.default] if param is not None and param.default is not None else []
        for site in self._collector.calls:
            if type(site.node.func) is cst.Name and site.node.func.value == function.name:
                if any(arg.star for arg in site.node.args):
                    return None
                given = bind_arguments(function.params, False, site.node).get(name)
                if given is not None or not passed:  # (left out: the default, already counted)
                    passed.append(given)
        found = None
        for value in passed:
            held = self._class_dependence(value)
            if held is None:
                return None
            found = held if found is None else max(found, held)
        return found

    def _class_dependence(self, value) -> Dependence | None:
        """`nn.ReLU`, `torch.nn.Dropout`, a module class of this file: how its instances depend on the mode."""
        from modelint.facts.torch_layers import layer_dependence_by_name

        if value is None:
            return None
        local = self.classes.get(value.value) if type(value) is cst.Name else None
        if local is not None:
            return self._dependence.get(local.name) if self._is_module.get(local.name) else None
        qualified = self.imports.qualify(value) or ""
        layer = qualified.rsplit(".", 1)[-1]
        if qualified.startswith("torch.nn.") and layer[:1].isupper() and qualified.count(".") == 2:
            return layer_dependence_by_name(layer, None)
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

    def element_run_not_built(self, name: str, call: cst.Call) -> bool:
        """`E = emb_l[k]`, then `E(idx, offsets)`, in a method (no constructor) handed the tables or holding them
        on `self`: a module built elsewhere and run here, whatever the case of its name."""
        function = self._function_of_call.get(call)
        if function is None or function.name == "__init__":
            return False
        bindings = self._bindings_of(function).get(name)
        return bool(bindings) and all(
            b.kind == "assign" and type(b.value) is cst.Subscript and (dotted(b.value.value) or "").split(".")[0]
            in (function.param_set | {"self"}) for b in bindings)

    def _bound_to_a_function(self, name: str) -> bool:
        """Is the module-level `name` only ever bound to a lambda (`Variable = lambda *a: ...cuda()`), a
        named tuple (`ModelPrediction = namedtuple(...)`) or a tensor type of torch's (`LongTensor =
        torch.cuda.LongTensor if USE_CUDA else torch.LongTensor`): a callable that builds no module?"""
        bindings = self._bindings_of(None).get(name)
        return bool(bindings) and all(b.kind == "assign" and (type(b.value) is cst.Lambda or (
            type(b.value) is cst.Call and self.imports.qualify(b.value.func) in _RECORD_FACTORIES)
            or self._tensor_types(b.value) or self._torch_module_instance(b.value)) for b in bindings)

    def _torch_module_instance(self, value: cst.BaseExpression) -> bool:
        """`CELoss = nn.CrossEntropyLoss()`: an instance of one of torch's layers, whose call runs it (a loss
        computed, not a module built)."""
        return type(value) is cst.Call and (self.imports.qualify(value.func) or "").startswith("torch.nn.")

    def _tensor_types(self, value: cst.BaseExpression) -> bool:
        """`torch.LongTensor`, or either branch of a conditional between such types: no `torch.nn` class."""
        if type(value) is cst.IfExp:
            return self._tensor_types(value.body) and self._tensor_types(value.orelse)
        qualified = self.imports.qualify(value) if type(value) in (cst.Name, cst.Attribute) else None
        return qualified is not None and qualified.startswith("torch.") and qualified.endswith("Tensor") \
            and not qualified.startswith("torch.nn.")

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
