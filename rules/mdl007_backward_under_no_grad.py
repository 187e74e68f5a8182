from __future__ import annotations

from typing import Iterator

from modelint.facts import FileFacts
from modelint.rule import Report, Rule


class BackwardUnderNoGrad(Rule):
    """
    ## What it does
    Finds `loss.backward()` on a value that was computed inside a grad-free region
    (`with torch.no_grad():`, `torch.inference_mode()`, `set_grad_enabled(False)`).

    ## Why is this bad?
    Inside the region autograd records nothing, so the loss has no graph and
    `requires_grad=False`: `backward()` raises `RuntimeError: element 0 of tensors
    does not require grad and does not have a grad_fn`. The usual cause is a
    `no_grad` block widened to cover the loss computation, or `eval()` confused with
    `no_grad()`.

    ## Example
    ```python
    with torch.no_grad():
        logits = model(x)
        loss = criterion(logits, y)
    loss.backward()
    ```

    ## Use instead
    ```python
    logits = model(x)
    loss = criterion(logits, y)
    loss.backward()
    ```

    ## Fix safety
    None: which statements belong inside the region is for a person to decide.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    - https://pytorch.org/docs/stable/notes/autograd.html
    """

    code = "MDL007"
    name = "backward-under-no-grad"
    severity = "error"
    summary = "backward() on a loss computed under no_grad raises RuntimeError."
    fixtures = "MDL007_backward_under_no_grad"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for flow in facts.flow.flows:
            for step in flow.steps.values():
                if step.kind != "backward" or step.grad_free_region is None:
                    continue
                site = facts.call_sites.get(step.call)
                yield Report(
                    step.call,
                    f"`{step.receiver}` was computed under no_grad and has no graph: `{step.receiver}.backward()` "
                    f"raises RuntimeError; compute it outside the no_grad block",
                    stmt=site.site.stmt if site else None,
                    notes=((step.grad_free_region, f"`{step.receiver}` is computed in this grad-free region"),),
                )
