"""The mode an object's models start in when its creator hands them over (ObjectModes' third part).

A class that keeps the model its constructor is handed (`def __init__(self, actor_network):
self.actor_net = actor_network.to(device)`) runs it, in its other methods, in whatever mode the
creator handed it. Two things say which:
- the creators in view: every construction of the class here hands a model just built
  (`TD3(actor_network=Actor(obs, act))`: training mode), or one it never names again;
- the object itself: a method that trains the model (its output reaches a backward while an
  optimizer steps its weights) expects it in training mode, as a function that trains a model it
  is handed does. That is an assumption (`flow.assumed_sites`), which only evaluation under
  no_grad or over held-out data turns into a finding.
"""

from __future__ import annotations

from functools import cached_property

from modelint.facts.lattice import ModeFact
from modelint.facts.names import dotted, key_root
from modelint.facts.provenance import receiver_key


class ObjectStarts:
    """Mixed into ObjectModes: `self.flow` comes from there."""

    @cached_property
    def started_by_creators(self) -> dict[tuple[str, str], ModeFact]:
        """(class, `self.<attr>`) -> the mode of the model that every construction of the class here hands the
        parameter its `__init__` keeps there (`TD3(actor_network=Actor(obs, act))`: training mode)."""
        out = {}
        for (cls_name, key), (_init, param) in self._kept_from_constructors.items():
            fact = self._handed_for(cls_name, param)
            if fact is not None and not fact.entry and not fact.havoc and (fact.train_sites or fact.eval_sites):
                out[cls_name, key] = fact
        return out

    def _handed_for(self, cls_name: str, param: str) -> ModeFact | None:
        """The mode of what every construction hands the parameter, joined: a model the creator holds, or one
        its object holds (`Adapter(self.model)`: what the creator's methods leave on `self.model`)."""
        slot = (cls_name, param)
        table = self.flow.handed_to_constructors
        fact = table.get(slot)
        if fact is None and slot in table:
            return None
        for method, key in sorted(self.flow.attributes_to_constructors.get(slot, ()),
                                  key=lambda found: (found[0].name, found[1])):  # (a fixed order of the joins)
            if (method.cls.name, key) in self._kept_from_constructors:
                return None  # (handed on from its own creators: not known here)
            held = self.left_by_methods(method, key)
            if held is None:
                return None
            fact = held if fact is None else fact.join(held)
        return fact

    @cached_property
    def started_by_training(self) -> dict[tuple[str, str], ModeFact]:
        """(class, `self.<attr>`) -> "trained here, so in training mode" for a model kept from the constructor
        that a method of the class trains without setting its mode (`train_policy()`: the actor's output in a
        loss it back-propagates, the actor's optimizer stepped)."""
        out = {}
        kept = self._kept_from_constructors
        trained: dict = {}
        for method, key in self.flow.trained_models if kept else ():
            if method is not None and method.cls is not None and (method.cls.name, key) in kept:
                trained.setdefault(method, []).append(key)
        for flow in self.flow.flows if trained else ():  # (in the order of the file: the first method names the site)
            steps = [step.call for step in flow.steps.values() if step.call in self.flow.assumed_sites]
            for key in sorted(trained.get(flow.function, ())) if steps else ():
                out.setdefault((flow.function.cls.name, key), ModeFact().switched("train", steps[0]))
        return out

    @cached_property
    def _kept_from_constructors(self) -> dict[tuple[str, str], tuple]:
        """(class, `self.<attr>`) -> (its `__init__`, the parameter) for attributes that the class sets in one
        place only, its `__init__`, to what a constructor parameter holds (moved or not: `actor.to(device)`)."""
        assigns: dict[tuple, list] = {}
        for assign in self.flow.collector.attribute_assigns:
            key = dotted(assign.target)
            if assign.site.cls is not None and key is not None and key.startswith("self.") and key.count(".") == 1:
                assigns.setdefault((assign.site.cls.name, key), []).append(assign)
        out = {}
        for (cls_name, key), found in assigns.items():
            method = found[0].site.function
            if len(found) != 1 or method is None or method.name != "__init__" or found[0].value is None:
                continue
            source = receiver_key(found[0].value, self.flow.imports)
            param = key_root(source) if source is not None else None
            if param in method.param_set and param not in ("self", "cls"):
                out[cls_name, key] = (method, param)
        return out
