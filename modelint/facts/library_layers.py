"""Modules that libraries build: torch.nn's layers and containers, PyTorch Geometric's layers, data
transforms written as modules, and model zoos' constructors.

A container (`nn.Sequential(...)`, `nn.ModuleList([...])`) is as mode-dependent as the most dependent
module built in its arguments, and holds no weights when none of them does (a pipeline of transforms).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.names import argument, dotted, handed_at, literal_value
from modelint.facts.torch_layers import Construction, Dependence, layer_dependence_by_name
from modelint.facts.walk import calls_in


class LibraryLayers:
    """Mixed into ModuleTable (which provides `construction`, `imports`, `local_layers`, `layer_dependence`
    and the class's own attributes)."""

    def library_layer(self, call: cst.Call, qualified: str, _nested: dict | None) \
            -> tuple[bool, Construction | None]:
        """(whether a library's table decides, what `call` builds then) for a call of `qualified`."""
        if qualified.startswith("torch.nn.") and not qualified.startswith("torch.nn.functional"):
            layer = qualified.rsplit(".", 1)[-1]
            if not layer[:1].isupper() \
                    or qualified.startswith(("torch.nn.init", "torch.nn.utils", "torch.nn.Parameter")):
                return True, None
            if layer in api.CONTAINERS or layer in api.STACKS:
                nested = {} if _nested is None else _nested
                # (`nn.Sequential(RandomHorizontalFlip(), Normalize(...))`: a pipeline of transforms, no weights;
                # `nn.ModuleList([Light(0.5), Light(0.2)])`: modules without weights, not `copy.deepcopy(layer)`)
                elements = _written_elements(layer, call)
                parameterless = bool(elements) and all(
                    type(e) is cst.Call and (built := self.construction(e, nested)) is not None and built.parameterless
                    for e in elements)
                return True, Construction(call, self._nested_dependence(call, nested), parameterless=parameterless)
            return True, Construction(call, layer_dependence_by_name(layer, call),
                                      parameterless=bool(api.PARAMETERLESS_LAYER.fullmatch(layer))
                                      or _norm_without_affine(layer, call))
        if api.builds_library_model(qualified):
            return True, Construction(call, Dependence.DEPENDENT)
        if qualified in api.LIBRARY_MODELS_BUILT_IN_EVAL:  # (unless the call says otherwise: `eval_mode=False`)
            flag, position = api.LIBRARY_MODELS_BUILT_IN_EVAL[qualified]
            passed = handed_at(call, flag, position) if not any(arg.star for arg in call.args) else None
            return True, Construction(call, Dependence.DEPENDENT, starts_in_eval=passed is None
                                      or literal_value(passed) is True)
        if qualified.startswith(api.MODE_FREE_LIBRARY_LAYERS):
            return True, Construction(call, Dependence.INDEPENDENT)
        if qualified.startswith("torch_geometric.nn."):
            built = self._geometric_layer(call, qualified.rsplit(".", 1)[-1])
            if built is not None:
                return True, built
        if qualified.startswith("dgl.nn."):
            built = self._dgl_layer(call, qualified.rsplit(".", 1)[-1])
            if built is not None:
                return True, built
        if api.is_weightless_library_layer(qualified):
            return True, Construction(call, Dependence.INDEPENDENT, parameterless=True)
        return False, None

    def _geometric_layer(self, call: cst.Call, layer: str) -> Construction | None:
        """A PyTorch Geometric layer (see torch_api.GEOMETRIC_*); None for one not in those tables."""
        if layer in api.GEOMETRIC_MODE_FREE:
            return Construction(call, Dependence.INDEPENDENT)
        if layer in api.GEOMETRIC_MODE_DEPENDENT:
            return Construction(call, Dependence.DEPENDENT)
        if layer in api.GEOMETRIC_DROPOUT_RATE:
            rate = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "dropout"), None)
            free = rate is None or literal_value(rate) in (0, 0.0)
            return Construction(call, Dependence.INDEPENDENT if free else Dependence.DEPENDENT)
        if layer in api.GEOMETRIC_WRAPPING:
            return Construction(call, self._nested_dependence(call, {}))
        return None

    def _dgl_layer(self, call: cst.Call, layer: str) -> Construction | None:
        """A DGL layer (see torch_api.DGL_*); None for one not in those tables."""
        if layer in api.DGL_MODE_FREE:
            return Construction(call, Dependence.INDEPENDENT)
        if layer in api.DGL_WRAPPING:
            return Construction(call, self._nested_dependence(call, {}))
        rates = api.DGL_DROPOUT_RATES.get(layer)
        if rates is None or any(arg.star for arg in call.args):
            return None
        dropped = any((arg := argument(call, keyword, position)) is not None
                      and literal_value(arg.value) not in (0, 0.0) for keyword, position in rates)
        norm = argument(call, "norm", None)  # (`SAGEConv(..., norm=nn.BatchNorm1d(d))`: a norm it applies)
        dependence = Dependence.DEPENDENT if dropped else Dependence.INDEPENDENT
        if norm is not None and literal_value(norm.value) is not None:
            dependence = max(dependence, self._nested_dependence(call.with_changes(args=[norm]), {}))
        return Construction(call, dependence)

    def _library_namespace(self, func: cst.Subscript) -> str | None:
        """`models.__dict__[name]`, `vars(models)[name]` of a model library's namespace (torchvision.models):
        the library's name."""
        owner = func.value
        if type(owner) is cst.Attribute and owner.attr.value == "__dict__":
            owner = owner.value
        elif type(owner) is cst.Call and dotted(owner.func) == "vars" and len(owner.args) == 1:
            owner = owner.args[0].value
        else:
            return None
        qualified = self.imports.qualify(owner) or ""
        return qualified if api.builds_library_model(qualified + ".") else None

    def _nested_dependence(self, call: cst.Call, known: dict) -> Dependence:
        """A container/stack is as dependent as the most dependent module built in its arguments.

        `known` keeps the containers met inside it: `nn.Sequential(nn.Sequential(...))` nested n deep
        walks each one's arguments once (n**2 steps), not once per enclosing container (2**n).
        """
        found = known.get(call)
        if found is not None:
            return found
        found = Dependence.INDEPENDENT
        for arg in call.args:
            if type(arg.value) is cst.Name and arg.star != "**":
                found = max(found, self.local_layers(arg.value.value, call))  # `nn.Sequential(*layers)`
                continue
            if arg.star and not _literal_list(arg.value):
                # `*block(c_in, c_out)`, a function of this file returning the layers it builds; else built where
                # we do not look (`*make_layers(cfg)` of another file)
                name = self._builder_name(arg.value.func) if type(arg.value) is cst.Call else None
                built = self._builder_dependence(name, arg.value) if name is not None else None
                if built is None:
                    found = Dependence.UNKNOWN
                    break
                found = max(found, built)
                continue
            for inner in calls_in(arg.value):
                built = self.layer_dependence(inner, known)
                if built is not None:
                    found = max(found, built)
            if type(arg.value) is cst.Attribute:
                found = max(found, self._own_layer(arg.value))
        known[call] = found
        return found

    def _own_layer(self, value: cst.BaseExpression) -> Dependence:
        """`self.blur_h` put in a container: what the class assigns to that attribute, when every
        assignment builds a layer; else a layer built elsewhere (unknown)."""
        if not (type(value) is cst.Attribute and type(value.value) is cst.Name and value.value.value == "self"):
            return Dependence.UNKNOWN
        name = value.attr.value
        assigned = self._self_attributes.get(name)
        if not assigned or name in self._following:
            return Dependence.UNKNOWN  # (`self.a = nn.Sequential(self.a, ...)`: not followed again)
        self._following.add(name)
        try:
            found = Dependence.INDEPENDENT
            for assigned_value in assigned:
                built = self.construction(assigned_value) if type(assigned_value) is cst.Call else None
                if built is None:
                    return Dependence.UNKNOWN
                found = max(found, built.dependence)
            return found
        finally:
            self._following.discard(name)


