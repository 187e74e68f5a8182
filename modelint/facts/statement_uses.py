"""What a statement does with the value it ends (mixed into modelint.facts.intent.OutputUses): an expression
statement drops it (or adds it to a container, writes it to a file, logs it), a `return` hands it back, an
attribute keeps it; a Lightning `training_step` hands it to the framework's backward."""

from __future__ import annotations

import libcst as cst

from modelint.facts.plots import plotting_function
from modelint.facts.uses import (DETACHED, DIRECT, DISCARD, ESCAPE, EVAL, GIVEN_BACK, GRAPH, HANDED_BACK, NONE, OPAQUE,
                                 Origins, RETURN, STORE, TRAIN, WEAK, is_parameter)
from modelint.facts.value_calls import CONTAINER_METHODS, FILE_WRITERS, WEAK_CONSUMER_METHODS, in_place


class StatementUses:
    """`self.use`, `self._evaluate`, `self.expression`, `self.forwards`, `self.tag`, `self.imports`,
    `self.argument_uses` and `self.draws_on` come from OutputUses."""

    def dropped(self, expr: cst.BaseExpression, values: dict[str, Origins]) -> Origins:
        """An expression statement: its value is thrown away. Returns what a container method
        (`preds.append(out)`) adds to its receiver, else nothing."""
        result = self._evaluate(expr, values)
        origins = result.get(expr, NONE)
        if type(expr) is cst.Call:
            token = (expr, self.tag) if self.tag else expr
            if token in self.forwards:
                self.use(frozenset({(token, DIRECT)}), DISCARD)
                return NONE
            consumed = NONE
            for arg in expr.args:
                consumed |= result.get(arg.value, NONE)
            if not consumed:
                return NONE
            func = expr.func
            method = func.attr.value if type(func) is cst.Attribute else None
            if self._writes_files(func):
                self.use(consumed, EVAL)  # `save_image(fake, path)`: what the output is for is a file
            elif method in WEAK_CONSUMER_METHODS or self._weak_function(func):
                self.use(consumed, WEAK)
            elif self.argument_uses(expr) is not None:
                pass  # a helper of this file: its summary said above what it does with each argument
            elif plotting_function(self.imports.qualify(func)) or self.draws_on(func):
                self.use(consumed, EVAL)  # drawn in a figure (`plt.plot(out)`, `ax.imshow(pred)`): to look at
            elif in_place(method):
                # `m.view(-1).index_add_(0, idx, out)`: the tensor now holds it (a distributional
                # target built in place, then used in the loss)
                return consumed
            else:
                self.use(consumed, ESCAPE, level=DIRECT)
            if method in CONTAINER_METHODS:
                return consumed
        elif origins:
            self.use(origins, WEAK)
        return NONE

    def _writes_files(self, func: cst.BaseExpression) -> bool:
        qualified = self.imports.qualify(func) or ""
        return qualified in FILE_WRITERS

    def _weak_function(self, func: cst.BaseExpression) -> bool:
        qualified = self.imports.qualify(func) or ""
        return qualified.startswith(("logging.", "numpy.", "torch.save", "warnings.")) or \
            (type(func) is cst.Name and func.value == "print")

    def returned_expression(self, expr: cst.BaseExpression, values: dict[str, Origins]) -> Origins:
        """`return expr`: the uses of what it hands back, each element of a tuple or list on its own
        (`return loss, {"loss": loss.item()}`: the loss, a tensor carrying its graph, and a log); its origins."""
        if type(expr) not in (cst.Tuple, cst.List):
            origins = self.expression(expr, values)
            self.returned(origins, whole=type(expr) is not cst.Dict)
            return origins
        parts = []
        for element in expr.elements:
            parts.append(self.expression(element.value, values))
            self.returned(parts[-1], whole=type(element) is cst.Element
                          and type(element.value) not in (cst.Tuple, cst.List, cst.Dict))
        return frozenset().union(*parts)

    def returned(self, origins: Origins, whole: bool = False) -> None:
        """`whole`: the value is one tensor, not a tuple or a dict of several results."""
        self.use(origins, RETURN, level=OPAQUE)
        self.use(frozenset(o for o in origins if is_parameter(o[0])), HANDED_BACK, level=OPAQUE)
        detached = frozenset(o for o in origins if o[1] == DETACHED)
        if whole and any(level >= OPAQUE and not is_parameter(o) for o, level in origins):
            # One term of a value that carries another forward's graph on (a regulariser on detached
            # embeddings added to a loss): handed back with it, for the callers to use.
            self.use(detached, RETURN)
        else:
            self.use(detached, EVAL)  # cut from the graph and handed back: the caller gets a result
        self.use(detached, GIVEN_BACK)

    def trained_by_the_framework(self, origins: Origins) -> None:
        """Returned from Lightning's `training_step`: the framework runs the backward on it."""
        self.use(origins, TRAIN)
        self.use(origins, GRAPH, level=OPAQUE)

    def stored(self, origins: Origins) -> None:
        self.use(origins, STORE, level=OPAQUE)
