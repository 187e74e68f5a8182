"""Which names a file shows to be nn.Modules, and where: built by a constructor (`net = Net()`),
used as one (`m.parameters()`, `m.eval()`, `m.state_dict()`), or annotated as one (`model: nn.Module`).
A name is known in the scope it was seen in: the same name in another function is another variable.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.collector import Collector, FunctionInfo
from modelint.facts.lattice import mode_of_call
from modelint.facts.modules import EVIDENCE_METHODS
from modelint.facts.names import literal_value, value_key


class ModuleNames:
    def __init__(self, table, collector: Collector) -> None:
        self.table = table
        self.imports = collector.imports
        self.module_names = self._collect(collector)

    def _collect(self, collector: Collector) -> set:
        """Dotted names the file shows to be nn.Modules, each with the scope it was seen in.

        Entries are `(scope, key)`: a function (or None for module level) for plain
        names, the class for `self.` attributes (set in __init__, used in forward).
        The same name in another function is another variable.
        """
        names: set = set()

        def add(key: str, site) -> None:
            if key.startswith("self.") and site.cls is not None:
                names.add((site.cls, key))
            else:
                names.add((site.function, key))
            names.add(key)  # the bare key, for rules that only need "a module somewhere"

        for key, value, site in collector.call_assigns:
            built, _ = self.table.module_expression(value)
            if built is not None and built.certain or mode_of_call(value) is not None:
                add(key, site)  # (`self.net = torch.load(path).eval()`: only a module has a mode to switch)
        for site in collector.calls:
            func = site.node.func
            if not isinstance(func, cst.Attribute):
                continue
            receiver = value_key(func.value)
            if receiver is None:
                continue
            method = func.attr.value
            if method in EVIDENCE_METHODS or (method == "eval" and not site.node.args):
                add(receiver, site.site)
            elif method == "train" and (not site.node.args or isinstance(literal_value(site.node.args[0].value), bool)):
                if "trainer" not in receiver.lower() and "tokenizer" not in receiver.lower():
                    add(receiver, site.site)
        for function in collector.functions:
            for param in (*function.node.params.params, *function.node.params.kwonly_params):
                if param.annotation is not None and self._annotation_is_module(param.annotation.annotation):
                    names.add((function, param.name.value))
                    names.add(param.name.value)
        return names

    def _annotation_is_module(self, annotation: cst.BaseExpression) -> bool:
        if isinstance(annotation, cst.SimpleString):
            return False
        project = self.table.project_class(annotation)
        if project is not None:
            return self.table.is_module_class(project)
        qualified = self.imports.qualify(annotation)
        if qualified is None:
            return False
        from modelint.facts.receivers import library_class  # (receivers builds on this table)

        known = library_class(qualified)  # `nn.Module`, `VisionEncoderDecoderModel`, a timm model...
        return bool(known is not None and known.module)

    def is_module_name(self, key: str, function: FunctionInfo | None) -> bool:
        """Is `key`, as seen in `function`, shown to be an nn.Module there (or in its class)?"""
        if key == "self":
            return function is not None and function.cls is not None and self.table.is_module_class(function.cls)
        if key.startswith("self."):
            cls = function.cls if function is not None else None
            return cls is not None and (cls, key) in self.module_names
        scope = function
        head = key.split(".")[0]
        while True:
            if (scope, key) in self.module_names:
                return True
            if scope is None or head in scope.param_set:
                return False  # a parameter hides the names of the enclosing scopes
            scope = scope.outer  # closures see the enclosing function's names (and the module's)

