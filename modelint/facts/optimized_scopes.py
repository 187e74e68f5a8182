"""Which models the optimizers of each scope are built over, and so which models a scope's names can
mean when it trains: `Adam(model.parameters())` in a function says it trains `model`; one built in a
method says what `self.` names the object's other methods train; one built at module level, what the
globals a function reads train.

A scope is *complete* when every torch optimizer built there names whose parameters it takes
(`Adam(model.parameters())`, not `Adam(params)`): only then may a model fed to the loss but in none of
them (a frozen VGG of a perceptual loss, a teacher) be taken as not trained.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import parameter_owners
from modelint.facts.optimizers import MADE_TENSORS


def optimized_by_scope(facts) -> dict:
    """Function (None: module level) -> (models whose parameters go to an optimizer built there, whether
    the scope is complete)."""
    found: dict = {}
    for site in facts.collector.calls:
        qualified = site.qualified or ""
        if not qualified.startswith("torch.optim.") and "optim" not in (site.text or "").lower() \
                and not facts.flow.builds_optimizer(site.node):
            continue
        owners: set[str] = set()
        for arg in site.node.args:
            owners |= parameter_owners(arg.value)  # `model.encoder.parameters()` trains `model` too
        if not owners and qualified.startswith("torch.optim.") and _tensors_listed(facts, site):
            owners = {MADE_TENSORS}  # `Adam([mask], lr=0.1)`: it steps those tensors, no model
        owners = facts.flow.as_kept_attributes(owners, site.site.function)  # (`model` kept as `self.model`)
        known, complete = found.setdefault(site.site.function, (set(), True))
        if qualified.startswith("torch.optim.") and "lr_scheduler" not in qualified and not owners:
            complete = False
        found[site.site.function] = (known | owners, complete)
    return found


def optimized_in_scope(facts, function) -> tuple[set[str], bool]:
    """The optimized models a function's names can mean: its own optimizers', its object's (`self.` of the
    same class), the module level's (the globals it reads). A `model` another function optimizes is another
    variable."""
    optimized: set[str] = set()
    complete = True
    for where, (owners, whole) in facts.optimized_by_scope.items():
        if where is function:
            keys = owners
        elif where is None:
            keys = {key for key in owners if function is None or key.split(".")[0] in facts.flow.free.globals_of(function)}
        elif function is not None and where.cls is not None and where.cls is function.cls:
            keys = {key for key in owners if key.startswith("self.") or key == "self"}
        else:
            continue
        optimized |= keys
        complete = complete and whole
    return optimized, complete


def _tensors_listed(facts, site) -> bool:
    """`Adam([mask, noise], ...)`: a list of plain names, none of them a model of this file; or tensors the
    function made (`Adam([latent] + noises)`, parameter groups of them)."""
    first = site.node.args[0].value if site.node.args and site.node.args[0].keyword is None else None
    if facts.flow.made_tensors(first, site.site.function):
        return True
    if type(first) not in (cst.List, cst.Tuple) or not first.elements:
        return False
    names = [e.value.value for e in first.elements if type(e) is not cst.StarredElement and type(e.value) is cst.Name]
    return len(names) == len(first.elements) and not any(
        name in facts.flow.global_models or facts.modules.is_module_name(name, site.site.function) for name in names)
