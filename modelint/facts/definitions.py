"""Which of several definitions of one name a call runs: the one in force where it runs.

A notebook redefines its helpers as it goes (`def train_batch` in one cell, again without
`model.train()` in a later cell, for a second model); a script may define a function twice.
Python binds the name anew at each `def`, so:
- a module-level call runs the last definition above it;
- a call inside a function runs what the name holds when that function runs. That is taken
  to be the last definition above the function's own (outermost) definition, or, where the
  name is only defined below it (helpers written after `main`), the first one below;
- other files import the last definition, which keeps the plain name; the earlier ones are
  keyed `name@1`, `name@2`, ... (`FunctionInfo.definition`), so their summaries stay apart.
A method defined twice in one class body is the later one; the earlier is never called.
Only definitions that are statements of the module's or a class's own body are numbered:
the branches of an `if` or a `try` are alternatives, not a sequence.

Classes too (`class neuralnet` written in each of two factories, `class Net` again in a later
cell): a construction builds the class its own function defines, or else the module-level one in
force where it runs (ModuleTable reads each definition's layers apart).
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.names import dotted
from modelint.facts.scopes import FunctionInfo
from modelint.facts.summaries import qualname


class Definitions:
    """The numbering of a file's redefined functions, and the definition in force at a call."""

    def __init__(self, collector) -> None:
        self.collector = collector
        body = collector.module_node.body
        self.statement_index = {stmt: i for i, stmt in enumerate(body)}
        by_node = {f.node: f for f in collector.functions if f.outer is None}
        # Module-level names defined more than once: (statement index, the function), in order.
        self.module_level: dict[str, list[tuple[int, FunctionInfo]]] = {}
        for i, stmt in enumerate(body):
            if type(stmt) is cst.FunctionDef and stmt in by_node:
                self.module_level.setdefault(stmt.name.value, []).append((i, by_node[stmt]))
        self.module_level = {name: defs for name, defs in self.module_level.items() if len(defs) > 1}
        for defs in self.module_level.values():
            _number([function for _i, function in defs])
        self._class_nodes = {info.node: info for info in collector.classes}
        names = [info.name for info in collector.classes]
        self.classes_defined_again = {name for name in names if names.count(name) > 1}
        self.module_classes: dict[str, list[tuple[int, object]]] = {}
        for i, stmt in enumerate(body):
            if type(stmt) is cst.ClassDef and stmt.name.value in self.classes_defined_again:
                self.module_classes.setdefault(stmt.name.value, []).append((i, self._class_nodes[stmt]))
        for cls in collector.classes:
            methods: dict[str, list[FunctionInfo]] = {}
            for stmt in cls.node.body.body if type(cls.node.body) is cst.IndentedBlock else ():
                if type(stmt) is cst.FunctionDef and stmt in by_node:
                    methods.setdefault(stmt.name.value, []).append(by_node[stmt])
            for functions in methods.values():
                _number(functions)

    def in_force(self, name: str, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> str:
        """The key of the definition of module-level `name` that the call of `func` in `enclosing` runs."""
        defs = self.module_level.get(name)
        if defs is None:
            return name
        position = self._position(func, enclosing)
        if position is None:
            return name
        above = [function for i, function in defs if i <= position]
        chosen = above[-1] if above else defs[0][1]
        return qualname(chosen)

    def class_in_force(self, call: cst.Call):
        """The definition of a class defined more than once that `call` builds (None: defined once, or unknown)."""
        func = call.func
        if type(func) is not cst.Name or func.value not in self.classes_defined_again:
            return None
        enclosing = self._call_functions.get(call)
        scope = enclosing
        while scope is not None:
            local = [self._class_nodes[stmt] for stmt in scope.node.body.body
                     if type(stmt) is cst.ClassDef and stmt.name.value == func.value] \
                if type(scope.node.body) is cst.IndentedBlock else []
            if local:
                return local[-1]
            scope = scope.outer
        defs = self.module_classes.get(func.value)
        position = self._position(func, enclosing) if defs else None
        if position is None:
            return None
        above = [info for i, info in defs if i <= position]
        return above[-1] if above else defs[0][1]

    def class_of_cls(self, call: cst.Call):
        """`cls(**kwargs)` in a classmethod (`from_pretrained`, `from_checkpoint`): the class it is a method of
        (a subclass calling it builds its own, which the same layers stand for); None elsewhere."""
        func = call.func
        if type(func) is not cst.Name or func.value != "cls":
            return None
        scope = self._call_functions.get(call)
        while scope is not None and scope.cls is None:
            scope = scope.outer
        if scope is None or not any(dotted(d) == "classmethod" for d in scope.decorators):
            return None
        return scope.cls

    @cached_property
    def _call_functions(self) -> dict:
        return {site.node: site.site.function for site in self.collector.calls}

    def _position(self, func: cst.BaseExpression, enclosing: FunctionInfo | None) -> int | None:
        """The index of the module statement the call runs from: its own, or its function's (or class's)."""
        if enclosing is None:
            return self._call_statements.get(func)
        while enclosing.outer is not None:
            enclosing = enclosing.outer
        node = enclosing.node
        cls = enclosing.cls
        while cls is not None:
            node, cls = cls.node, cls.outer
        return self.statement_index.get(node)

    @cached_property
    def _call_statements(self) -> dict:
        """The callee expression of each module-level call -> the index of the statement it sits in."""
        out = {}
        for site in self.collector.calls:
            if site.site.function is None and site.site.cls is None:
                top = site.site.guards[0] if site.site.guards else site.site.stmt
                index = self.statement_index.get(top)
                if index is not None:
                    out[site.node.func] = index
        return out


def _number(functions: list[FunctionInfo]) -> None:
    """All but the last of one name's definitions get their ordinal (1, 2, ...): the last keeps the name."""
    if len(functions) > 1:
        for ordinal, function in enumerate(functions[:-1], start=1):
            function.definition = ordinal

