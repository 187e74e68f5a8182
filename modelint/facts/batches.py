"""Is a forward run on the batches of a dataset?

A helper that feeds a parameter each batch a loop draws from data, taken apart into
inputs and labels (`for x, y in loader`, `b[0]` and `b[1]` of each item), is running
a model over a dataset: a callback or a transform gets one value, or another
forward's output. Data flows from the loop's target to the call through statements
that only prepare it (moved, cast, wrapped by a library function).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.walk import iter_nodes


def over_batches(facts, forward, batch_only: bool = False) -> bool:
    """Is the forward run on each batch a loop draws from a dataset (`for x, y in loader`: inputs
    with their labels or indices), on the inputs themselves or those moved and cast (`x = x.to(device)`),
    not on another forward's output? With `batch_only`, on nothing but the batch (a callable also
    handed a state and a codec is no model's forward)."""
    site = facts.call_sites.get(forward.call)
    return site is not None and call_fed_batches(facts, forward.call, site.site, batch_only)


def call_fed_batches(facts, call: cst.Call, site, batch_only: bool = False) -> bool:
    """The same for a call at `site` (`facts`: anything with the file's `imports`)."""
    inputs = set().union(*(_data_names(arg.value) for arg in call.args))
    for loop in site.guards:
        if type(loop) is not cst.For or destructured_batch(loop) is None:
            continue
        batch = batch_names(facts, loop)
        # Every input the loop makes is part of the batch: a loss fed the model's output is not a model.
        if inputs & batch and not (inputs & _assigned_in(loop.body)) - batch and (not batch_only or inputs <= batch):
            return True
    return False


_CONSTANTS = frozenset({"True", "False", "None"})
_METADATA = frozenset({"size", "shape", "dim", "ndim", "ndimension", "numel", "dtype", "device", "__len__"})


def _data_names(expr: cst.BaseExpression) -> set[str]:
    """The names whose values reach `expr`: not those only measured (`x.size(-1)`, `len(x)`, `x.shape`),
    which hand a length, not the data (`get_out_len(torch.as_tensor(wav.size(-1)))`)."""
    if type(expr) is cst.Name:
        return set() if expr.value in _CONSTANTS else {expr.value}  # (`return_feature=True` hands no data)
    if type(expr) is cst.Attribute:
        return set() if expr.attr.value in _METADATA else _data_names(expr.value)
    if type(expr) is cst.Call:
        func = expr.func
        if (type(func) is cst.Attribute and func.attr.value in _METADATA) \
                or (type(func) is cst.Name and func.value == "len"):
            return set()
        names = _data_names(func.value) if type(func) is cst.Attribute else set()
        for arg in expr.args:
            names |= _data_names(arg.value)
        return names
    return _names_below(expr)


def _names_below(node: cst.CSTNode) -> set[str]:
    names: set[str] = set()
    for child in node.children:
        names |= _data_names(child) if isinstance(child, cst.BaseExpression) else _names_below(child)
    return names


def _assigned_in(body: cst.CSTNode) -> set[str]:
    names: set[str] = set()
    for node in iter_nodes(body):
        targets = [t.target for t in node.targets] if type(node) is cst.Assign else \
            [node.target] if type(node) in (cst.AugAssign, cst.AnnAssign, cst.For) else []
        for target in targets:
            names.update(n.value for n in iter_nodes(target) if type(n) is cst.Name)
    return names


def destructured_batch(loop: cst.For) -> cst.BaseExpression | None:
    """The loop's target when each item is taken apart into inputs and labels (`x, y`; `i, (x, y)` over
    `enumerate`; `b[0]` and `b[1]`, `batch["image"]` and `batch["mask"]` in the body), else None."""
    target = loop.target
    iterable = loop.iter
    if type(iterable) is cst.Call and type(iterable.func) is cst.Attribute and iterable.func.attr.value == "items" \
            and not iterable.args:
        return None  # (`for name, score in scores.items()`: a dict's entries, no dataset's batches)
    if type(iterable) is cst.Call and type(iterable.func) is cst.Name and iterable.func.value == "enumerate" \
            and type(target) in (cst.Tuple, cst.List) and len(target.elements) == 2:
        target = target.elements[1].value  # the index is no data
    if type(target) in (cst.Tuple, cst.List) and len(target.elements) >= 2:
        return target
    if type(target) is cst.Name:
        parts = {cst.Module(body=[]).code_for_node(node.slice[0]) for node in iter_nodes(loop.body)
                 if type(node) is cst.Subscript and type(node.value) is cst.Name
                 and node.value.value == target.value and len(node.slice) == 1
                 and type(node.slice[0].slice) is cst.Index
                 and type(node.slice[0].slice.value) in (cst.Integer, cst.SimpleString)}
        if len(parts) >= 2:
            return target
    return None


def batch_names(facts, loop: cst.For) -> set[str]:
    """The loop's targets, and names the body assigns from them by preparing data only: method calls on
    them (`.to()`, `.cuda()`) and library functions (`Variable(x)`, `torch.stack(xs)`)."""
    batch = {n.value for n in iter_nodes(destructured_batch(loop) or loop.target) if type(n) is cst.Name}
    for node in iter_nodes(loop.body):
        if type(node) is not cst.Assign:
            continue
        names = {n.value for n in iter_nodes(node.value) if type(n) is cst.Name}
        if not names & batch:
            continue
        if all(prepares(facts, call, batch) for call in iter_nodes(node.value) if type(call) is cst.Call):
            for target in node.targets:
                batch.update(n.value for n in iter_nodes(target.target) if type(n) is cst.Name)
    return batch


def prepares(facts, call: cst.Call, batch: set[str]) -> bool:
    """A call that only prepares data: a method of the batch (`x.cuda()`), or a chain that starts at a
    library (`torch.from_numpy(b[0]).unsqueeze(0)`, `Variable(x)`), not a callable of the project."""
    root = call.func
    while type(root) in (cst.Attribute, cst.Call, cst.Subscript):
        root = root.func if type(root) is cst.Call else root.value
    if type(root) is not cst.Name:
        return False
    return root.value in batch or (root.value in facts.imports.bindings and root is not call.func) \
        or facts.imports.qualify(call.func) is not None
