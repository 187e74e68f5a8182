"""What an object's models hold: whether the mode can change the output of `self.<attr>`, from every model
its class assigns there (`self.model = SuperResolutionNet()`, a factory whose summary says what it returns, a
model the creators hand the constructor, another name of a part), and whether that is only its own layers
reading `self.training` (a NoisyNet's exploration noise).
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.module_names import passed_dependences
from modelint.facts.modules import Dependence, rewraps, unwrap_chain
from modelint.facts.names import dotted


class AttributeLayers:
    """Mixed into ObjectModes: `self.flow` comes from there."""

    def attribute_dependence(self, function, key: str) -> Dependence:
        """Can the mode of `self.<attr>` change its output, from every construction the class assigns to it
        (`self.model = SuperResolutionNet()`, a class the project index knows has no Dropout or BatchNorm)?"""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1:
            return Dependence.UNKNOWN
        known = self._attribute_dependences.get(function.cls, {})
        return known.get(key, Dependence.UNKNOWN)

    def attribute_sets_own_mode_only(self, function, key: str) -> bool:
        """Is every model the class puts in `self.<attr>` built from a project class whose only mode dependence
        is its own layers reading `self.training` (a NoisyNet's exploration noise), with no Dropout or BatchNorm
        of torch's at any depth? What training mode does to it is then what its authors wrote it for."""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1:
            return False
        values = [value for assigned, value, site in self.flow.collector.call_assigns
                  if site.cls is function.cls and assigned == key]
        return bool(values) and all(map(self._own_mode_construction, values))

    def _own_mode_construction(self, value: cst.Call) -> bool:
        built = unwrap_chain(value)[0]
        if type(built) is not cst.Call:
            return False
        modules = self.flow.modules
        project = modules.project_class(built.func)
        if project is not None:
            return modules.is_module_class(project) and modules.class_dependence(project) is Dependence.DEPENDENT \
                and not modules.kinds.holds_library_mode_layers(project)
        qualified = self.flow.imports.qualify(built.func)
        if qualified == "torch.nn.Sequential":
            # (`nn.Sequential(nn.Linear(4, 32), nn.ReLU(), NoisyLinear(32, n))`: such layers, the rest mode-free)
            parts = [arg.value for arg in built.args]
            if not parts or any(arg.star or arg.keyword is not None for arg in built.args):
                return False
            own = [part for part in parts if self._own_mode_construction(part)]
            return bool(own) and all(
                any(part is mine for mine in own) or (type(part) is cst.Call and (
                    found := modules.construction(part)) is not None and found.dependence is Dependence.INDEPENDENT)
                for part in parts)
        index = self.flow.index
        return index is not None and qualified is not None and not qualified.startswith("torch.") \
            and index.sets_its_own_mode_only(qualified, self.flow.path)

    @cached_property
    def _attribute_dependences(self) -> dict:
        """class -> `self.<attr>` -> the join of the dependences of the models assigned to it."""
        out: dict = {}

        def join(cls, key: str, dependence: Dependence) -> None:
            known = out.setdefault(cls, {})
            known[key] = max(known.get(key, dependence), dependence)

        for assigned, value, site in self.flow.collector.call_assigns:
            if site.cls is None or not assigned.startswith("self.") or rewraps(self.flow.imports, value, assigned):
                continue  # (`self.net = nn.DataParallel(self.net)`: the same model, whatever it holds)
            built = self.flow.modules.module_expression(value)[0]
            # (unknown: not a model we know)
            join(site.cls, assigned, built.dependence if built is not None else self._factory_dependence(value, site))
        for (cls, key), dependence in passed_dependences(self.flow).items():  # `self.model = model`, given a Unet
            join(cls, key, dependence)
        for assign in self.flow.collector.attribute_assigns:
            # `self.encoder_layer = self.model_self.input_layer`: another name of a part, as dependent as it is
            value, cls = assign.value, assign.site.cls
            part = dotted(value) if type(value) is cst.Attribute and cls is not None else None
            if part is None or not part.startswith("self.") or part.count(".") < 2:
                continue
            found = self.flow.modules.part_dependence(part.rpartition(".")[2])
            join(cls, dotted(assign.target), found if found is not None else Dependence.UNKNOWN)
        return out

    def _factory_dependence(self, value: cst.Call, site) -> Dependence:
        """`self.discriminator = create_discriminator(n, d)`: what the factory's summary (in this file or another)
        says the module it builds and returns depends on; unknown for any other call."""
        called = unwrap_chain(value)[0]
        if type(called) is not cst.Call:
            return Dependence.UNKNOWN  # (`self.model = model.to(device)`: what the caller hands)
        summary, _receiver = self.flow.resolve(called, site.function)
        returned = summary.returns if summary is not None else None
        if returned is None or not returned.certain or returned.param is not None:
            return Dependence.UNKNOWN
        return Dependence(returned.dependence)
