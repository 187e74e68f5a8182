from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts import torch_api as api
from modelint.rule import NodeEdit, NodeFix, Report, Rule
from modelint.textutil import code_of


class IneffectiveGradModeCall(Rule):
    """
    ## What it does
    Finds `torch.no_grad()`, `torch.enable_grad()` and `torch.inference_mode()` called
    as a bare statement, and `with torch.no_grad:` written without the call.

    ## Why is this bad?
    These are context managers: calling one as a statement creates it and throws it
    away, so autograd stays exactly as it was and the code below still builds a
    graph. `with torch.no_grad:` (no parentheses) raises `TypeError` when the block
    is entered. (`torch.set_grad_enabled(False)` is different: it works as a
    statement, so it is not reported.)

    ## Example
    ```python
    torch.no_grad()
    preds = model(x)
    ```

    ## Use instead
    ```python
    with torch.no_grad():
        preds = model(x)
    ```

    ## Fix safety
    Safe for `with torch.no_grad:` (add the call). A bare statement needs the code it
    was meant to cover moved into a `with` block, which a person must choose.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    """

    code = "MDL004"
    name = "ineffective-grad-mode-call"
    severity = "error"
    summary = "A grad-mode context manager used as a statement (does nothing) or without its call (TypeError)."
    fix_safety = "safe"
    fixtures = "MDL004_ineffective_grad_mode_call"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        imports = facts.imports
        for node, site in facts.collector.expression_statements:
            value = node.value
            target = value.func if type(value) is cst.Call else value
            qualified = imports.qualify(target)
            if qualified in api.GRAD_MODE_CONTEXT_MANAGERS:
                text = code_of(value)
                fix = None
                if type(site.stmt) is cst.SimpleStatementLine and len(site.stmt.body) == 1:
                    fix = NodeFix(f"Remove `{text}` (it does nothing)", (NodeEdit(site.stmt, "", "delete_lines"),))
                what = "creates a context manager and drops it" if type(value) is cst.Call else "does nothing"
                yield Report(
                    node,
                    f"`{text}` as a statement {what}: autograd is unchanged; "
                    f"use `with {code_of(target)}():` around the code it should cover",
                    stmt=site.stmt,
                    fix=fix,
                )
        for item, site in facts.collector.with_items:
            if type(item.item) in (cst.Name, cst.Attribute):
                qualified = imports.qualify(item.item)
                if qualified in api.GRAD_MODE_CONTEXT_MANAGERS or qualified in api.SET_GRAD_ENABLED:
                    text = code_of(item.item)
                    if qualified in api.SET_GRAD_ENABLED:
                        fix = None  # the mode to pass is the author's choice
                    else:
                        fix = NodeFix(f"Call `{text}()`", (NodeEdit(item.item, "()", "after"),))
                    yield Report(
                        item,
                        f"`with {text}:` without the call raises TypeError when the block is entered; "
                        f"write `with {text}():`",
                        stmt=site.stmt,
                        fix=fix,
                    )
