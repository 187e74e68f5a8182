"""Context managers that switch modes: `with eval_mode(model, head):`.

A context manager of the project (its summary says what it does before its `yield`) or
a library's (MONAI's `eval_mode`/`train_mode`) puts the models it is given in a mode
for the body, and restores the modes they had on exit; some also turn off autograd.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.lattice import GradFact, ModeFact
from modelint.facts.names import value_key
from modelint.facts.state import State
from modelint.facts.summaries import context_mode_of


class ModeContexts:
    """Mixed into CallEffects (which provides `flow` and `out`)."""

    def mode_context(self, item: cst.WithItem, state: State) -> list[tuple[str, ModeFact]]:
        """`with eval_mode(model, head):`: the models it switches, with the fact to restore on exit; and the
        grad mode of its body, when the context manager runs it under no_grad."""
        expr = item.item
        if type(expr) is not cst.Call:
            return []
        self.flow.last_unresolved = None
        summary, _ = self.flow.resolve(expr, self.out.function)
        if summary is None and self.flow.last_unresolved is not None:
            self.flow.unresolved.add(self.flow.last_unresolved)  # another file's context manager may say
        library = api.MODE_CONTEXTS.get(self.flow.imports.qualify(expr.func) or "") if summary is None else None
        if (summary is not None and summary.context_grad == "free") or (library is not None and library[1]):
            state.grad = GradFact(free_sites=frozenset({item}))
        switched = context_mode_of(summary, expr) if summary is not None \
            else library[0] if library is not None else None
        if switched is None:
            return []
        restore = []
        for arg in expr.args:
            key = value_key(arg.value)
            if key is None or arg.keyword is not None:
                continue
            key = state.canonical(key)
            restore.append((key, state.fact(key)))
            if switched == "unknown":  # (a mode the caller's argument picks, and we cannot read it)
                state.havoc(key)
            else:
                state.put(key, state.fact(key).switched(switched, expr))
        return restore
