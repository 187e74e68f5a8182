from __future__ import annotations

from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.rule import NodeEdit, NodeFix, Report, Rule
from modelint.textutil import code_of


class ModeMethodNotCalled(Rule):
    """
    ## What it does
    Finds `model.eval` or `model.train` written as a statement without `()`.

    ## Why is this bad?
    Without the call the statement only looks the method up and discards it: the
    model keeps its current mode. `model.eval` before evaluation leaves Dropout and
    BatchNorm in training mode; `model.train` after it leaves training in eval mode.

    ## Example
    ```python
    model.eval
    with torch.no_grad():
        preds = model(x)
    ```

    ## Use instead
    ```python
    model.eval()
    ```

    ## Fix safety
    Safe: adding `()` does what the line was written to do.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval
    """

    code = "MDL005"
    name = "mode-method-not-called"
    severity = "error"
    summary = "`model.eval` / `model.train` without `()` does nothing."
    fix_safety = "safe"
    fixtures = "MDL005_mode_method_not_called"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for node, site in facts.collector.expression_statements:
            value = node.value
            if type(value) is cst.Attribute and value.attr.value in ("eval", "train"):
                text = code_of(value)
                mode = "eval" if value.attr.value == "eval" else "training"
                yield Report(
                    node,
                    f"`{text}` without `()` only looks the method up: the model does not switch to {mode} mode; "
                    f"call `{text}()`",
                    stmt=site.stmt,
                    fix=NodeFix(f"Call `{text}()`", (NodeEdit(value, "()", "after"),)),
                )
