"""Where nodes are in the text: line and column of the few nodes a finding shows.

libcst places nodes by generating the code of the whole module again while it counts
lines and columns (`PositionProvider`): in Python, and about twice the parse. A
finding needs a handful of nodes, so this places each of them by generating only the
statement around it. What a statement generation cannot know is where the statement
starts; CPython's own parser (`ast`, in C) says on which line each statement's first
token is, and libcst's statements begin with their comment and blank lines, one line
each, before that token. Each generated statement is compared with the source text at
that line: any difference (a construct this pairing does not follow, a parser that
disagrees) and the whole module is placed libcst's way instead, so a position is
never a guess.
"""

from __future__ import annotations

import ast
import re
from typing import Iterable, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from modelint.facts.walk import child_list

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BODY_OWNERS = (cst.Module, cst.IndentedBlock)
# What CPython calls each compound statement (a pairing that meets anything else gives up).
_AST_KINDS: dict[type, tuple[type, ...]] = {
    cst.FunctionDef: (ast.FunctionDef, ast.AsyncFunctionDef), cst.ClassDef: (ast.ClassDef,),
    cst.With: (ast.With, ast.AsyncWith), cst.For: (ast.For, ast.AsyncFor), cst.While: (ast.While,),
    cst.If: (ast.If,), cst.Try: (ast.Try,), cst.Match: (ast.Match,),
}
if hasattr(cst, "TryStar") and hasattr(ast, "TryStar"):
    _AST_KINDS[cst.TryStar] = (ast.TryStar,)
_COMPOUND_AST = tuple(kind for kinds in _AST_KINDS.values() for kind in kinds)


class Positions:
    """`positions[node]` / `positions.get(node)`: libcst's `CodeRange` of a node.

    `prepare(nodes)` places a batch in one pass over the tree; a node asked for
    without it is placed on its own (one pass each)."""

    def __init__(self, module: cst.Module, text: str) -> None:
        self._module = module
        self._text = text
        self._provider = PositionProvider()
        self._starts: dict[cst.BaseStatement, tuple[int, tuple[str, ...]]] | None = None
        self._line_offsets: list[int] | None = None
        self._whole = False

    def __getitem__(self, node: cst.CSTNode):
        span = self.get(node)
        if span is None:
            raise KeyError(node)
        return span

    def get(self, node: cst.CSTNode, default=None):
        computed = self._provider._computed
        span = computed.get(node)
        if span is None and not self._whole:
            self.prepare((node,))
            span = computed.get(node)
        return default if span is None else span

    def prepare(self, nodes: Iterable[cst.CSTNode]) -> None:
        computed = self._provider._computed
        wanted = {node for node in nodes if node is not None and node not in computed}
        if not wanted or self._whole:
            return
        units = _statements_around(self._module, wanted)
        if units is None or not self._place(units):
            self.everything()

    def everything(self) -> None:
        """Every node of the module, libcst's way (the whole module generated once)."""
        if self._whole:
            return
        self._whole = True
        provider = PositionProvider()
        try:
            # What MetadataWrapper.resolve(PositionProvider) runs, without the empty visit of the
            # whole tree it adds for batchable providers (there are none here): a third of its time.
            provider._gen_impl(self._module)
            self._provider = provider
        except AttributeError:  # a libcst without these internals
            self._provider = _Resolved(MetadataWrapper(self._module, unsafe_skip_copy=True).resolve(PositionProvider))

    def _place(self, units: set[cst.BaseStatement]) -> bool:
        if self._starts is None:
            self._starts = _statement_starts(self._module, self._text)
            if self._starts is None:
                return False
        module = self._module
        for unit in units:
            if unit in self._provider._computed:
                continue  # (placed with a statement around it)
            where = self._starts.get(unit)
            if where is None:
                return False
            line, indents = where
            state = PositionProvidingCodegenState(default_indent=module.default_indent,
                                                  default_newline=module.default_newline, provider=self._provider)
            state.indent_tokens = list(indents)
            state.line = line
            unit._codegen(state)
            if not self._same_text(line, "".join(state.tokens)):
                return False
        return True

    def _same_text(self, line: int, code: str) -> bool:
        if self._line_offsets is None:
            # (1-based: offsets[line] is where that line starts; lines end as libcst and CPython count them)
            self._line_offsets = [0, 0] + [match.end() for match in _LINE_BREAK.finditer(self._text)]
        offsets = self._line_offsets
        if line < 1 or line >= len(offsets):
            return False
        start = offsets[line]
        source = self._text[start:start + len(code)]
        # (the last statement of a file without a final newline is generated with one)
        return source == code or (start + len(source) == len(self._text) and code.startswith(source)
                                  and code[len(source):] in ("\n", "\r\n", "\r"))


