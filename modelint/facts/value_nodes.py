"""The sub-expressions whose values make up an expression's value, for the intent of forwards
(modelint.facts.intent): operands, arguments, elements, a comprehension's element and iterables; not
attribute names, keywords or lambdas."""

from __future__ import annotations

import libcst as cst

from modelint.facts.walk import child_list

COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)


def value_children(node: cst.CSTNode):
    """The sub-expressions whose values make up `node`'s value (not attribute names or keywords)."""
    kind = type(node)
    if kind is cst.Attribute:
        yield node.value
        return
    if kind is cst.Arg:
        yield node.value
        return
    if kind is cst.Lambda:
        return
    for child in child_list(node):
        if type(child) is cst.CompFor:
            yield from comp_for_values(child)
        else:
            yield child


def comp_for_values(comp: cst.CompFor):
    """A comprehension's iterables and conditions, outermost first (its element is the node's other child)."""
    while comp is not None:
        yield comp.iter
        for condition in comp.ifs:
            yield condition.test
        comp = comp.inner_for_in


def value_nodes(expr: cst.BaseExpression):
    """`expr` and its value sub-expressions, parents before children (no recursion)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(value_children(node))
