"""Names bound to a grad context a test picks, and what entering them does.

`ctx = nullcontext() if training else torch.no_grad()`, then `with ctx:`; or the context classes themselves,
`grad_context = torch.enable_grad if is_train else torch.no_grad`, then `with grad_context():`. Entering the
name does what the branch taken does: "free", "enabled", "keep" (a context that changes nothing), or
"unknown" when the test is not decided here (autograd on or off as the author chose, on each path).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.phases import decide


class GradChoices:
    """Mixed into Interpreter: `self.grad_choices`, `self.constants` and `self.flow` come from there."""

    def _remember_grad_choice(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if type(target) is not cst.Name:
            return
        self.grad_choices.pop(target.value, None)
        if type(value) is not cst.IfExp:
            return
        effects = [self._context_effect(branch) for branch in (value.body, value.orelse)]
        if None in effects:
            return
        decided = decide(value.test, self.constants)
        if decided is not None:
            self.grad_choices[target.value] = effects[0] if decided else effects[1]
        else:
            self.grad_choices[target.value] = effects[0] if effects[0] == effects[1] else "unknown"

    def _chosen_context(self, item: cst.BaseExpression) -> str | None:
        """`with ctx:` for `ctx = nullcontext() if training else torch.no_grad()`, or `with ctx():` for `ctx =
        torch.enable_grad if training else torch.no_grad` (the context classes, entered once made)."""
        item = item.func if type(item) is cst.Call and not item.args else item
        return self.grad_choices.get(item.value) if type(item) is cst.Name else None

    def _context_effect(self, expr: cst.BaseExpression) -> str | None:
        """What entering `expr` (or what it makes, a context class) does to autograd: a grad-mode context, or
        one that changes nothing."""
        made = expr.func if type(expr) is cst.Call else expr
        return "keep" if self.flow.imports.qualify(made) in api.NEUTRAL_CONTEXTS else self.flow.grad_effect(expr)
