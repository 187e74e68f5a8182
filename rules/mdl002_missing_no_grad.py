from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.flow import grad_effect
from modelint.rule import NodeEdit, NodeFix, Report, Rule, evidence


class MissingNoGrad(Rule):
    """
    ## What it does
    Finds a forward pass of a model in eval mode, for evaluation, that runs with
    autograd on: no `torch.no_grad()` / `torch.inference_mode()` region around it, no
    grad-disabling decorator, and no gradient use (`.backward()`,
    `torch.autograd.grad`, `requires_grad_()`) in the surrounding function.

    ## Why is this bad?
    `model.eval()` does not disable autograd. Every forward pass still records the
    graph and keeps every intermediate activation alive until the output is freed:
    evaluation uses several times the memory and runs slower, and large batches run
    out of memory for no reason.

    ## Example
    ```python
    model.eval()
    for x, y in test_loader:
        correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Use instead
    ```python
    model.eval()
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Fix safety
    Unsafe: code that needs gradients of the outputs (saliency maps, adversarial
    examples) must keep autograd on.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    - https://pytorch.org/docs/stable/generated/torch.autograd.grad_mode.inference_mode.html
    """

    code = "MDL002"
    name = "missing-no-grad"
    severity = "warning"
    summary = "Evaluation forward in eval mode builds an autograd graph nobody uses."
    fix_safety = "unsafe"
    fixtures = "MDL002_missing_no_grad"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for flow in facts.flow.flows:
            function = flow.function
            if function is not None:
                if function.uses_gradients or (function.cls is not None and facts.modules.is_module_class(function.cls)):
                    continue  # a module's method feeds its caller's graph
                if facts.is_test_function(function):
                    continue  # a unit test's forward is a check, not an evaluation loop
                callers = facts.flow.call_grad.get(function.name)
            else:
                if facts.collector.module_uses_gradients:
                    continue
                callers = None
            for forward in flow.forwards.values():
                if not forward.mode.definitely_eval or forward.grad.free_sites:
                    continue
                if forward.grad.unknown and callers is not None and (callers.free_sites or callers.unknown):
                    continue  # a caller in this file may run it under no_grad
                site = facts.call_sites.get(forward.call)
                if site is None or _inside_enable_grad(facts, site):
                    continue
                fix = None
                torch_name = next((k for k, v in facts.imports.bindings.items() if v == "torch"), None)
                if function is not None and torch_name and facts.is_evaluation_function(function) \
                        and function.outer is None:
                    fix = NodeFix(f"Decorate `{function.name}` with `@{torch_name}.no_grad()`",
                                  (NodeEdit(function.node, f"@{torch_name}.no_grad()", "line_before"),),
                                  applicability="unsafe")
                yield Report(
                    forward.call,
                    f"`{forward.key}` runs in eval mode with autograd on: the graph and every activation are kept "
                    f"for a backward pass that never comes; wrap the evaluation in `with torch.no_grad():`",
                    stmt=site.site.stmt,
                    fix=fix,
                    **evidence(forward.mode.eval_sites, f"`{forward.key}` is put in eval mode here"),
                )


def _inside_enable_grad(facts: FileFacts, site) -> bool:
    for guard in site.site.guards:
        if isinstance(guard, cst.With) and any(grad_effect(facts.imports, i.item) in ("enabled", "unknown")
                                               for i in guard.items):
            return True
    return False
