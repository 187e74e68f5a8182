"""Module classes that wait on other files: what the project index must settle.

A class built of blocks defined in another file of the project (`self.blocks =
nn.ModuleList(UpBlock(c, c) for ...)` with `UpBlock` from `layers.py`) has an
unknown mode-dependence in its own file's first pass. Its users two files away see
it only through the project index, which was made from those first passes. So the
file exports, for each such class, the imports it builds (its own, its builders',
those of the classes of its file it derives from or builds) when taking every
imported class as mode-independent settles it; the index then settles it as the
most dependent of them (ProjectIndex.resolve_class).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import is_torch_module
from modelint.facts.torch_layers import Dependence


class WaitingOnImports:
    """Mixed into ModuleTable: `classes`, `_is_module`, `_dependence`, `_foreign_base`, `_each_definition`, `_built`,
    `_assumed`, `_solve()`, `layer_dependence()`, `builder_calls()`, `project_class()`, `imports`, `index`, `path` come
    from there."""

    def _star_imported(self, call: cst.Call, name: str):
        """`DGM_graphs(...)` after `from model import *`: the class of a star-imported module of the project
        that defines it, as the index knows it (first pass: named after the first star import, to ask)."""
        from modelint.facts.torch_layers import Construction

        stars = [module for module in self.imports.star_modules if not is_torch_module(module)]
        if not stars:
            return None
        if self.index is None:
            return Construction(call, Dependence.UNKNOWN, certain=False, origin=f"{stars[0]}.{name}")
        for module in stars:
            qualified = f"{module}.{name}"
            known = self.index.resolve_class(qualified, self.path)
            if known is not None:
                return self.indexed_construction(call, qualified, known)
        return None

    def indexed_construction(self, call: cst.Call, qualified: str, known: int):
        """`call` builds the project class imported as `qualified`, of the dependence the index settled."""
        from modelint.facts.torch_layers import Construction

        return Construction(call, Dependence(known), origin=qualified,
                            runs_loaded=self.index.runs_loaded_modules(qualified, self.path),
                            parameterless=self.index.holds_no_weights(qualified, self.path),
                            starts_in_eval=self.index.built_in_eval(qualified, self.path))

    def waiting_on_imports(self) -> dict[str, tuple[str, ...]]:
        """Module classes whose dependence is unknown only because they build or derive from classes
        imported from elsewhere (`self.block = GenInitialBlock(c)` from the project's layers file), each
        with every such import of this file: the project index settles them once it knows those classes
        (ProjectIndex.resolve_class)."""
        unknown = [name for name, dependence in self._dependence.items()
                   if dependence is Dependence.UNKNOWN and self._is_module.get(name)]
        if not unknown:
            return {}
        saved = self._is_module, self._dependence, self._foreign_base, self._built, self._each_definition
        self._is_module, self._dependence, self._foreign_base, self._built = {}, {}, {}, {}
        self._each_definition = {}
        self._assumed = set()
        try:
            self._solve()  # again, every imported class taken as mode-independent
            settled = [name for name in unknown if self._dependence.get(name) is Dependence.INDEPENDENT]
            direct: dict[str, set[str]] = {}
            for name in settled:  # which imports each one builds itself (its builders' included)
                self._assumed, self._built = set(), {}
                self._assume_imports_of(self.classes[name])
                direct[name] = self._assumed
            out = {}
            for name in settled:
                imports: set[str] = set()
                for used in self._local_classes_used(name):
                    if used not in direct:
                        self._assumed, self._built = set(), {}
                        self._assume_imports_of(self.classes[used])
                        direct[used] = self._assumed
                    imports |= direct[used]
                if imports:
                    out[name] = tuple(sorted(imports))
            return out
        finally:
            self._is_module, self._dependence, self._foreign_base, self._built, self._each_definition = saved
            self._assumed = None

    def _assume_imports_of(self, info) -> None:
        """Note in `self._assumed` the imported classes the class builds and derives from."""
        for call in info.calls:
            self.layer_dependence(call)
        for base in info.bases:
            self._base_kind(base)  # (`class Net(BaseModule)`, the base in the project's base.py)

    def _local_classes_used(self, name: str) -> set[str]:
        """The class, and the classes of this file it derives from or builds (and theirs), transitively."""
        seen, stack = set(), [name]
        while stack:
            info = self.classes[stack.pop()]
            if info.name in seen:
                continue
            seen.add(info.name)
            calls = list(info.calls)
            for call in info.calls:
                calls += self.builder_calls(call.func) or ()
            for expr in (*info.bases, *(call.func for call in calls)):
                used = self.project_class(expr)
                if used is not None and used.name not in seen:
                    stack.append(used.name)
        return seen

    # -- what other files need to know of this file's classes (modelint.facts.export) ------
    def own_mode_classes(self) -> set[str]:
        """The mode-dependent module classes of the file whose only mode dependence is their own reading
        of `self.training` (see LayerKinds.holds_library_mode_layers), for other files."""
        return {name for name, info in self.classes.items()
                if self._is_module.get(name) and self._dependence.get(name) is Dependence.DEPENDENT
                and not self.kinds.holds_library_mode_layers(info)}

    def weightless_classes(self) -> set[str]:
        """The module classes of the file that hold no weights, for other files' constructions of them."""
        return {name for name, info in self.classes.items()
                if self._is_module.get(name) and self.kinds.holds_no_weights(info)}

    def class_summaries(self) -> dict[str, int]:
        return {name: int(self._dependence[name]) for name in self.classes if self._is_module.get(name)}

