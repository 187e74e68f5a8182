"""Module classes that build no layer of their own and run one they load in their constructor.

`DetectMultiBackend(weights)` (YOLOv5's inference wrapper) stores what `attempt_load()` returns (a
checkpoint already in eval mode, or a TorchScript or ONNX program) and calls it in `forward`.
`nn.Module.__init__` sets `training` on the wrapper alone, so a fresh wrapper runs its model in the
mode the loader left it in: what the construction is in, this file cannot say. A wrapper that
builds layers (`self.head = nn.Linear(...)`) starts in training mode like any other module, unless its
constructor switches its own mode (`if pretrained: ...; self.eval()`).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.lattice import mode_of_call
from modelint.facts.names import dotted


def classes_running_loaded_modules(table, collector) -> frozenset[str]:
    """Names of this file's module classes whose mode once built is not that of a fresh module: their
    constructor stores, under an attribute the class calls as a model, the result of a call that builds no
    module (a loader), and they build no layer anywhere; or their constructor switches the object's own mode
    (`self.eval()` once pretrained weights are loaded, maybe only for some arguments)."""
    found = {site.site.cls.name for site in collector.calls
             if site.site.cls is not None and site.site.function is not None and site.site.function.name == "__init__"
             and type(site.node.func) is cst.Attribute and type(site.node.func.value) is cst.Name
             and site.node.func.value.value == "self" and site.node.func.attr.value in ("eval", "train")
             and mode_of_call(site.node) != "train"
             and table.is_module_class(site.site.cls)}
    # `model = attempt_load(w)` in each class's constructor: class -> local name -> the calls bound to it.
    bound_in_init: dict = {}
    for key, value, site in collector.call_assigns:
        if site.cls is not None and site.function is not None and site.function.name == "__init__":
            bound_in_init.setdefault(site.cls, {}).setdefault(key, []).append(value)
    for name, info in table.classes.items():
        if not table.is_module_class(info) or _builds_layers(table, info):
            continue
        called = _attributes_called(info)
        if not called:
            continue
        locals_from_calls = bound_in_init.get(info, {})
        for assign in table.self_assigns:
            site = assign.site
            if site.cls is not info or site.function is None or site.function.name != "__init__" \
                    or assign.target.attr.value not in called:
                continue
            value = assign.value
            values = locals_from_calls.get(value.value, []) if type(value) is cst.Name else [value]
            if any(type(v) is cst.Call and table.module_expression(v)[0] is None for v in values):
                found.add(name)
                break
    return frozenset(found)


def _attributes_called(info) -> set[str]:
    """`self.model(x)` / `self.model.forward(x)` in the class: the attributes it runs as models."""
    out = set()
    for call in info.calls:
        func = call.func
        if type(func) is cst.Attribute and func.attr.value == "forward":
            func = func.value
        key = dotted(func) or ""
        head, _, attr = key.partition(".")
        if head == "self" and attr and "." not in attr:
            out.add(attr)
    return out


def _builds_layers(table, info) -> bool:
    """Does the class build a module anywhere: a certain construction (not `ort.InferenceSession(...)`, a
    capitalised class of some library) or a layer-building function of this file?"""
    for call in info.calls:
        built = table.construction(call)
        if built is not None and built.certain:
            return True
        if built is None and table.layer_dependence(call) is not None:
            return True
    return False
