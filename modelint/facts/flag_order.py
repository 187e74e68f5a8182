"""A flag normalised once, before the code that tests it.

`opt = parser.parse_args()`, then `if opt.cls_weight == 0: opt.with_cls = False` once,
before any model exists: two later tests of `opt.with_cls` still agree, as they do for a
flag nothing rebinds (modelint.facts.callgraph.unchanging_flag). Module-level code runs
in the order it is written, and a function defined after those lines can only run after
them; a rebinding in a loop or in a function may come between the tests.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import dotted
from modelint.facts.walk import iter_nodes

_DEFINITIONS = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_LOOPS = (cst.For, cst.While)


def rebound_only_before(flow, flag: str, nodes) -> bool:
    """Is every binding of `flag` (and of the name it hangs on) a module-level statement outside any loop,
    written before each of `nodes` (or before the definition holding it)?"""
    top_index, bindings = _module_order(flow)
    root = flag.split(".")[0]
    rebinds = [*bindings.get(flag, ()), *(bindings.get(root, ()) if root != flag else ())]
    if not rebinds or any(index is None for index in rebinds):
        return False
    last = max(rebinds)
    return bool(nodes) and all(top_index.get(node, -1) > last for node in nodes)


def set_only_where_not_run(flow, flag: str, nodes) -> bool:
    """`self.text_encoder`, set by `__init__` or by methods the function holding `nodes` never runs (directly
    or through the file's functions it calls: `build()` called by the object's creator): the same at each of
    `nodes`, as a flag nothing rebinds is."""
    sites = [flow.site_of_call[node] for node in nodes if node in flow.site_of_call]
    functions = {site.site.function for site in sites}
    if not sites or None in functions:
        return False
    callees = flow.__dict__.get("_callees_by_caller")
    if callees is None:
        callees = flow.__dict__["_callees_by_caller"] = {}
        for call, callee in flow._local_callees.items():
            callees.setdefault(flow.site_of_call[call].site.function, set()).add(callee)
    run, stack = set(), list(functions)
    while stack:  # (the functions the tests' function may run, through the file's calls)
        function = stack.pop()
        if function not in run:
            run.add(function)
            stack.extend(callees.get(function, ()))
    return not any(assign.site.function in run for assign in flow.collector.attribute_assigns
                   if dotted(assign.target) == flag)


def _module_order(flow) -> tuple[dict, dict]:
    """node -> the index of the top-level statement holding it; dotted name -> the top-level index of each of its
    bindings (None for one in a loop or a definition). Built once per file, when a rebound flag is tested."""
    cached = flow.__dict__.get("_module_order")
    if cached is not None:
        return cached
    top_index: dict = {}
    bindings: dict[str, list] = {}
    for index, top in enumerate(flow.collector.module_node.body):
        nodes = list(iter_nodes(top))
        nested = set()  # the nodes in a loop or a definition: their bindings may run any number of times, any time
        for node in nodes:
            top_index[node] = index
            if isinstance(node, _DEFINITIONS) or isinstance(node, _LOOPS):
                if node not in nested:
                    nested.update(iter_nodes(node))
        if isinstance(top, _DEFINITIONS):
            nested.update(nodes)
        for node in nodes:
            for target in bound_targets(node):
                name = dotted(target)
                if name is not None:
                    bindings.setdefault(name, []).append(None if node in nested else index)
    flow.__dict__["_module_order"] = (top_index, bindings)
    return top_index, bindings


def bound_targets(node: cst.CSTNode) -> list:
    """The names and attribute chains an assignment, augmented or annotated assignment, `for` or `as` binds,
    tuples and starred elements unpacked."""
    kind = type(node)
    if kind is cst.Assign:
        stack = [target.target for target in node.targets]
    elif kind in (cst.AugAssign, cst.AnnAssign, cst.For):
        stack = [node.target]
    elif kind is cst.AsName:
        stack = [node.name]
    else:
        return []
    out = []
    while stack:
        target = stack.pop()
        if type(target) in (cst.Tuple, cst.List):
            stack.extend(element.value for element in target.elements)
        elif type(target) is cst.StarredElement:
            stack.append(target.value)
        else:
            out.append(target)
    return out
