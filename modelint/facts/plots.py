"""Figures: what a plotting library hands out, and the calls that draw on it.

`plt.plot(out)`, or `fig, axes = plt.subplots(2, 4)` then `axes[0, i].imshow(pred)`: an output
drawn in a figure is what its forward was for (an evaluation to look at), not a value handed
to code that may keep it for training. The objects are followed by data flow: a name bound
only to what a plotting function returns (`plt.subplots()`, `plt.figure()`), to a method's
result on such an object (`fig.add_subplot(1, 1, 1)`), to an element of one (`axes[i]`,
`axes.flat`) or iterating one (`for ax in axes.flat`).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import head_name

PLOTTING_MODULES = ("matplotlib.", "seaborn.")


def plotting_function(qualified: str | None) -> bool:
    return bool(qualified) and qualified.startswith(PLOTTING_MODULES)


class FigureObjects:
    """Which local names hold figures and axes, per scope (asked only where an output would escape)."""

    def __init__(self, flow) -> None:
        self.flow = flow
        self._known: dict[tuple, bool] = {}

    def draws_on(self, func: cst.BaseExpression, scope) -> bool:
        """Is `func` a method of a figure or axes object (`ax.imshow`, `axes[0, 1].plot`, `fig.savefig`)?"""
        if type(func) is not cst.Attribute:
            return False
        root = head_name(func.value)
        return root is not None and self._holds_figure(root, scope, set())

    def _holds_figure(self, name: str, scope, seen: set) -> bool:
        key = (scope, name)
        if key in self._known:
            return self._known[key]
        if key in seen:
            return False  # (`ax = ax.twinx()`: decided by its other bindings)
        seen.add(key)
        found = self.flow.visible_bindings(name, scope)
        held = found is not None and all(self._figure_binding(binding, found[1], seen) for binding in found[0])
        self._known[key] = held
        return held

    def _figure_binding(self, binding, scope, seen: set) -> bool:
        if binding.kind == "assign" or binding.kind == "for":
            return self._figure_value(binding.value, scope, seen)
        node = binding.node  # (an element of a tuple: `fig, ax = plt.subplots()`, `for ax, img in zip(...)`)
        if type(node) is cst.Assign:
            return self._figure_value(node.value, scope, seen)
        return False

    def _figure_value(self, value, scope, seen: set) -> bool:
        if type(value) is cst.Call:
            if plotting_function(self.flow.imports.qualify(value.func)):
                return True
            if type(value.func) is not cst.Attribute:
                return False
            value = value.func.value  # a method of a figure
        root = head_name(value)
        return root is not None and self._holds_figure(root, scope, seen)
