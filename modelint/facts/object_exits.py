"""What an object's public methods hand back to its users (ObjectModes' other half).

A public method of a class that is no module may run after any other public method
(`predict()` after `fit()`): the training or eval mode one of them may leave on
`self.<attr>` reaches the next. Not when a caller here always switches back after it
(`fit()` calls `train_epoch()`, then `eval()`), when the class hands the switch to its
users (`def eval(self): self.net.eval()`), or when the script using the object shows
the order its methods run in.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.lattice import first_site, is_train_site
from modelint.facts.mode_handling import only_switches_modes
from modelint.facts.names import dotted


class ObjectExits:
    """Mixed into ObjectModes: `self.flow`, `self.plain_object()` come from there."""

    @cached_property
    def _left_in_training(self) -> dict[str, dict[str, tuple[str, object]]]:
        """class -> attribute -> (method, its `train()` call) for methods that may return with the
        model in training mode after putting it there themselves (`fit()`, `train_model()`)."""
        out: dict[str, dict[str, tuple[str, object]]] = {}
        for function_flow in self.flow.flows:
            function = function_flow.function
            exit_state = function_flow.exit_state
            if function is None or function.cls is None or exit_state is None:
                continue
            for key, fact in exit_state.models.items():
                if not key.startswith("self.") or fact.havoc:
                    continue
                # An explicit train() that may reach the return, even when an evaluation on another path
                # leaves eval mode (`train()` evaluating only every n epochs).
                site = first_site(frozenset(s for s in fact.train_sites if is_train_site(s)))
                if site is not None and not self._absorbed(function, key):
                    out.setdefault(function.cls.name, {}).setdefault(key, (function.name, site))
        return out

    @cached_property
    def _left_in_eval(self) -> dict[str, dict[str, list[tuple[str, object]]]]:
        """class -> attribute -> (method, its `eval()` call) for each public method that may return with the
        model in eval mode and no `train()` of theirs reaches the return (`predict()` calling `eval()` and
        never switching back; a restore under `if eval_:`, joined with the path that skips it, still does)."""
        out: dict[str, dict[str, list[tuple[str, object]]]] = {}
        for function_flow in self.flow.flows:
            function = function_flow.function
            exit_state = function_flow.exit_state
            if function is None or function.cls is None or exit_state is None \
                    or (function.name.startswith("_") and function.name != "__init__") \
                    or only_switches_modes(function.node):
                # (`def eval(self): self.net.eval()` hands the switch to the users, and its undoing; the
                # constructor hands the object over: `self.net.eval()` there is where every user starts)
                continue
            for key, fact in exit_state.models.items():
                if key.startswith("self.") and not fact.havoc and fact.eval_sites \
                        and not any(is_train_site(s) for s in fact.train_sites):
                    out.setdefault(function.cls.name, {}).setdefault(key, []).append(
                        (function.name, first_site(fact.eval_sites)))
        return out

    def left_in_eval(self, function, key: str) -> tuple[str, object] | None:
        """For a public method of a class that is no module, which trains `self.<attr>` without calling
        `train()` first, and whose callers here (if any) do not call it either: another public method that
        may hand the model back to the object's users in eval mode."""
        if function is None or function.cls is None or function.name.startswith("_") \
                or not self.plain_object(function.cls) or function.name in self._handed_methods:
            return None  # (a method handed to a call, `epoch_run=trainer.epoch_ce_loss`: run where that says)
        sites = self.flow.call_sites.get(f"{function.cls.name}.{function.name}", {})
        calls = sites.values()
        if any(caller is not function and key in models and (models[key].eval_sites or models[key].havoc or any(
                is_train_site(s) for s in models[key].train_sites)) for caller, _grad, models in calls):
            return None  # a caller switches it first (`train()` then `train_epoch()`)
        if self._users_in_view_never_leave_eval(sites, key):
            return None
        for cls_name in self.flow.class_and_bases(function.cls.name):
            for found in self._left_in_eval.get(cls_name, {}).get(key, ()):
                if found[0] != function.name:
                    return found
        return None

    def trained_against_the_constructor(self, steps, key: str, call_sites) -> bool:
        """Are `steps` (backward calls standing for "trained here, so in training mode") all in methods that
        train `self.<attr>` without `train()` while the constructor leaves it in eval mode? Then the model is
        in eval mode there (MDL003 says so), not in the training mode the steps would suggest."""
        if not steps or not key.startswith("self."):
            return False
        key = ".".join(key.split(".")[:2])
        for step in steps:
            site = call_sites.get(step)
            left = self.left_in_eval(site.site.function, key) if site is not None else None
            if left is None or left[0] != "__init__":
                return False
        return True

    def users_elsewhere(self, function, key: str) -> tuple[str, frozenset[str], frozenset[str]] | None:
        """For a `left_in_eval` guess with no user of the class in this file: (the class, its methods that may
        leave `key` in eval mode, those that may run this training method), for the runner to ask the users
        other files show (Report.users_elsewhere)."""
        cls = function.cls
        classes = {info.name for info in self.flow.collector.classes}
        if any(name.startswith(f"{cls.name}.") and any(self._receiver_outside(call, classes) for call in sites)
               for name, sites in self.flow.call_sites.items()):
            return None  # (the users here have had their say: _users_in_view_never_leave_eval)
        leavers = frozenset(name for cls_name in self.flow.class_and_bases(cls.name)
                            for name, _site in self._left_in_eval.get(cls_name, {}).get(key, ()))
        trainers, todo = {function.name}, [function]
        while todo:  # (`fit()` calling `self.train_epoch()`: a user's `fit()` trains too)
            current = todo.pop()
            for caller, _grad, _models in self.flow.call_sites.get(f"{current.cls.name}.{current.name}", {}).values():
                if caller is not None and caller.cls is not None and caller.name not in trainers:
                    trainers.add(caller.name)
                    todo.append(caller)
        return cls.name, leavers - {function.name}, frozenset(trainers)

    @staticmethod
    def _receiver_outside(call, classes: set[str]) -> bool:
        """An object of the class used here (not `self`, nor the class itself: `NNBee.flush(logger, line)`)."""
        receiver = dotted(call.func.value) if type(call.func) is cst.Attribute else None
        return receiver is not None and receiver.split(".")[0] not in ("self", "cls", "super", *classes)

    @cached_property
    def _handed_methods(self) -> frozenset[str]:
        """Names of methods some call here is handed as a value, bound to the object (`self.train_epoch`) or to
        an object of a class of this file (`epoch_run=trainer.epoch_ce_loss`): callbacks."""
        out = set()
        for site in self.flow.collector.calls:
            for arg in site.node.args:
                value = arg.value
                if type(value) is cst.Attribute and type(value.value) is cst.Name and value.attr.value in \
                        self.flow.method_names and (value.value.value == "self" or self.flow._class_bound_to(
                            value.value.value, site.site.function, set()) is not None):
                    out.add(value.attr.value)
        return frozenset(out)

    @staticmethod
    def _users_in_view_never_leave_eval(sites: dict, key: str) -> bool:
        """The object's users in this file (`trainer.update(x)` in the script) call the method, and at every
        such call their own state shows the model in no eval mode (`trainer.load_model()` comes only later,
        in the test branch): the order the object's methods run in is in sight."""
        seen = False
        for call, (_caller, _grad, models) in sites.items():
            receiver = dotted(call.func.value) if type(call.func) is cst.Attribute else None
            if receiver is None or receiver.split(".")[0] in ("self", "cls"):
                continue
            seen = True
            fact = models.get(receiver + key[4:])
            if fact is None or fact.eval_sites or fact.havoc:
                return False
        return seen

    def left_in_training(self, function, key: str) -> tuple[str, object] | None:
        """For a public method of a class that is no module (users call it, whatever its callers here
        do first): another method that may hand `self.<attr>` back to the object's users in training
        mode, and where it puts it there."""
        if function is None or function.cls is None or not self.plain_object(function.cls):
            return None
        if function.name.startswith("_"):
            return None  # a private hook: a base class elsewhere calls it, in a mode we cannot see
        if self._mode_switched_by_users(function.cls, key):
            return None  # `agent.eval()` before `agent.act(s)`: the object hands the switch to its users
        # Callers here that set the mode first do not decide it: a public method is also called from
        # outside, after whatever the object's other methods left (`predict()` after `train_model()`).
        for cls_name in self.flow.class_and_bases(function.cls.name):
            found = self._left_in_training.get(cls_name, {}).get(key)
            if found is not None and found[0] != function.name:
                return found
        return None

    def _mode_switched_by_users(self, cls, key: str) -> bool:
        """Does the class have a public method that only switches `self.<attr>` to eval mode (`def eval(self):
        self.online_net.eval()`), running none of its forwards? Its users choose the mode, then."""
        setters = self._eval_setters
        return any(key in setters.get(name, ()) for name in self.flow.class_and_bases(cls.name))

    @cached_property
    def _eval_setters(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for function_flow in self.flow.flows:
            function = function_flow.function
            if function is None or function.cls is None or function.name.startswith("_") \
                    or function_flow.exit_state is None or not only_switches_modes(function.node):
                continue
            for key, exit_fact in function_flow.exit_state.models.items():
                # (`set_mode_train(self, train=True)` switching either way by its flag counts too)
                if key.startswith("self.") and key.count(".") == 1 and exit_fact.eval_sites:
                    out.setdefault(function.cls.name, set()).add(key)
        return out

    @cached_property
    def _exits(self) -> dict:
        return {f.function: f.exit_state for f in self.flow.flows if f.function is not None}

    def _absorbed(self, function, key: str) -> bool:
        """Does every caller of this method in the class put `key` back in a known mode before it
        returns (`fit()` calls `train_epoch()`, then `eval()` and `validate()`)? Then the training
        mode it leaves never reaches the object's users; a method nobody here calls is an entry point."""
        exits = self._exits
        callers = [caller for caller, _grad, _models in
                   self.flow.call_sites.get(f"{function.cls.name}.{function.name}", {}).values()
                   if caller is not function]
        if not callers:
            return False
        for caller in callers:
            exit_state = exits.get(caller) if caller is not None else None
            fact = exit_state.models.get(key) if exit_state is not None else None
            if fact is None or fact.havoc or fact.train_sites:
                return False  # (a callee's training shows in its caller as a train site at the call)
        return True
