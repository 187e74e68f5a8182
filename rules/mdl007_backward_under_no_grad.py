from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.names import dotted
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
                if site is not None and _error_expected(facts, site.site):
                    continue  # `try: z.backward() except RuntimeError as e: print(e)`: a demonstration
                yield Report(
                    step.call,
                    f"`{step.receiver}` was computed under no_grad and has no graph: `{step.receiver}.backward()` "
                    f"raises RuntimeError; compute it outside the no_grad block",
                    stmt=site.site.stmt if site else None,
                    notes=((step.grad_free_region, f"`{step.receiver}` is computed in this grad-free region"),),
                )


_CATCHING = frozenset({"RuntimeError", "Exception", "BaseException"})


def _error_expected(facts: FileFacts, site) -> bool:
    """Is the statement in the body of a `try` whose handlers catch the RuntimeError backward() raises?"""
    _bindings, parents = facts.receivers.scope(site.function)
    stmt = site.stmt
    for _ in range(64):
        found = parents.get(stmt)
        if found is None:
            return False
        block, _index, owner = found
        if type(owner) is cst.Try and block is owner.body.body:
            for handler in owner.handlers:
                caught = handler.type
                names = [e.value for e in caught.elements] if type(caught) is cst.Tuple else [caught]
                if caught is None or any((dotted(n) or "").rsplit(".", 1)[-1] in _CATCHING for n in names):
                    return True
        if owner is None:
            return False
        stmt = owner
    return False
