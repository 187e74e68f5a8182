"""A fast read-only walk over a libcst tree, with an explicit stack.

libcst's own `visit()` rebuilds every node it passes (`_visit_and_replace_children`,
with each node's validation), which costs several times the parse. modelint only
reads the tree, so it walks the dataclass fields itself and skips whitespace and
punctuation nodes: same nodes, a fraction of the time.

Nothing here recurses: a file may nest thousands of levels deep (`a + a + ...`,
`x.y.y.y...`, long `elif` chains), and a Python-level recursion per level would hit
the interpreter's recursion limit long before the file stops being valid Python.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import libcst as cst

_SKIP_TYPES = frozenset(
    {cst.SimpleWhitespace, cst.ParenthesizedWhitespace, cst.Newline, cst.EmptyLine, cst.TrailingWhitespace,
     cst.Comment, cst.Comma, cst.LeftParen, cst.RightParen, cst.LeftSquareBracket, cst.RightSquareBracket,
     cst.LeftCurlyBrace, cst.RightCurlyBrace, cst.Semicolon, cst.Colon, cst.Dot, cst.AssignEqual}
)
_SKIP_FIELDS = frozenset({"lpar", "rpar", "leading_lines", "lines_after_decorators", "header", "footer",
                          "whitespace_before", "whitespace_after", "semicolon", "comma", "trailing_whitespace"})
_FIELDS: dict[type, tuple[str, ...]] = {}
# Fields in reverse, for pushing children on a stack so that they pop in field order.
_REVERSED: dict[type, tuple[str, ...]] = {}

# Where the dataclass field order differs from the order libcst's visitor (and the
# source text) has: `iter_nodes(..., source_order=True)` follows these.
_SOURCE_ORDER: dict[type, tuple[str, ...]] = {
    cst.Arg: ("keyword", "value"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.FunctionDef: ("decorators", "asynchronous", "name", "type_parameters", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
}
_REVERSED_SOURCE: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls)
                      if f.name not in _SKIP_FIELDS and not f.name.startswith("whitespace"))
        _FIELDS[cls] = names
    return names


def _reversed_fields(cls: type) -> tuple[str, ...]:
    names = _REVERSED.get(cls)
    if names is None:
        names = _REVERSED[cls] = _fields(cls)[::-1]
    return names


def _reversed_source_fields(cls: type) -> tuple[str, ...]:
    names = _REVERSED_SOURCE.get(cls)
    if names is None:
        fields = _fields(cls)
        order = _SOURCE_ORDER.get(cls, ())
        rank = {name: i for i, name in enumerate(order)}
        names = tuple(sorted(fields, key=lambda name: rank.get(name, len(order))))[::-1]
        _REVERSED_SOURCE[cls] = names
    return names


_KIND: dict[type, int] = {}  # 1: a node to walk, 2: a sequence, 0: anything else
_SEQUENCES = (tuple, list)


def _kind(cls: type) -> int:
    kind = _KIND.get(cls)
    if kind is None:
        if issubclass(cls, cst.CSTNode):
            kind = 0 if cls in _SKIP_TYPES else 1
        else:
            kind = 2 if issubclass(cls, _SEQUENCES) else 0
        _KIND[cls] = kind
    return kind


def child_list(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The children of `node` in field order (walked nodes only: no whitespace or punctuation)."""
    out: list = []
    push = out.append
    kinds = _KIND
    cls = type(node)
    for name in _FIELDS.get(cls) or _fields(cls):
        value = getattr(node, name)
        kind = kinds.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == 1:
            push(value)
        elif kind == 2:
            for item in value:
                kind = kinds.get(type(item))
                if kind == 1 or (kind is None and _kind(type(item)) == 1):
                    push(item)
    return out


def push_child_nodes(stack: list, node: cst.CSTNode) -> None:
    """Push the children of `node` so that they pop first to last (depth-first walks in field order)."""
    cls = type(node)
    push_children(stack, node, _REVERSED.get(cls) or _reversed_fields(cls))


def push_children(stack: list, node: cst.CSTNode, reversed_fields: tuple[str, ...], kinds: dict = _KIND,
                  kind_of=_kind) -> None:
    """Push the children of `node` (its fields given last to first) so that they pop first to last.

    `kinds` (value type -> 1: a node to walk, 2: a sequence, 0: nothing to walk) is filled by `kind_of` as
    types are met; a visitor passes its own (see FastVisitor)."""
    push = stack.append
    for name in reversed_fields:
        value = getattr(node, name)
        kind = kinds.get(type(value))
        if kind is None:
            kind = kind_of(type(value))
        if kind == 1:
            push(value)
        elif kind == 2:
            for item in reversed(value):
                kind = kinds.get(type(item))
                if kind == 1 or (kind is None and kind_of(type(item)) == 1):
                    push(item)


