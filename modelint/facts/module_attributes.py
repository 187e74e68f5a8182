"""What the file's classes keep on `self.<name>`, read wherever such an attribute is called.

Every `self.encoder = Encoder()` of the file's classes makes `model.encoder(x)` a forward
of a submodule in its parent's mode; every `self.act = nn.ReLU()` makes `self.act(a)` no
model at all (a layer without weights or mode).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.torch_layers import Dependence


class ModuleAttributes:
    """Mixed into ModuleTable: `_self_attributes`, `module_expression()` come from there."""

    def attribute_parameterless(self, name: str) -> bool:
        """Is every `self.<name> = ...` of the file's classes a layer without weights or mode (`nn.ReLU()`)?"""
        values = self._self_attributes.get(name)
        return bool(values) and all(type(v) is cst.Call and (built := self.module_expression(v)[0]) is not None
                                    and built.parameterless for v in values)  # (`nn.L1Loss().cuda()` too)

    def submodule_dependence(self, name: str) -> Dependence | None:
        """When every `self.<name> = ...` of the file's classes builds a module with weights (`self.encoder =
        Encoder()`), how mode-dependent those are: `model.encoder(x)` runs that submodule. None otherwise."""
        values = self._self_attributes.get(name)
        found = None
        for value in values or ():
            built = self.module_expression(value)[0] if type(value) is cst.Call else None
            if built is None or not built.certain or built.parameterless:
                return None
            found = built.dependence if found is None else max(found, built.dependence)
        return found
