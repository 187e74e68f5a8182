"""Where a local name gets its value: the bindings of one function (or of module level).

`scope_bindings(node)` lists, for each name bound in a function body (its
parameters included) or at module level, every place that binds it: a plain
assignment with its value, a `for` target with what it iterates, a parameter with
its annotation and default, or "other" (tuple unpacking, `with ... as`, imports,
`global`): a value we do not follow. Nested functions, classes and lambdas are
their own scopes and are not entered.

`reaching(bindings, name, stmt, parents)` narrows that to the binding that
reaches a statement when one plain assignment earlier in the same block (or in
an enclosing block, before the compound statement that holds it) decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from modelint.facts.walk import child_list, push_child_nodes

_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


@dataclass(frozen=True, eq=False)
class Binding:
    kind: str  # "assign" | "for" | "param" | "other"
    value: cst.BaseExpression | None  # assigned value; iterable of a `for`; default of a parameter
    node: cst.CSTNode  # the binding statement (or the Param)
    annotation: cst.BaseExpression | None = None


def scope_bindings(scope: cst.FunctionDef | cst.Module) -> dict[str, list[Binding]]:
    found: dict[str, list[Binding]] = {}

    def add(name: str, binding: Binding) -> None:
        found.setdefault(name, []).append(binding)

    if type(scope) is cst.FunctionDef:
        p = scope.params
        for param in (*p.posonly_params, *p.params, *p.kwonly_params):
            add(param.name.value, Binding("param", param.default, param,
                                          param.annotation.annotation if param.annotation else None))
        for param in (p.star_arg, p.star_kwarg):
            if type(param) is cst.Param:
                add(param.name.value, Binding("other", None, param,
                                              param.annotation.annotation if param.annotation else None))
        body = [scope.body]
    else:
        body = list(scope.body)
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind in (cst.FunctionDef, cst.ClassDef):
            add(node.name.value, Binding("other", None, node))
            continue
        if kind is cst.Lambda or kind in _COMPREHENSIONS:
            continue
        if kind is cst.Assign:
            for target in node.targets:
                _bind_target(target.target, node.value, node, add)
        elif kind is cst.AnnAssign:
            if type(node.target) is cst.Name:
                add(node.target.value, Binding("assign" if node.value is not None else "other", node.value, node,
                                               node.annotation.annotation))
        elif kind is cst.AugAssign:
            _bind_target(node.target, None, node, add)
        elif kind is cst.NamedExpr:
            _bind_target(node.target, node.value, node, add)
        elif kind is cst.For:
            if type(node.target) is cst.Name:
                add(node.target.value, Binding("for", node.iter, node))
            else:
                _bind_target(node.target, None, node, add)
        elif kind is cst.AsName:
            _bind_target(node.name, None, node, add)
        elif kind in (cst.Global, cst.Nonlocal):
            for item in node.names:
                add(item.name.value, Binding("other", None, node))
        elif kind is cst.ImportAlias and node.asname is None:
            name = node.name
            while type(name) is cst.Attribute:
                name = name.value
            if type(name) is cst.Name:
                add(name.value, Binding("other", None, node))
        push_child_nodes(stack, node)
    return found


def _bind_target(target: cst.BaseExpression, value, node, add) -> None:
    if type(target) is cst.Name:
        add(target.value, Binding("assign" if value is not None else "other", value, node))
        return
    if type(target) in (cst.Tuple, cst.List):
        for element in target.elements:
            _bind_target(element.value, None, node, add)
    elif type(target) is cst.StarredElement:
        _bind_target(target.value, None, node, add)


def statement_parents(scope: cst.FunctionDef | cst.Module) -> dict[cst.CSTNode, tuple[tuple, int, cst.CSTNode | None]]:
    """Statement (or small statement) -> (its block, its line's index there, the compound statement owning the block)."""
    out: dict = {}
    stack: list[tuple[cst.CSTNode | None, cst.CSTNode]] = [(None, scope.body if type(scope) is cst.FunctionDef
                                                            else scope)]
    while stack:
        owner, holder = stack.pop()
        for block in _blocks(holder):
            for i, stmt in enumerate(block):
                out[stmt] = (block, i, owner)
                if type(stmt) is cst.SimpleStatementLine:
                    for small in stmt.body:  # `x = x.to(dev)`: what reaches it is decided before its line
                        out[small] = (block, i, owner)
                if type(stmt) not in (cst.SimpleStatementLine, cst.FunctionDef, cst.ClassDef):
                    stack.append((stmt, stmt))
    return out


def _blocks(node: cst.CSTNode) -> list[tuple]:
    """The statement blocks directly inside a compound statement (or a module / indented block)."""
    if type(node) is cst.Module:
        return [tuple(node.body)]
    if type(node) in (cst.IndentedBlock, cst.SimpleStatementSuite):
        return [tuple(node.body)] if type(node) is cst.IndentedBlock else []
    blocks = []
    for name in ("body", "orelse", "finalbody"):
        part = getattr(node, name, None)
        while part is not None:
            if type(part) is cst.IndentedBlock:
                blocks.append(tuple(part.body))
                break
            if type(part) in (cst.If, cst.Else, cst.Finally):  # elif chains, else / finally clauses
                inner = part.body
                if type(inner) is cst.IndentedBlock:
                    blocks.append(tuple(inner.body))
                part = getattr(part, "orelse", None)
                continue
            break
    for handler in getattr(node, "handlers", ()) or ():
        if type(handler.body) is cst.IndentedBlock:
            blocks.append(tuple(handler.body.body))
    for case in getattr(node, "cases", ()) or ():
        if type(case.body) is cst.IndentedBlock:
            blocks.append(tuple(case.body.body))
    return blocks


def reaching(bindings: list[Binding], stmt: cst.CSTNode, parents: dict) -> list[Binding]:
    """The bindings of one name that can reach `stmt`: the last plain assignment before it, if one decides it.

    Walks back through the statement's block, then the blocks around it. A compound
    statement on the way that binds the name somewhere inside leaves the answer open
    (every binding is returned); so does reaching the top of the scope.
    """
    owners = {b.node: b for b in bindings}
    current = stmt
    while current in parents:
        block, index, owner = parents[current]
        for earlier in reversed(block[:index]):
            if type(earlier) is cst.SimpleStatementLine:
                for small in reversed(earlier.body):
                    if small in owners and owners[small].kind == "assign":
                        return [owners[small]]
                    if small in owners:
                        return bindings
            elif any(b.node is earlier or _inside(b.node, earlier) for b in bindings):
                return bindings
        if owner is None:
            return bindings
        current = owner
    return bindings


def _inside(node: cst.CSTNode, container: cst.CSTNode) -> bool:
    stack = [container]
    while stack:
        current = stack.pop()
        if current is node:
            return True
        if isinstance(current, _SCOPES):
            continue
        stack.extend(child_list(current))
    return False


def literal_choices(bindings: dict[str, list[Binding]], name: str, literal) -> list | None:
    """Every value `name` can hold, when each of its bindings gives literals only; else None.

    `phase = "train"`, `for phase in ("train", "val")`, `for phase in phases` with
    `phases = ["train", "val"]`. `literal` maps an expression to its value (or raises
    LookupError for anything else).
    """
    found = bindings.get(name)
    if not found:
        return None
    values: list = []
    try:
        for binding in found:
            if binding.kind == "assign":
                values.append(literal(binding.value))
            elif binding.kind == "for":
                iterated = binding.value
                if type(iterated) is cst.Name:
                    sources = bindings.get(iterated.value) or []
                    if len(sources) != 1 or sources[0].kind != "assign":
                        return None
                    iterated = sources[0].value
                if type(iterated) not in (cst.Tuple, cst.List, cst.Set) or not iterated.elements:
                    return None
                values.extend(literal(element.value) for element in iterated.elements)
            else:
                return None
    except LookupError:
        return None
    return values
