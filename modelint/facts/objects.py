"""The mode of an object's models between its method calls (trainers, predictors, handlers).

A method of a class that is no nn.Module itself (a trainer, an inference wrapper)
sees `self.model` in whatever mode the object's other methods left it. Without a
caller in view, that mode is the join of what every method of the class (and of its
bases in the file) leaves on the attribute: an inference wrapper whose `__init__`
calls `self.model.eval()` and whose other methods never call `train()` has its model
in eval mode in every method; a trainer that builds `self.model = Net()` and never
switches it runs it in training mode everywhere. A public method such as `predict()`,
which nothing here calls, may run after `fit()` or `train_model()` has left the model
in training mode: if it evaluates without calling `eval()`, that is the bug.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.lattice import ENTRY_MODE, HAVOC_MODE, ModeFact, is_train_site
from modelint.facts.modules import Dependence


class ObjectModes:
    def __init__(self, flow) -> None:
        self.flow = flow

    @cached_property
    def _by_class(self) -> dict[str, dict[str, ModeFact]]:
        flow = self.flow
        out: dict[str, dict[str, ModeFact]] = {}
        for name, summary in flow.summaries.items():
            cls_name, _, method = name.rpartition(".")
            if not cls_name:
                continue
            facts = out.setdefault(cls_name, {})
            for key, effect in summary.effects.items():
                if not key.startswith("self.") or key.count(".") != 1:
                    continue
                site = summary.effect_sites.get(key)
                built = flow.modules.construction(site) if isinstance(site, cst.Call) else None
                if effect == "train" and built is not None and not built.certain:
                    fact = ENTRY_MODE  # a class we cannot see may set its own mode (a wrapper calling eval())
                elif effect in ("eval", "train") and site is not None:
                    fact = ModeFact(dependence=built.dependence if built is not None else Dependence.UNKNOWN,
                                    certain=built is None or built.certain,
                                    parameterless=built is not None and built.parameterless).switched(effect, site)
                    if method != "__init__":
                        fact = fact.join(ENTRY_MODE)  # set by a method someone calls, at some point
                else:
                    fact = HAVOC_MODE if effect == "unknown" else ENTRY_MODE
                facts[key] = facts[key].join(fact) if key in facts else fact
        return out

    @cached_property
    def _left_in_training(self) -> dict[str, dict[str, tuple[str, object]]]:
        """class -> attribute -> (method, its `train()` call) for methods that may return with the
        model in training mode after putting it there themselves (`fit()`, `train_model()`)."""
        out: dict[str, dict[str, tuple[str, object]]] = {}
        for name, summary in self.flow.summaries.items():
            cls_name, _, method = name.rpartition(".")
            if not cls_name:
                continue
            for key, effect in summary.effects.items():
                site = summary.effect_sites.get(key)
                if effect in ("train", "may-train", "unknown") and site is not None and is_train_site(site):
                    out.setdefault(cls_name, {}).setdefault(key, (method, site))
        return out

    def _plain_object(self, cls) -> bool:
        """A class known to be no module: a base elsewhere that may be one (a model mixin whose mode its
        users set) leaves the object's mode to whoever holds it."""
        return not self.flow.may_be_module_class(cls)

    def left_in_training(self, function, key: str) -> tuple[str, object] | None:
        """For a public method of a class that is no module, called from outside (no caller here, or one
        that passes the mode through unchanged, like `predict()`): another method that may leave
        `self.<attr>` in training mode, and where it puts it there."""
        if function is None or function.cls is None or not self._plain_object(function.cls):
            return None
        if function.name.startswith("_"):
            return None  # a private hook: a base class elsewhere calls it, in a mode we cannot see
        sites = self.flow.call_sites.get(f"{function.cls.name}.{function.name}", {})
        if sites and not any(models.get(key, ENTRY_MODE) == ENTRY_MODE for _c, _g, models in sites.values()):
            return None  # every caller here sets the mode first: they decide it
        for cls_name in self.flow.class_and_bases(function.cls.name):
            found = self._left_in_training.get(cls_name, {}).get(key)
            if found is not None and found[0] != function.name:
                return found
        return None

    def at_entry(self, function, key: str) -> ModeFact | None:
        """What the object's methods leave on `self.<attr>`, for a method of a class that is no module."""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1:
            return None
        if not self._plain_object(function.cls):
            return None
        found = None
        for cls_name in self.flow.class_and_bases(function.cls.name):
            fact = self._by_class.get(cls_name, {}).get(key)
            if fact is not None:
                found = fact if found is None else found.join(fact)
        return found
