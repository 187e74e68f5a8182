"""The layers a construction hands the class it builds: `VGG(make_layers(cfg, batch_norm=True))` for a
class whose `__init__(self, features)` keeps `self.features = features`, or keeps them in a torch container
(`self.vgg = nn.ModuleList(base)`), or keeps copies of them (`self.layers = clones(layer, N)`). Such a class is
as mode-dependent as what each of its constructions hands it.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import handed_at
from modelint.facts.scopes import ClassInfo
from modelint.facts.torch_layers import Dependence

_COPIES = frozenset({"copy.deepcopy", "copy.copy"})
_LAYER_CONTAINERS = frozenset({"torch.nn.ModuleList", "torch.nn.Sequential"})


class HandedLayers:
    """Mixed into ModuleTable: `_collector`, `self_assigns`, `imports`, `layer_dependence()`, `part_built_for()`,
    `_builder_name()`, `_builder_function()`, `_builders`, `_bindings_of()`, `_function_of_call` come from there."""

    def _handed_layers(self, project: ClassInfo, call: cst.Call, known: dict | None) -> Dependence | None:
        """`VGG(make_layers(cfg, batch_norm=True))` for `def __init__(self, features): self.features = features`:
        the layers the call hands to a constructor parameter the class keeps as an attribute (None: none)."""
        params, kept = self._kept_parameters(project)
        if not kept:
            return None
        found = None
        for param in kept:
            arg = handed_at(call, param, params.index(param) if param in params else -1)
            if type(arg) is cst.Call and arg.args and self._copies(arg, call):
                arg = arg.args[0].value  # `EncoderLayer(d_model, c(attn), c(ff))` with `c = copy.deepcopy`
            built = self.layer_dependence(arg, known) if type(arg) is cst.Call else None
            if type(arg) is cst.Name:  # `ff = FeedForward(d, h, dropout)`, then `Transformer(ff, ...)`
                built = self.part_built_for(arg.value, call)
            if built is None and param in self._parameter_containers(project).values():
                built = Dependence.UNKNOWN  # (`SSD(phase, base_)`: layers built where we do not look)
            if built is not None:
                found = built if found is None else max(found, built)
        return found

    def _kept_parameters(self, project: ClassInfo) -> tuple[list, list]:
        """(the constructor's parameters after `self`, those it keeps as attributes), worked out once per class."""
        cache = self.__dict__.setdefault("_kept_parameters_cache", {})
        if project.name not in cache:
            init = self._collector.constructor(project)
            cache[project.name] = (init.params[1:], sorted({
                kept for assign in self.self_assigns if assign.site.function is init
                and (kept := self._kept_parameter(assign.value, init)) is not None})) if init is not None else ([], [])
        return cache[project.name]

    def handed_only_weightless(self, project: ClassInfo, call: cst.Call) -> bool:
        """`PITLossWrapper(PairwiseNegSNR())`: a class without weights of its own but the modules its constructor
        keeps, each handed a construction without weights at this call (a loss wrapper around a loss)."""
        params, kept = self._kept_parameters(project)
        args = [handed_at(call, param, params.index(param) if param in params else -1) for param in kept]
        return bool(kept) and all(type(arg) is cst.Call and (built := self.construction(arg)) is not None
                                  and built.parameterless for arg in args) \
            and self.kinds.holds_no_weights(project, frozenset(kept))

    def _copies_its_argument(self, func: cst.BaseExpression) -> bool:
        """A builder of this file that deep-copies its first parameter (`def clones(module, n): return
        nn.ModuleList([copy.deepcopy(module) for _ in range(n)])`)."""
        name = self._builder_name(func)
        function = self._builder_function(name) if name is not None else None
        params = function.node.params.params if function is not None else ()
        return bool(params) and any(
            self.imports.qualify(made.func) in _COPIES and made.args and type(made.args[0].value) is cst.Name
            and made.args[0].value.value == params[0].name.value for made, _returned, _tests in self._builders[name])

    def _copies(self, made: cst.Call, call: cst.Call) -> bool:
        """Is `made` a `copy.deepcopy(...)`, or a call of a name `call`'s function binds only to it (`c = copy.deepcopy`)?"""
        if self.imports.qualify(made.func) in _COPIES:
            return True
        if type(made.func) is not cst.Name:
            return False
        bindings = self._bindings_of(self._function_of_call.get(call)).get(made.func.value) or []
        return bool(bindings) and all(b.kind == "assign" and b.value is not None
                                      and self.imports.qualify(b.value) in _COPIES for b in bindings)

    def _parameter_containers(self, project: ClassInfo) -> dict:
        """The torch containers the class keeps a constructor parameter in (`self.vgg = nn.ModuleList(base)`),
        each with that parameter: such a container is as mode-dependent as what each construction hands it,
        not the class itself (once per class)."""
        cache = self.__dict__.setdefault("_containers_by_class", {})
        if project.name not in cache:
            init = self._collector.constructor(project)
            cache[project.name] = {} if init is None else {
                assign.value: kept for assign in self.self_assigns if assign.site.function is init
                and type(assign.value) is cst.Call and (kept := self._kept_parameter(assign.value, init)) is not None}
        return cache[project.name]

    def _kept_parameter(self, value: cst.BaseExpression | None, init) -> str | None:
        """The constructor parameter an attribute keeps: `self.features = features`, or its layers in a torch
        container (`self.vgg = nn.ModuleList(base)`, `nn.Sequential(*layers)`)."""
        if type(value) is cst.Call and len(value.args) == 1 and value.args[0].star != "**" \
                and self.imports.qualify(value.func) in _LAYER_CONTAINERS:
            value = value.args[0].value
        elif type(value) is cst.Call and value.args and (self._copies_its_argument(value.func)
                                                         or self.imports.qualify(value.func) in _COPIES):
            value = value.args[0].value  # `self.layers = clones(layer, N)`: copies of the layer it is handed
        return value.value if type(value) is cst.Name and value.value in init.param_set else None
