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

import libcst as cst

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
    def switched_by_creators(self) -> dict[tuple[str, str], ModeFact]:
        """(class, `self.<attr>`) -> eval mode, for a model the class builds in its `__init__` that every
        construction of the class here puts in eval mode right after, in the same block (`self.adv =
        PretrainedAgent()`, its weights loaded, then `self.adv.policy.eval()`): the object starts with it there."""
        calls = self.flow.collector.calls
        order = {id(site.node): i for i, site in enumerate(calls)}
        switched: dict[tuple[str, str], list] = {}
        spoiled: set[tuple[str, str]] = set()
        for site in calls:
            func = site.node.func
            if type(func) is not cst.Name or func.value not in self.flow.modules.classes \
                    or func.value in self.flow.imports.bindings:
                continue
            stmt = site.site.stmt
            assigned = stmt.body[0] if type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 else None
            holder = dotted(assigned.targets[0].target) if type(assigned) is cst.Assign and len(assigned.targets) == 1 \
                and assigned.value is site.node else None
            evals = {} if holder is None else {
                f"self.{text[len(holder) + 1:-5]}": later.node for later in calls
                if later.site.function is site.site.function and later.site.guards == site.site.guards
                and order[id(later.node)] > order[id(site.node)] and (text := later.text or "").startswith(holder + ".")
                and text.endswith(".eval") and text.count(".") == holder.count(".") + 2 and not later.node.args}
            for key in self._built_in_init(func.value):
                if key in evals:
                    switched.setdefault((func.value, key), []).append(evals[key])
                else:
                    spoiled.add((func.value, key))
        return {slot: ModeFact().switched("eval", sites[0]) for slot, sites in switched.items() if slot not in spoiled}

    def _built_in_init(self, cls_name: str) -> set[str]:
        """The attributes the class's own `__init__` sets to a module it builds (`self.policy = MLP()`)."""
        init = self.flow.local_functions.get(f"{cls_name}.__init__")
        return {key for assign in self.flow.collector.attribute_assigns
                if init is not None and assign.site.function is init and (key := dotted(assign.target)) is not None
                and key.startswith("self.") and key.count(".") == 1 and type(assign.value) is cst.Call
                and self.flow.modules.module_expression(assign.value)[0] is not None}

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
        # (a subclass of the file that sets none of them itself keeps them as its base does: `Learner(Base)`,
        # whose `__init__` hands `net` on to `super().__init__(net=net, ...)`)
        for cls_name in self.flow.modules.classes:
            for base in self.flow.class_and_bases(cls_name)[1:]:
                for (owner, key), kept in list(out.items()):
                    if owner == base and (cls_name, key) not in assigns:
                        out.setdefault((cls_name, key), kept)
        return out
