"""A fast read-only walk over a libcst tree.

libcst's own `visit()` rebuilds every node it passes (`_visit_and_replace_children`,
with each node's validation), which costs several times the parse. modelint only
reads the tree, so it walks the dataclass fields itself and skips whitespace and
punctuation nodes: same nodes, same order, a fraction of the time.
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


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls)
                      if f.name not in _SKIP_FIELDS and not f.name.startswith("whitespace"))
        _FIELDS[cls] = names
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


def children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    for name in _fields(type(node)):
        value = getattr(node, name)
        kind = _KIND.get(type(value)) or _kind(type(value))
        if kind == 1:
            yield value
        elif kind == 2:
            for item in value:
                if (_KIND.get(type(item)) or _kind(type(item))) == 1:
                    yield item


def iter_nodes(node: cst.CSTNode, skip_lambdas: bool = False) -> Iterator[cst.CSTNode]:
    """Every node under `node` (itself included), parents before children."""
    stack = [node]
    while stack:
        current = stack.pop()
        if skip_lambdas and isinstance(current, cst.Lambda):
            continue
        yield current
        stack.extend(reversed(list(children(current))))


class FastVisitor:
    """`visit_<Node>` / `leave_<Node>` / `on_visit` / `on_leave`, like cst.CSTVisitor, but read-only and fast."""

    def walk(self, node: cst.CSTNode) -> None:
        cls = type(node)
        if self.on_visit(node) is False:
            return
        visit = _method(type(self), "visit_", cls)
        if visit is not None and visit(self, node) is False:
            self.on_leave(node)
            return
        for child in children(node):
            self.walk(child)
        leave = _method(type(self), "leave_", cls)
        if leave is not None:
            leave(self, node)
        self.on_leave(node)

    def on_visit(self, node: cst.CSTNode) -> bool:
        return True

    def on_leave(self, node: cst.CSTNode) -> None:
        pass


_METHODS: dict[tuple[type, str, type], object] = {}


def _method(visitor_cls: type, prefix: str, node_cls: type):
    key = (visitor_cls, prefix, node_cls)
    try:
        return _METHODS[key]
    except KeyError:
        found = getattr(visitor_cls, prefix + node_cls.__name__, None)
        _METHODS[key] = found
        return found
