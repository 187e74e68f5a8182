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


def comp_for_clauses(comp: cst.CompFor | None):
    """A comprehension's `for` clauses, outermost first."""
    while comp is not None:
        yield comp
        comp = comp.inner_for_in


def comp_for_values(comp: cst.CompFor):
    """A comprehension's iterables and conditions, outermost first (its element is the node's other child)."""
    for clause in comp_for_clauses(comp):
        yield clause.iter
        for condition in clause.ifs:
            yield condition.test


def value_nodes(expr: cst.BaseExpression) -> list[cst.CSTNode]:
    """`expr` and its value sub-expressions, parents before children (no recursion): the order a stack of
    `value_children` pops them in, built without a generator per node."""
    out: list = []
    push = out.append
    stack = [expr]
    pop, stack_push = stack.pop, stack.append
    while stack:
        node = pop()
        push(node)
        kind = type(node)
        if kind is cst.Attribute or kind is cst.Arg:
            stack_push(node.value)
        elif kind is not cst.Lambda:
            for child in child_list(node):
                if type(child) is cst.CompFor:
                    stack.extend(comp_for_values(child))
                else:
                    stack_push(child)
    return out


def iterated_elements(iterable: cst.BaseExpression, target: cst.BaseExpression) -> list | None:
    """`for i, p in zip(best, probs)` -> [(i, best), (p, probs)]; `for k, x in enumerate(xs)` -> [(k, None),
    (x, xs)]: what each name of the target takes its value from, when the iterable pairs them up (None: a
    count). None when the whole target takes its value from the iterable."""
    if type(iterable) is not cst.Call or type(iterable.func) is not cst.Name or type(target) is not cst.Tuple \
            or any(arg.star or arg.keyword is not None for arg in iterable.args):
        return None
    sources = [arg.value for arg in iterable.args]
    if iterable.func.value == "enumerate" and len(sources) == 1:
        sources = [None, sources[0]]
    elif iterable.func.value != "zip":
        return None
    if len(sources) != len(target.elements):
        return None
    return [(element.value, source) for element, source in zip(target.elements, sources)]
