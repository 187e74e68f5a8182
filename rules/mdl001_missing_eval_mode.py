from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.rule import Report, Rule


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
        for flow in facts.flow.flows:
            trains_here = bool(flow.steps) or (
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
                elif facts.is_evaluation_function(forward.function):
                    context = f"in {forward.function.name}()"
                else:
                    continue
                explicit = [site for site in mode.train_sites if _is_train_call(site)]
                if explicit and not trains_here:
                    continue  # train() set on purpose for sampling (MC dropout, TTA)
                site = facts.call_sites.get(forward.call)
                notes = tuple((node, f"`{forward.key}` is in training mode from here") for node in
                              sorted(mode.train_sites, key=id)[:1])
                yield Report(
                    forward.call,
                    f"`{forward.key}` is evaluated {context} while still in training mode: Dropout stays random and "
                    f"BatchNorm uses batch stats and overwrites its running stats; call `{forward.key}.eval()` "
                    f"before evaluating",
                    stmt=site.site.stmt if site else None,
                    notes=notes,
                )


def _is_train_call(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "train"
