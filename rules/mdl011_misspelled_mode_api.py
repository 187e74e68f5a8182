from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts import torch_api as api
from modelint.facts.names import dotted, literal_value
from modelint.rule import NodeEdit, NodeFix, Report, Rule
from modelint.textutil import code_of, edit_distance


class MisspelledModeApi(Rule):
    """
    ## What it does
    Finds near misses of the mode and grad APIs: `model.trian()`, `model.evel()`,
    `model.evaluate()` on an `nn.Module` (Keras habit), `model.zero_grads()`,
    `torch.zero_grad()`, `torch.nograd()`, `torch.no_grads()`, `with torch.no_gard():`.
    Only names that do not exist are reported: a class of yours that defines
    `evaluate()` is left alone.

    ## Why is this bad?
    The call raises `AttributeError` the first time it runs — often after hours of
    training, at the first validation. Worse, in a code path that rarely runs, the
    mode is never switched at all. `torch.zero_grad` does not exist: gradients are
    reset by `optimizer.zero_grad()` or `model.zero_grad()`.

    ## Example
    ```python
    model.trian()
    with torch.zero_grad():
        val_loss = evaluate(model)
    ```

    ## Use instead
    ```python
    model.train()
    with torch.no_grad():
        val_loss = evaluate(model)
    ```

    ## Fix safety
    Safe: the replacement is the only existing API within the edit distance. Unsafe for
    `x.evaluate()` on a model whose class is not known from end to end (reported because it
    takes no data, its result is dropped and `x` then runs a forward): that class may define
    `evaluate()` in code this run cannot see.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    """

    code = "MDL011"
    name = "misspelled-mode-api"
    severity = "error"
    summary = "A misspelled or non-existent mode/grad API (`model.trian()`, `torch.zero_grad()`)."
    fix_safety = "safe"
    fixtures = "MDL011_misspelled_mode_api"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        yield from self._misspelled_receivers(facts)
        defined = {name for cls in facts.collector.classes for name in cls.methods}
        defined |= {function.name for function in facts.collector.functions}
        for site in facts.collector.calls:
            call = site.node
            qualified = site.qualified
            if qualified is not None and qualified.startswith("torch.") and qualified.count(".") == 1:
                name = qualified.split(".", 1)[1]
                meant = facts.misspelled_torch_calls.get(call)
                if meant is not None:
                    fix = None
                    if meant.startswith("torch.") and type(call.func) is cst.Attribute:
                        fix = NodeFix(f"Replace with `{meant}`",
                                      (NodeEdit(call.func.attr, meant.split(".", 1)[1], "replace"),))
                    yield Report(call, f"`torch.{name}` does not exist (AttributeError at runtime); "
                                       f"did you mean `{meant}`?", stmt=site.site.stmt, fix=fix)
                continue
            func = call.func
            if type(func) is not cst.Attribute:
                continue
            name = func.attr.value
            if name in api.MODULE_METHODS or (name in defined and name not in api.MODULE_CONFUSIONS):
                continue  # a method some class here defines is no typo (`evaluate` is checked on the receiver)
            meant = _module_meant(name)
            if meant is None:
                continue
            facts_of = facts.receivers.of(func.value, site.site.function, site.site.stmt)
            if name in api.MODULE_CONFUSIONS:
                # `evaluate` is a real method of many frameworks' models, trainers and strategies:
                # only a class known from end to end shows it is missing, or the way it is used.
                certain = facts_of.lacks(name)
                wrong = certain or (facts_of.module is not False and name not in facts_of.defines
                                    and _switch_before_forward(facts, site))
            else:
                # (the mode APIs take a flag at most: `self.zero_pad(x)` hands a tensor to a layer of its own)
                wrong = certain = facts_of.module is True and name not in facts_of.defines \
                    and all(literal_value(arg.value) in (True, False, None) for arg in call.args)
            if wrong:
                receiver = dotted(func.value) or code_of(func.value)
                # A class not known from end to end may define the method where this file cannot see.
                fix = NodeFix(f"Replace with `{receiver}.{meant}()`", (NodeEdit(func.attr, meant, "replace"),),
                              "safe" if certain else "unsafe")
                yield Report(call, f"`{receiver}.{name}()` is not an nn.Module method (AttributeError at runtime); "
                                   f"did you mean `{receiver}.{meant}()`?", stmt=site.site.stmt, fix=fix)

    def _misspelled_receivers(self, facts: FileFacts) -> Iterator[Report]:
        """`mode.train()` where no `mode` exists anywhere in the file and a model `model` does: a NameError
        at the first epoch, and the model the author meant is never switched."""
        unbound = facts.unbound_mode_receivers
        if not unbound:
            return
        bound = facts.bound_names
        for site in facts.collector.calls:
            if site.node not in unbound:
                continue
            func = site.node.func
            name = func.value.value
            if len(name) < 3:
                continue
            limit = 1 if len(name) <= 5 else 2
            meant = sorted(other for other in bound if abs(len(other) - len(name)) <= limit
                           and edit_distance(name, other) <= limit
                           and facts.modules.is_module_name(other, site.site.function))
            if len(meant) != 1:
                continue  # no model, or several, near that name: not ours to guess
            call = f"{meant[0]}.{func.attr.value}()"
            yield Report(site.node, f"`{name}` is not defined anywhere in this file: `{name}.{func.attr.value}()` "
                                    f"raises NameError and `{meant[0]}` never changes mode; did you mean `{call}`?",
                         stmt=site.site.stmt,
                         fix=NodeFix(f"Replace with `{call}`", (NodeEdit(func.value, meant[0], "replace"),)))


def _switch_before_forward(facts: FileFacts, site) -> bool:
    """`model.evaluate()` used as a mode switch: no arguments, its result dropped, and the same
    receiver then run as a forward (`model(x)`) in the same function.

    A framework's `evaluate` takes data or returns scores; a call that does neither, on a value
    that is then run as a model, can only have meant `eval()`.
    """
    call = site.node
    if call.args or type(site.site.stmt) is not cst.SimpleStatementLine:
        return False
    statement = site.site.stmt.body[0]
    if type(statement) is not cst.Expr or statement.value is not call:
        return False
    receiver = dotted(call.func.value)
    if receiver is None:
        return False
    after = False
    for other in facts.collector.calls:
        if other is site:
            after = True
        elif after and other.site.function is site.site.function and dotted(other.node.func) == receiver:
            return True
    return False


@lru_cache(maxsize=4096)
def _module_meant(name: str) -> str | None:
    if name in api.MODULE_CONFUSIONS:
        return api.MODULE_CONFUSIONS[name]
    return api.closest(name, api.MODULE_NEAR_MISS_TARGETS)