def iter_nodes(node: cst.CSTNode, skip_lambdas: bool = False, source_order: bool = False) -> Iterator[cst.CSTNode]:
    """Every node under `node` (itself included), parents before children.

    Children come in dataclass field order, or with `source_order` in the order of the
    source text (and of libcst's visitors: decorators before the function, an
    argument's keyword before its value, `a if b else c` as a, b, c).
    """
    table, reversed_fields = (_REVERSED_SOURCE, _reversed_source_fields) if source_order else \
        (_REVERSED, _reversed_fields)
    stack = [node]
    pop = stack.pop
    while stack:
        current = pop()
        if skip_lambdas and type(current) is cst.Lambda:
            continue
        yield current
        cls = type(current)
        push_children(stack, current, table.get(cls) or reversed_fields(cls))


# Nodes that hold no other node (their fields left to walk are strings): nothing under them to visit.
_LEAF_TYPES = frozenset({cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString})


class FastVisitor:
    """`visit_<Node>` / `leave_<Node>` / `on_visit` / `on_leave`, like cst.CSTVisitor, but read-only and fast.

    Children are visited in dataclass field order. `on_visit` returning False skips a
    node (no leave calls); `visit_<Node>` returning False skips its children (its
    `on_leave` still runs, its `leave_<Node>` does not).

    A visitor whose `on_visit`/`on_leave` act on a few node types only names them in
    `generic_types`: a node of any other type with no `visit_`/`leave_` method of its own
    is passed through (its children walked, no call made for it), and a leaf of that kind
    is not even put on the stack. A third of a tree's nodes are `Name`s.
    """

    generic_types: frozenset[type] | None = None  # None: on_visit/on_leave see every node

    def walk(self, node: cst.CSTNode) -> None:
        methods, kinds, kind_of = _plan_of(type(self))
        on_visit = self.on_visit
        on_leave = self.on_leave
        reversed_fields = _REVERSED
        stack: list = [node]
        pop = stack.pop
        push = stack.append
        while stack:
            current = pop()
            if type(current) is tuple:  # (node, leave_<Node>): its children are done
                current, leave = current
                if leave is not None:
                    leave(self, current)
                on_leave(current)
                continue
            cls = type(current)
            pair = methods.get(cls)
            if pair is None:
                pair = methods[cls] = self._handlers(cls)
            if pair is not _PASS_THROUGH:
                if on_visit(current) is False:
                    continue
                visit, leave = pair
                if visit is not None and visit(self, current) is False:
                    on_leave(current)
                    continue
                push((current, leave))
            push_children(stack, current, reversed_fields.get(cls) or _reversed_fields(cls), kinds, kind_of)

    @classmethod
    def _handlers(cls, node_type: type):
        """(visit_<Node>, leave_<Node>) for a node type, or _PASS_THROUGH when nothing here acts on it."""
        visit = getattr(cls, "visit_" + node_type.__name__, None)
        leave = getattr(cls, "leave_" + node_type.__name__, None)
        if visit is None and leave is None and cls.generic_types is not None and node_type not in cls.generic_types:
            return _PASS_THROUGH
        return visit, leave

    def on_visit(self, node: cst.CSTNode) -> bool:
        return True

    def on_leave(self, node: cst.CSTNode) -> None:
        pass


_PASS_THROUGH = ("pass", "through")
_PLANS: dict[type, tuple] = {}


def _plan_of(visitor_cls: type) -> tuple[dict, dict, object]:
    """For a visitor class, filled as node types are met: node type -> (visit_<Node>, leave_<Node>) or
    _PASS_THROUGH; value type -> its kind for this visitor (0 for a leaf it passes through: never put on the
    stack); and the function that fills the latter."""
    plan = _PLANS.get(visitor_cls)
    if plan is None:
        kinds: dict = {}

        def kind_of(value_type: type) -> int:
            kind = _kind(value_type)
            if kind == 1 and value_type in _LEAF_TYPES and visitor_cls._handlers(value_type) is _PASS_THROUGH:
                kind = 0
            kinds[value_type] = kind
            return kind

        plan = _PLANS[visitor_cls] = ({}, kinds, kind_of)
    return plan


def calls_in(expr: cst.BaseExpression) -> list[cst.Call]:
    """The calls in an expression, in source order."""
    return [node for node in iter_nodes(expr, source_order=True) if type(node) is cst.Call]
