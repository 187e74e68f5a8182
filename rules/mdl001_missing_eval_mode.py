from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.finding import Location, Related
from modelint.facts.flow import is_train_site, names_evaluation_data
from modelint.rule import NodeEdit, NodeFix, Report, Rule, evidence


class MissingEvalMode(Rule):
    """
    ## What it does
    Finds evaluation and inference (a forward pass under `torch.no_grad()` /
    `torch.inference_mode()`, in a function that evaluates, validates, tests or
    predicts, or in a loop over validation/test data) that runs a model still in
    training mode: it was built or put in `train()` on every path, and nothing set
    `eval()` since.

    ## Why is this bad?
    In training mode Dropout zeroes random activations and BatchNorm normalises with
    the batch's own statistics and overwrites its running statistics. Metrics come
    out noisy and too low, predictions change from one run to the next, and every
    evaluation batch silently corrupts the BatchNorm statistics the model will use
    later. `torch.no_grad()` does not change this: it only switches off autograd.

    ## Example
    ```python
    model.train()
    for x, y in train_loader:
        ...
    with torch.no_grad():
        for x, y in val_loader:
            logits = model(x)
    ```

    ## Use instead
    ```python
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            logits = model(x)
    model.train()
    ```

    ## Fix safety
    Unsafe: inserting `model.eval()` is right for evaluation, but code that
    deliberately samples in training mode (MC dropout) must keep it.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval
    - https://pytorch.org/docs/stable/notes/autograd.html#locally-disable-grad-doc
    """

    code = "MDL001"
    name = "missing-eval-mode"
    severity = "error"
    summary = "Evaluation runs a model that is still in training mode (Dropout/BatchNorm active)."
    fix_safety = "unsafe"
    fixtures = "MDL001_missing_eval_mode"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        flow_facts = facts.flow
        for flow in flow_facts.flows:
            trains_here = flow.trains or (
                flow.function.uses_gradients if flow.function else facts.collector.module_uses_gradients
            )
            for forward in flow.forwards.values():
                mode = forward.mode
                if not mode.definitely_train or not mode.dependence.may_depend:
                    continue
                if not mode.certain and not facts.modules.is_module_name(forward.key, forward.function):
                    continue
                if forward.grad.definitely_free:
                    context = "under no_grad"
                elif forward.in_evaluation_loop:
                    context = "over validation/test data"
                elif not trains_here and facts.is_evaluation_function(forward.function):
                    context = f"in {forward.function.name}()"
                else:
                    continue
                explicit = any(is_train_site(site) for site in mode.train_sites)
                if explicit and not trains_here:
                    continue  # train() set on purpose for sampling (MC dropout, TTA)
                site = facts.call_sites.get(forward.call)
                yield Report(
                    forward.call,
                    f"`{forward.key}` is evaluated {context} while still in training mode: {_CONSEQUENCE}; "
                    f"call `{forward.key}.eval()` before evaluating",
                    stmt=site.site.stmt if site else None,
                    fix=_insert_eval(facts, forward, site, trains_here) if site else None,
                    **evidence(mode.train_sites, f"`{forward.key}` is in training mode from here"),
                )
            for helper in flow.helper_evaluations.values():
                if helper.explicit_train_without_training and not trains_here:
                    continue
                use = helper.use
                caller = f"{helper.caller.name}()" if helper.caller is not None else "the module-level script"
                callee = helper.callee.qualname
                context = use.context or "under the caller's no_grad"
                context = "" if context.startswith("in ") else f" {context}"
                message = (f"`{use.param}` is evaluated{context} in `{callee}()`, but {caller} passes "
                           f"`{helper.key}` in training mode: {_CONSEQUENCE}; call `{helper.key}.eval()` "
                           f"before `{callee}(...)` or `{use.param}.eval()` inside it")
                caller_note = f"{caller} calls `{callee}()` with `{helper.key}` in training mode"
                proof = evidence(helper.mode.train_sites, f"`{helper.key}` is in training mode from here")
                node = use.node if use.path == facts.path else None
                if node is not None:
                    yield Report(node, message, notes=((helper.call, caller_note), *proof["notes"]),
                                 related=proof["related"])
                else:
                    where = facts.locate(helper.call)
                    related = (Related(facts.path, Location(where[0], where[1]), caller_note),) if where else ()
                    yield Report(None, message, related=related + proof["related"], elsewhere=(use.path, use.call))


def _insert_eval(facts: FileFacts, forward, site, trains_here: bool) -> NodeFix | None:
    """`model.eval()` above the evaluation region (the loop over validation data, else the
    no_grad block, else the statement itself), and `model.train()` below it when it sits in
    a loop of a function that goes on training."""
    guards = list(site.site.guards)
    region = site.site.stmt
    with_statements = {item: where.stmt for item, where in facts.collector.with_items}
    loops = [g for g in guards if isinstance(g, cst.For) and names_evaluation_data(g.iter)]
    free_blocks = [with_statements[f] for f in forward.grad.free_sites if f in with_statements]
    if loops:
        region = loops[0]
    elif free_blocks and free_blocks[0] in guards:
        region = free_blocks[0]
    if region is None or isinstance(region, (cst.FunctionDef, cst.ClassDef)):
        return None
    enclosing = guards[: guards.index(region)] if region in guards else guards
    key = forward.key
    edits = [NodeEdit(region, f"{key}.eval()", "line_before")]
    if trains_here and any(isinstance(g, (cst.For, cst.While)) for g in enclosing):
        edits.append(NodeEdit(region, f"{key}.train()", "line_after"))
    return NodeFix(f"Call `{key}.eval()` before the evaluation", tuple(edits), applicability="unsafe")


_CONSEQUENCE = "Dropout stays random and BatchNorm uses batch stats and overwrites its running stats"
