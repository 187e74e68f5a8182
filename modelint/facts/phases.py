"""Phase loops: `for phase in ("train", "val"):` with one body for both phases.

The body tests the phase (`if phase == "train": loss.backward()`), picks the data
(`loaders[phase]`) and often the modes (`model.train() if phase == "train" else
model.eval()`, `torch.set_grad_enabled(phase == "train")`). The interpreter runs such
a body once per value, with the loop variable known: the tests are decided, and the
forwards of the "val" pass are told apart from those of the "train" pass.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import literal_value, tokens
from modelint.facts.naming import EVAL_WORDS, TRAIN_WORDS

_MAX_VALUES = 6


def phase_values(stmt: cst.For, constants: dict[str, object]) -> tuple[str, tuple] | None:
    """(loop variable, its values) for `for name in ("train", "val")` (or a name bound to such a tuple)."""
    if not isinstance(stmt.target, cst.Name):
        return None
    values = literal_strings(stmt.iter, constants)
    if values is None or not 1 < len(values) <= _MAX_VALUES:
        return None
    words = set()
    for value in values:
        words.update(tokens(value))
    if not (words & EVAL_WORDS and words & TRAIN_WORDS):
        return None  # a loop over other strings (file names, keys): nothing to tell apart
    return stmt.target.value, values


def literal_strings(expr: cst.BaseExpression, constants: dict[str, object]) -> tuple | None:
    if isinstance(expr, cst.Name) and isinstance(constants.get(expr.value), tuple):
        return constants[expr.value]
    if isinstance(expr, (cst.Tuple, cst.List)):
        values = []
        for element in expr.elements:
            value = literal_value(element.value) if isinstance(element, cst.Element) else None
            if not isinstance(value, str):
                return None
            values.append(value)
        return tuple(values)
    return None


def decide(test: cst.BaseExpression, constants: dict[str, object]) -> bool | None:
    """The value of a test that only compares known loop variables with literals; None otherwise."""
    if not constants:
        return None
    if isinstance(test, cst.Name):
        value = constants.get(test.value)
        return value if isinstance(value, bool) else None
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = decide(test.expression, constants)
        return None if inner is None else not inner
    if isinstance(test, cst.BooleanOperation):
        left, right = decide(test.left, constants), decide(test.right, constants)
        if isinstance(test.operator, cst.And):
            return False if False in (left, right) else (None if None in (left, right) else True)
        return True if True in (left, right) else (None if None in (left, right) else False)
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        target = test.comparisons[0]
        left, right = _known(test.left, constants), _known(target.comparator, constants)
        operator = target.operator
        if left is _UNKNOWN or right is _UNKNOWN:
            return None
        if isinstance(operator, (cst.Equal, cst.Is)):
            return left == right
        if isinstance(operator, (cst.NotEqual, cst.IsNot)):
            return left != right
        if isinstance(operator, (cst.In, cst.NotIn)) and isinstance(right, tuple):
            return (left in right) == isinstance(operator, cst.In)
    return None


_UNKNOWN = object()


def _known(expr: cst.BaseExpression, constants: dict[str, object]):
    if isinstance(expr, cst.Name) and expr.value in constants:
        return constants[expr.value]
    values = literal_strings(expr, {})
    if values is not None:
        return values
    value = literal_value(expr)
    return value if isinstance(value, (str, int, bool)) else _UNKNOWN


def names_evaluation_value(expr: cst.BaseExpression, constants: dict[str, object]) -> bool:
    """`loaders[phase]` while `phase` is "val": the loop runs over validation data."""
    from modelint.facts.walk import iter_nodes

    for node in iter_nodes(expr):
        if type(node) is cst.Name and isinstance(constants.get(node.value), str):
            words = set(tokens(constants[node.value]))
            if words & EVAL_WORDS and not words & TRAIN_WORDS:
                return True
    return False
