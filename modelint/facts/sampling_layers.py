"""Can a module be random in training mode (a Dropout, an RReLU, a recurrent or attention layer with dropout),
or only normalise with the batch's statistics (BatchNorm: training saw the same for that batch)? Looked up
through the file's classes, their project bases and the file's builder functions; what the file cannot see
counts as "may sample"."""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.scopes import ClassInfo
from modelint.facts.walk import calls_in


class SamplingLayers:
    """Mixed into LayerKinds: `self.table`, `self.imports` and `self._samples` come from there."""

    def may_sample(self, call: cst.Call, in_scan: bool = False) -> bool:
        """Can the module `call` builds be random in training mode? True where this file cannot see
        its layers. `in_scan`: every call of the enclosing class or builder is being looked at, so
        layers put in a container by name (`nn.Sequential(*layers)`) are seen where they are built."""
        from modelint.facts.modules import Dependence

        table = self.table
        project = table.project_class(call.func)
        if project is not None:
            return self._class_samples(project)
        inside = table.builder_calls(call.func)
        if inside is not None:
            return self._scope_samples("def " + call.func.value, inside)
        qualified = self.imports.qualify(call.func) or ""
        if qualified.startswith(api.FUNCTIONAL + "."):
            return "dropout" in qualified or "rrelu" in qualified
        built = table.construction(call)
        if built is None:
            return False
        if not qualified.startswith(api.NN + "."):
            return True
        layer = qualified.rsplit(".", 1)[-1]
        if layer in api.CONTAINERS or layer in api.STACKS:
            return any((not in_scan and (arg.star or type(arg.value) in (cst.Name, cst.Attribute)))
                       or any(self.may_sample(inner, in_scan) for inner in calls_in(arg.value)) for arg in call.args)
        return built.dependence is not Dependence.INDEPENDENT and not api.NORMALISING.fullmatch(layer)

    def _class_samples(self, info: ClassInfo) -> bool:
        if info.reads_training_flag or self.table.has_foreign_base(info):
            return True  # `F.dropout(x, training=self.training)`, or layers of a base we cannot see
        bases = [base for base in map(self.table.project_class, info.bases) if base is not None]
        return self._scope_samples("class " + info.name, info.calls, bases)

    def _scope_samples(self, name: str, calls, bases=()) -> bool:
        if name not in self._samples:
            self._samples[name] = False  # recursion guard: a builder or class reached again adds nothing
            self._samples[name] = any(map(self._class_samples, bases)) \
                or any(self.may_sample(call, in_scan=True) for call in calls)
        return self._samples[name]