class _Resolved:
    """A mapping from libcst's public API, shaped like the provider's `_computed`."""

    def __init__(self, mapping) -> None:
        self._computed = dict(mapping)


def _statements_around(module: cst.Module, wanted: set[cst.CSTNode]) -> set[cst.BaseStatement] | None:
    """For each wanted node, the innermost statement of a statement list (a module's or a block's) that
    holds it; None when one is not found (a node outside every statement, or of another tree)."""
    units: set[cst.BaseStatement] = set()
    left = len(wanted)
    stack: list[tuple[cst.CSTNode, cst.BaseStatement | None]] = [(module, None)]
    pop, push = stack.pop, stack.append
    while stack and left:
        node, unit = pop()
        if node in wanted:
            if unit is None:
                return None
            units.add(unit)
            left -= 1
        if isinstance(node, _BODY_OWNERS):
            for statement in node.body:
                push((statement, statement))
            continue
        for child in child_list(node):
            push((child, unit))
    return units if not left else None


def _statement_starts(module: cst.Module, text: str) -> dict[cst.BaseStatement, tuple[int, tuple[str, ...]]] | None:
    """Every statement of every statement list -> (the line its generated code starts on, the indentation
    of the blocks around it), by pairing libcst's statements with CPython's; None when they do not pair."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    starts: dict[cst.BaseStatement, tuple[int, tuple[str, ...]]] = {}
    todo: list[tuple[Sequence[cst.BaseStatement], list[ast.stmt], tuple[str, ...]]] = [(module.body, tree.body, ())]
    default = module.default_indent
    while todo:
        statements, nodes, indents = todo.pop()
        i = 0
        for statement in statements:
            if i >= len(nodes):
                return None
            node = nodes[i]
            if type(statement) is cst.SimpleStatementLine:
                if isinstance(node, _COMPOUND_AST):
                    return None
                i += len(statement.body)
                first = node.lineno
            else:
                if not isinstance(node, _AST_KINDS.get(type(statement), ())):
                    return None
                i += 1
                first = _first_line(statement, node)
                pairs = _blocks(statement, node)
                if pairs is None:
                    return None
                for block, inner in pairs:
                    if type(block) is cst.IndentedBlock:
                        todo.append((block.body, inner, indents + (default if block.indent is None else block.indent,)))
            if first is None:
                return None
            starts[statement] = (first - len(statement.leading_lines), indents)
        if i != len(nodes):
            return None
    return starts


def _first_line(statement: cst.BaseCompoundStatement, node: ast.stmt) -> int | None:
    """The line of the statement's first token: its first decorator's, else its keyword's."""
    decorators = getattr(statement, "decorators", ())
    if decorators:
        listed = getattr(node, "decorator_list", None)
        if not listed:
            return None
        return listed[0].lineno - len(decorators[0].leading_lines)
    return node.lineno


def _blocks(statement: cst.BaseCompoundStatement, node: ast.stmt) -> list[tuple[cst.BaseSuite, list]] | None:
    """The blocks of a compound statement paired with CPython's statement lists; None when they differ."""
    kind = type(statement)
    if kind in (cst.FunctionDef, cst.ClassDef, cst.With):
        return [(statement.body, node.body)]
    if kind in (cst.For, cst.While):
        pairs = [(statement.body, node.body)]
        if statement.orelse is not None:
            pairs.append((statement.orelse.body, node.orelse))
        return pairs
    if kind is cst.If:
        pairs = []
        while True:
            if not isinstance(node, ast.If):
                return None
            pairs.append((statement.body, node.body))
            orelse = statement.orelse
            if orelse is None:
                return pairs
            if type(orelse) is cst.Else:
                pairs.append((orelse.body, node.orelse))
                return pairs
            if len(node.orelse) != 1:
                return None
            statement, node = orelse, node.orelse[0]
    if kind is cst.Try or kind is getattr(cst, "TryStar", None):
        handlers = getattr(node, "handlers", None)
        if handlers is None or len(handlers) != len(statement.handlers):
            return None
        pairs = [(statement.body, node.body)]
        pairs.extend((handler.body, ast_handler.body) for handler, ast_handler in zip(statement.handlers, handlers))
        if statement.orelse is not None:
            pairs.append((statement.orelse.body, node.orelse))
        if statement.finalbody is not None:
            pairs.append((statement.finalbody.body, node.finalbody))
        return pairs
    if kind is cst.Match:
        cases = getattr(node, "cases", None)
        if cases is None or len(cases) != len(statement.cases):
            return None
        return [(case.body, ast_case.body) for case, ast_case in zip(statement.cases, cases)]
    return None