def _literal_list(expr: cst.BaseExpression) -> bool:
    """`[Block(c), ...]`, `[Block(c) for c in cs]`, `(Block(c) for c in cs)`, or a sum of such lists: every
    element written here."""
    if type(expr) is cst.BinaryOperation and type(expr.operator) is cst.Add:
        return _literal_list(expr.left) and _literal_list(expr.right)
    return type(expr) in (cst.List, cst.ListComp, cst.Tuple, cst.GeneratorExp)


def _norm_without_affine(layer: str, call: cst.Call) -> bool:
    """`nn.BatchNorm1d(2, affine=False)` (`elementwise_affine=False` for LayerNorm): running statistics only,
    no weight or bias, so nothing for autograd to record."""
    keyword = "elementwise_affine" if layer == "LayerNorm" else "affine"
    return "Norm" in layer and any(arg.keyword is not None and arg.keyword.value == keyword
                                   and literal_value(arg.value) is False for arg in call.args)


def _written_elements(layer: str, call: cst.Call) -> list | None:
    """The modules a container's construction writes out: `nn.Sequential(a, b)`'s arguments, the elements of
    `nn.ModuleList([a, b])` (or of a comprehension, its element) and the values of `nn.ModuleDict({...})`;
    None for anything else (`nn.Sequential(*layers)`, `nn.ModuleList(blocks)`)."""
    if not call.args or any(arg.star for arg in call.args):
        return None
    if layer == "Sequential":
        return [arg.value for arg in call.args] if all(arg.keyword is None for arg in call.args) else None
    if len(call.args) != 1:
        return None
    value = call.args[0].value
    if type(value) in (cst.List, cst.Tuple) and layer == "ModuleList":
        return [e.value for e in value.elements if type(e) is cst.Element] \
            if all(type(e) is cst.Element for e in value.elements) else None
    if type(value) is cst.Dict and layer == "ModuleDict":
        return [e.value for e in value.elements] if all(type(e) is cst.DictElement for e in value.elements) else None
    if type(value) in (cst.ListComp, cst.GeneratorExp) and layer == "ModuleList":
        return [value.elt]
    if type(value) is cst.DictComp and layer == "ModuleDict":
        return [value.value]
    return None
