"""What the file's classes keep on `self.<name>`, read wherever such an attribute is called.

Every `self.encoder = Encoder()` of the file's classes makes `model.encoder(x)` a forward
of a submodule in its parent's mode; every `self.act = nn.ReLU()` makes `self.act(a)` no
model at all (a layer without weights or mode).
"""

from __future__ import annotations

import re

import libcst as cst

from modelint.facts.names import chain_runs, dotted
from modelint.facts.walk import iter_nodes
from modelint.facts.torch_layers import Dependence


class ModuleAttributes:
    """Mixed into ModuleTable: `_self_attributes`, `index`, `module_expression()` come from there."""

    def attribute_parameterless(self, name: str, cls=None) -> bool:
        """Is every `self.<name> = ...` of the file's classes a layer without weights or mode (`nn.ReLU()`)? Of
        the class `cls`, when it sets that name itself (another class may keep a ModuleList under it)."""
        if cls is not None:
            own = [a.value for a in self.self_assigns if a.site.cls is cls and a.target.attr.value == name]
            if own:
                built = [self.module_expression(v)[0] if type(v) is cst.Call else None for v in own]
                return all(b is not None and b.parameterless for b in built)
        return self._attribute_facts(name)[0]

    def built_in_eval(self, cls) -> bool:
        """A wrapper whose `__init__` (or a method of its own the constructor runs: `self._load_pretrained(path)`)
        keeps modules only after putting them in eval mode (`self.model = torch.hub.load(...).to(device).eval()`,
        or `self.model.eval()` after building it, a frozen feature extractor) and builds no other: built, it runs
        in eval mode, whatever its own flag says."""
        cache = self.__dict__.setdefault("_built_in_eval_by_class", {})
        if cls not in cache:
            cache[cls] = self._built_in_eval(cls)
        return cache[cls]

    def _built_in_eval(self, cls) -> bool:
        building = self._constructor_methods(cls)
        kept = [a for a in self.self_assigns if a.site.cls is cls and a.value is not None]
        if not kept or any(a.site.function is None or a.site.function.name not in building for a in kept
                           if type(a.value) is cst.Call):
            return False
        evaluated = {dotted(c.node.func.value) for c in self._collector.calls if c.site.cls is cls
                     and c.site.function is not None and c.site.function.name in building
                     and type(c.node.func) is cst.Attribute and c.node.func.attr.value == "eval" and not c.node.args}
        # (and locals kept only as parts: `backbone = resnet18(weights=...).eval()`, then
        # `self.body = nn.Sequential(backbone.conv1, ..., backbone.layer4)`: the eval-mode model's own layers)
        evaluated |= {key for key, value, site in self._collector.call_assigns if "." not in key
                      and site.cls is cls and site.function is not None and site.function.name in building
                      and chain_runs(value, "eval")}
        switched = [a for a in kept if chain_runs(a.value, "eval") or dotted(a.target) in evaluated
                    or self._regroups_parts_of(a.value, evaluated)]
        return bool(switched) and not any(self.module_expression(a.value)[0] is not None for a in kept
                                          if a not in switched and type(a.value) is cst.Call)

    def _regroups_parts_of(self, value, evaluated: set) -> bool:
        """`nn.Sequential(backbone.features, backbone.avgpool)` (or a ModuleList of them): a container of parts
        of the local models `evaluated` only, each a plain attribute of one."""
        if type(value) is not cst.Call or not value.args \
                or self.imports.qualify(value.func) not in ("torch.nn.Sequential", "torch.nn.ModuleList"):
            return False
        parts = [e.value for arg in value.args for e in (
            arg.value.elements if type(arg.value) in (cst.List, cst.Tuple) and not arg.star else [arg])]
        return all(type(part) is cst.Attribute and (dotted(part) or "").split(".")[0] in evaluated for part in parts)

    def _constructor_methods(self, cls) -> frozenset[str]:
        """`__init__` and the methods of the class that its `__init__`, or a base's of this file, calls on `self`
        (`self._load_pretrained(path)`, a hook the subclass overrides)."""
        called, info, seen = set(), cls, set()
        while info is not None and info.name not in seen:
            seen.add(info.name)
            init = info.methods.get("__init__")
            called |= {node.func.attr.value for node in iter_nodes(init.body) if type(node) is cst.Call
                       and type(node.func) is cst.Attribute and dotted(node.func.value) == "self"} if init else set()
            info = next(filter(None, map(self.project_class, info.bases)), None)
        return frozenset({"__init__"} | (called & set(cls.methods)))

    def submodule_dependence(self, name: str) -> Dependence | None:
        """When every `self.<name> = ...` of the file's classes builds a module with weights (`self.encoder =
        Encoder()`), how mode-dependent those are: `model.encoder(x)` runs that submodule. None otherwise."""
        return self._attribute_facts(name)[1]

    def part_refined(self, key: str, dependence: Dependence) -> Dependence:
        """How mode-dependent the part `key` of a model is (`model.head`, a Linear of a model with Dropout): at
        most what the classes build on that attribute, where they say (part_dependence)."""
        part = key.rpartition(".")[2] if "." in key and "[" not in key else None
        built = self.part_dependence(part) if part is not None else None
        return min(built, dependence) if built is not None else dependence

    def part_dependence(self, name: str) -> Dependence | None:
        """`submodule_dependence`, or where no class of the file sets `self.<name>`, what the project's other
        files' classes build there (the index, in the second phase)."""
        if name in self._self_attributes:
            return self.submodule_dependence(name)
        found = self.index.submodule_dependence(name) if self.index is not None else None
        return Dependence(found) if found is not None else None

    def submodules(self) -> dict[str, int]:
        """Every attribute name the file's classes set only to modules with weights -> their dependence."""
        out = {}
        for name in self._self_attributes:
            dependence = self.submodule_dependence(name)
            if dependence is not None:
                out[name] = dependence.value
        return out

    def sets_attribute(self, name: str) -> bool:
        """Does a class of the file set `self.<name>` at all?"""
        return name in self._self_attributes

    def _attribute_facts(self, name: str) -> tuple[bool, Dependence | None]:
        """(parameterless, submodule dependence) of the attribute, worked out once per name."""
        cache = self.__dict__.setdefault("_attribute_fact_cache", {})
        found = cache.get(name)
        if found is None:
            values = self._self_attributes.get(name)
            built = [self.module_expression(v)[0] if type(v) is cst.Call else None for v in values or ()]
            if values and None in built:
                handed = self._handed_to_the_attribute(name, built.count(None))  # `self.encoder = encoder`
                if handed is not None:
                    built = [b for b in built if b is not None] + handed
            parameterless = bool(built) and all(b is not None and b.parameterless for b in built)  # (`.cuda()` too)
            dependence = None
            if built and all(b is not None and b.certain and not b.parameterless for b in built):
                dependence = max(b.dependence for b in built)
            found = cache[name] = (parameterless, dependence)
        return found

    def _handed_to_the_attribute(self, name: str, unbuilt: int) -> list | None:
        """The modules every construction in the file hands the constructor parameter a module class keeps as
        `self.<name>` (`self.encoder = encoder`, given `EncoderDecoder(Encoder(...), Generator(d, v))`), when those
        are all the `unbuilt` assignments of that name no construction explains. None otherwise, or when a
        construction hands anything but a module built right there, or none is seen."""
        from modelint.facts.module_names import stored_arguments

        names = self.__dict__.get("names")  # (ModuleNames, once this table is solved)
        stored = [(cls, params) for (cls, key), params in names.stored_parameters.items()
                  if key == f"self.{name}"] if names is not None else []
        if not stored or sum(len(params) for _cls, params in stored) != unbuilt:
            return None
        out = []
        for cls, params in stored:
            handed = stored_arguments(names, params) if self.is_module_class(cls) else []
            if not handed:
                return None
            for value, _caller in handed:
                made = self.module_expression(value)[0] if type(value) is cst.Call else None
                if made is None:
                    return None
                out.append(made)
        return out

    def unread_layers(self, info) -> frozenset:
        """The torch Dropout and BatchNorm layers a model class (one with its own `forward`) builds into
        attributes that nothing in the file reads back, under any object (`self.dropout = nn.Dropout(0.1)` with
        its use in `forward` commented out): they never run. (Not in a file that reaches attributes by name or
        walks a module's children: `getattr(self, ...)`, `self.children()`.)"""
        cache = self.__dict__.setdefault("_unread_by_class", {})
        if info not in cache:
            cache[info] = self._unread_layers(info)
        return cache[info]

    def _unread_layers(self, info) -> frozenset:
        if "forward" not in info.methods:
            return frozenset()  # (a base class: its subclasses, here or elsewhere, may run what it builds)
        assigned = [(a.target.attr.value, a.value) for a in self.self_assigns if a.site.cls is info
                    and type(a.value) is cst.Call and _MODE_LAYER.fullmatch(
                        (self.imports.qualify(a.value.func) or "").removeprefix("torch.nn."))]
        if not assigned:
            return frozenset()
        if "_attribute_reads" not in self.__dict__:  # (once per file: None is an answer too)
            self.__dict__["_attribute_reads"] = _attribute_reads(self._collector)
        reads = self.__dict__["_attribute_reads"]
        if reads is None:
            return frozenset()  # (a class reaching its attributes by name: every one may be read)
        return frozenset(value for name, value in assigned if reads.get(name, 0) == 0)


_MODE_LAYER = re.compile(r"(Dropout[123]?d?|AlphaDropout|FeatureAlphaDropout|BatchNorm[123]d)")
# (what reaches a submodule without naming it, and may run it: `getattr(self, f"block{i}")(x)`,
# `nn.Sequential(*self.children())`; `apply()` and `modules()` visit layers to set them up, never run them)
_BY_NAME = frozenset({"getattr", "__getattr__", "children", "named_children", "_modules", "__dict__"})


def _attribute_reads(collector) -> dict[str, int] | None:
    """How often each attribute name is read anywhere in the file (not assigned); None when the file reaches
    attributes by name or walks a module's submodules."""
    from modelint.facts.walk import iter_nodes

    reads: dict[str, int] = {}
    targets = {id(a.target) for a in collector.attribute_assigns}
    for node in iter_nodes(collector.module_node):
        if type(node) is cst.Name and node.value in _BY_NAME:
            return None
        if type(node) is cst.Attribute:
            if node.attr.value in _BY_NAME:
                return None
            if id(node) not in targets:
                reads[node.attr.value] = reads.get(node.attr.value, 0) + 1
    return reads
