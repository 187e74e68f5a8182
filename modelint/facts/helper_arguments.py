"""What a called helper does with the values it is handed, from its summary.

A helper of this file, or a module-level function of another (`to_np(out)` after `from utils import *`,
`U.save_images(fake, path)` after `from . import common as U`), as its summary says: which arguments it
back-propagates (`backward(total_loss, scaler)`), hands on to a library function (`self._postprocess(out)`
running NMS), only evaluates (`self.save_grid(samples)`, `to_np(q)`) or hands to a callable it holds
(`self._optimizer_hook(losses)`, which may train on them). The intent of forwards (modelint.facts.intent)
reads it for the outputs it finds in a call's arguments.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.handed_models import calls_binding
from modelint.facts.summary_effects import arguments_of
from modelint.summary import FunctionSummary


def argument_uses(flow, enclosing, call: cst.Call) -> tuple[list, list, list, list, list] | None:
    """(trained, handed, evaluated, hooked, cut): the argument expressions of `call` by what its callee does
    with them; `cut`, those whose graph its result does not carry, and of the trained ones, those whose graph
    its backward does not reach (detached first). None: not a call we have a summary of."""
    if call in flow.local_calls:
        summary, _receiver = flow.resolve(call, enclosing)
    else:
        summary = _imported_helper(flow, enclosing, call)
    if summary is None:
        return None
    trained, handed, evaluated, hooked, cut = [], [], [], [], []
    for name, value in arguments_of(summary, call).items():
        if name in summary.cuts or name in summary.backprops_cut:
            cut.append(value)
        if name in summary.backprops:
            trained.append(value)
        elif name in summary.hands_on and (name in summary.transforms or name not in summary.evaluates):
            (handed if name in summary.transforms else hooked).append(value)
        elif name in summary.evaluates:
            # (handed on too, to a call whose result it only turns into metrics: `utils.accuracy(logits, y)`,
            # then `prec1.item()`, read as an evaluation where it is written inline)
            evaluated.append(value)
    return trained, handed, evaluated, hooked, cut


def _imported_helper(flow, enclosing, call: cst.Call) -> FunctionSummary | None:
    """The summary of another file's module-level function that `call` runs, as the index knows it (None in
    the first pass). (Its methods' summaries say nothing of their arguments: see modelint.facts.export.)"""
    func = call.func
    if type(func) not in (cst.Name, cst.Attribute):
        return None
    asked = flow.last_unresolved  # (the reference a call being evaluated around this one waits on)
    if type(func) is cst.Attribute and flow.imports.qualify(func) is None:
        # (a method of a value, not a function a module defines: of an object of another file's class, or none)
        summary = _method_of_imported_object(flow, enclosing, func) if type(func.value) is cst.Name else None
        receiver = None
    else:
        summary, receiver = flow.resolve(call, enclosing)
    flow.last_unresolved = asked
    if summary is None or receiver is not None:
        return None
    return summary


def _method_of_imported_object(flow, enclosing, func: cst.Attribute) -> FunctionSummary | None:
    """`meter.update(out["loss"], n)` with `meter = LossMeter()`, a plain class another file of the project
    defines: that method, as its file summarises it."""
    bound = calls_binding(flow, enclosing, func.value.value)
    classes = {flow.imports.qualify(value.func) for value in bound}
    if len(classes) != 1 or None in classes:
        return None
    qualified = next(iter(classes))
    if flow.imports.is_torch_name(qualified) or not qualified.rpartition(".")[2][:1].isupper():
        return None
    summary = flow.resolve_method_of(qualified, func.attr.value)
    if summary is None:
        flow.ask_the_index_later()  # (what the method does with what it is handed)
        return None
    # (no module: a module's method runs its layers on what it is handed, which its forwards say)
    return summary if flow.index.resolve_class(qualified, flow.path) is None else None
