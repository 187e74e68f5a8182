"""Other names of an object's models (mixed into ObjectModes).

An attribute that only ever wraps another (`self.mnetwork = DataParallel(self.network)`), or a
property handing one back (modelint.facts.accessors), is another name of it: `self.network.eval()`
puts `self.mnetwork`'s forward in eval mode. So is the attribute of an object the class holds that
keeps what it was handed (`self.recorder = Recorder(self.net)`: `self.recorder.net` is `self.net`).
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.modules import returned_parameter
from modelint.facts.names import dotted
from modelint.facts.provenance import argument_for, returned_argument


class ObjectAliases:
    """Mixed into ObjectModes: `self.flow` and `constructor_stores` come from there."""

    @cached_property
    def attribute_aliases(self) -> dict:
        """class -> {`self.mnetwork`: `self.network`}: an attribute that every assignment in the class sets
        to another attribute of the object, or to a DataParallel-like wrapper of it (`self.mnetwork =
        DataParallel(self.network) if multi_gpu else self.network`). Its forward runs that module, in the
        mode `self.network.eval()` sets."""
        targets: dict = {}
        for assign in self.flow.collector.attribute_assigns:
            cls = assign.site.cls
            key = dotted(assign.target)
            if cls is None or key is None or key.count(".") != 1 or not key.startswith("self."):
                continue
            targets.setdefault((cls, key), set()).add(self._wrapped_attribute(assign.value, assign.site.function))
        out: dict = {}
        for (cls, key), seen in targets.items():
            if len(seen) == 1 and None not in seen and key not in seen:
                out.setdefault(cls, {})[key] = seen.pop()
        for cls, key, held in self._kept_by_held_objects():
            out.setdefault(cls, {})[key] = held
        for cls, aliases in self.flow.property_aliases.items():
            out.setdefault(cls, {}).update(aliases)  # (`self.model` read through a property)
        return out

    def aliases_seen_by(self, cls) -> dict:
        """The attribute aliases (ObjectModes.attribute_aliases) of a class and of its bases in this file: a
        subclass's method reads `self.model` through its base's property too (unless it sets that itself)."""
        cache = self.__dict__.setdefault("_aliases_by_class", {})
        if cls not in cache:
            out: dict = {}
            for name in reversed(self.flow.class_and_bases(cls.name) if cls is not None else ()):
                info = self.flow.modules.classes.get(name)
                for key, target in self.attribute_aliases.get(info, {}).items():
                    if info is cls or not self.flow.collector.assigns_to(cls, key):
                        out[key] = target
            cache[cls] = out
        return cache[cls]

    def _kept_by_held_objects(self):
        """(class, `self.recorder.net`, `self.net`) for `self.recorder = Recorder(self.net, layer)`, the only
        assignment of `self.recorder` in the class, where `Recorder`, a plain class of this file, keeps that
        constructor parameter as `self.net`: the held object's attribute is the object's own model."""
        from modelint.facts.summary_effects import bind_arguments

        assigned: dict = {}
        for assign in self.flow.collector.attribute_assigns:
            key = dotted(assign.target)
            if assign.site.cls is not None and key is not None and key.count(".") == 1 and key.startswith("self."):
                assigned.setdefault((assign.site.cls, key), []).append(assign.value)
        for (cls, key), values in assigned.items():
            value = values[0]
            if len(values) != 1 or type(value) is not cst.Call or type(value.func) is not cst.Name:
                continue
            stores = self.constructor_stores.get(value.func.value)
            if stores is None:
                continue
            init, kept = stores
            bound = bind_arguments(init.params, True, value)
            for param, attribute in kept.items():
                held = dotted(bound[param]) if param in bound else None
                if held is not None and held.startswith("self.") and held.count(".") == 1:
                    yield cls, f"{key}{attribute[4:]}", held

    def _wrapped_attribute(self, value, method) -> str | None:
        """`self.net`, `DataParallel(self.net)`, or a conditional choosing between them: `self.net`. Also the
        constructor's parameter that another attribute keeps (`self.model = model`, `self.dmodel =
        distrib.wrap(model)` with a helper returning its argument, wrapped or not): `self.model`."""
        if type(value) is cst.IfExp:
            body, orelse = self._wrapped_attribute(value.body, method), self._wrapped_attribute(value.orelse, method)
            return body if body == orelse else None
        if type(value) is cst.Call and value.args and self.flow.imports.qualify(value.func) in api.MODULE_WRAPPERS:
            value = value.args[0].value
        elif type(value) is cst.Call and method is not None:
            value = self._argument_handed_back(value, method)
        key = dotted(value) if value is not None else None
        if key is not None and method is not None and key in method.param_set and key not in ("self", "cls"):
            kept = {dotted(a.target) for a in self.flow.collector.attribute_assigns
                    if a.site.function is method and type(a.value) is cst.Name and a.value.value == key}
            key = kept.pop() if len(kept) == 1 else None
        return key if key is not None and key.count(".") == 1 and key.startswith("self.") else None

    def _argument_handed_back(self, call: cst.Call, method) -> cst.BaseExpression | None:
        """`wrap(model)`, a helper (here or in another file) whose summary returns the parameter it is
        handed, moved or wrapped: what this call hands it."""
        local = self.flow.local_functions.get(self.flow.local_callee(call, method) or "")
        if local is not None and local.cls is None:
            param = returned_parameter(self.flow.imports, local)
            return argument_for(call, local.params, param) if param is not None else None
        summary, _receiver = self.flow.resolve(call, method)
        return returned_argument(call, summary) if summary is not None else None
