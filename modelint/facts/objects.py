"""The mode of an object's models between its method calls (trainers, predictors, handlers).

A method of a class that is no nn.Module itself (a trainer, an inference wrapper)
sees `self.model` in whatever mode the object's other methods left it. Without a
caller in view, that mode is the join of what every method of the class (and of its
bases in the file) leaves on the attribute: an inference wrapper whose `__init__`
calls `self.model.eval()` and whose other methods never call `train()` has its model
in eval mode in every method; a trainer that builds `self.model = Net()` and never
switches it runs it in training mode everywhere. A public method such as `predict()`,
which nothing here calls, may run after `fit()` or `train_model()` has left the model
in training mode: if it evaluates without calling `eval()`, that is the bug, even when
the object's own scoring calls it right after `eval()`. Training left by a step method
(`train_epoch()`) that every caller here follows with `eval()` never reaches the users.

An attribute that only ever wraps another (`self.mnetwork = DataParallel(self.network)`)
is another name of it: `self.network.eval()` puts `self.mnetwork`'s forward in eval mode.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.base_shapes import switched_by_bases_elsewhere
from modelint.facts.module_names import passed_dependences
from modelint.facts.lattice import ENTRY_MODE, HAVOC_MODE, ModeFact, first_site, is_train_site, mode_of_call
from modelint.facts.modules import Dependence
from modelint.facts.mode_handling import only_switches_modes
from modelint.facts.names import dotted, key_root
from modelint.facts.provenance import receiver_key


class ObjectModes:
    def __init__(self, flow) -> None:
        self.flow = flow

    @cached_property
    def attribute_aliases(self) -> dict:
        """class -> {`self.mnetwork`: `self.network`}: an attribute that every assignment in the class sets
        to another attribute of the object, or to a DataParallel-like wrapper of it (`self.mnetwork =
        DataParallel(self.network) if multi_gpu else self.network`). Its forward runs that module, in the
        mode `self.network.eval()` sets."""
        targets: dict = {}
        for assign in self.flow.collector.attribute_assigns:
            cls = assign.site.cls
            key = dotted(assign.target)
            if cls is None or key is None or key.count(".") != 1 or not key.startswith("self."):
                continue
            targets.setdefault((cls, key), set()).add(self._wrapped_attribute(assign.value))
        out: dict = {}
        for (cls, key), seen in targets.items():
            if len(seen) == 1 and None not in seen and key not in seen:
                out.setdefault(cls, {})[key] = seen.pop()
        return out

    def _wrapped_attribute(self, value) -> str | None:
        """`self.net`, `DataParallel(self.net)`, or a conditional choosing between them: `self.net`."""
        if type(value) is cst.IfExp:
            body, orelse = self._wrapped_attribute(value.body), self._wrapped_attribute(value.orelse)
            return body if body == orelse else None
        if type(value) is cst.Call and value.args and self.flow.imports.qualify(value.func) in api.MODULE_WRAPPERS:
            value = value.args[0].value
        key = dotted(value) if value is not None else None
        return key if key is not None and key.count(".") == 1 and key.startswith("self.") else None

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
                built = flow.modules.construction(site) if type(site) is cst.Call else None
                if effect == "train" and built is not None and not built.certain:
                    fact = ENTRY_MODE  # a class we cannot see may set its own mode (a wrapper calling eval())
                elif effect in ("eval", "train") and site is not None:
                    fact = ModeFact(dependence=built.dependence if built is not None else Dependence.UNKNOWN,
                                    certain=built is None or built.certain,
                                    parameterless=built is not None and built.parameterless).switched(effect, site)
                    if method != "__init__" and key not in self._built_by_methods.get(cls_name, ()):
                        fact = fact.join(ENTRY_MODE)  # set by a method someone calls, at some point
                else:
                    fact = HAVOC_MODE if effect == "unknown" else ENTRY_MODE
                facts[key] = facts[key].join(fact) if key in facts else fact
        return out

    @cached_property
    def _built_by_methods(self) -> dict[str, frozenset[str]]:
        """class -> attributes that every assignment in the class sets to a module it builds in training mode
        (`self.generator = Generator(...)` in `fit()`): before the method that builds it runs there is no such
        attribute, so whatever mode it has later is what the class's own methods leave, not an unknown one."""
        built: dict[str, set[str]] = {}
        other: set[tuple[str, str]] = set()
        for assign in self.flow.collector.attribute_assigns:
            cls = assign.site.cls
            key = dotted(assign.target)
            if cls is None or key is None or key.count(".") != 1 or not key.startswith("self."):
                continue
            made = self.flow.modules.module_expression(assign.value)[0] if assign.value is not None else None
            if made is not None and made.certain and not made.starts_in_eval and not made.runs_loaded \
                    and type(assign.node) is cst.Assign:
                built.setdefault(cls.name, set()).add(key)
            else:
                other.add((cls.name, key))
        classes = self.flow.modules.classes
        return {name: frozenset(key for key in keys if (name, key) not in other
                                and not switched_by_bases_elsewhere(self.flow, classes[name], key))
                for name, keys in built.items() if name in classes}

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
    def _left_in_eval(self) -> dict[str, dict[str, tuple[str, object]]]:
        """class -> attribute -> (method, its `eval()` call) for public methods that may return with the
        model in eval mode and no `train()` of theirs reaches the return (`predict()` calling `eval()` and
        never switching back; a restore under `if eval_:`, joined with the path that skips it, still does)."""
        out: dict[str, dict[str, tuple[str, object]]] = {}
        for function_flow in self.flow.flows:
            function = function_flow.function
            exit_state = function_flow.exit_state
            if function is None or function.cls is None or exit_state is None or function.name.startswith("_") \
                    or only_switches_modes(function.node):
                continue  # (`def eval(self): self.net.eval()` hands the switch to the users, and its undoing)
            for key, fact in exit_state.models.items():
                if key.startswith("self.") and not fact.havoc and fact.eval_sites \
                        and not any(is_train_site(s) for s in fact.train_sites):
                    out.setdefault(function.cls.name, {}).setdefault(key, (function.name, first_site(fact.eval_sites)))
        return out

    def left_in_eval(self, function, key: str) -> tuple[str, object] | None:
        """For a public method of a class that is no module, which trains `self.<attr>` without calling
        `train()` first, and whose callers here (if any) do not call it either: another public method that
        may hand the model back to the object's users in eval mode."""
        if function is None or function.cls is None or function.name.startswith("_") \
                or not self.plain_object(function.cls):
            return None
        sites = self.flow.call_sites.get(f"{function.cls.name}.{function.name}", {})
        calls = sites.values()
        if any(caller is not function and key in models and (models[key].eval_sites or models[key].havoc or any(
                is_train_site(s) for s in models[key].train_sites)) for caller, _grad, models in calls):
            return None  # a caller switches it first (`train()` then `train_epoch()`)
        if self._users_in_view_never_leave_eval(sites, key):
            return None
        for cls_name in self.flow.class_and_bases(function.cls.name):
            found = self._left_in_eval.get(cls_name, {}).get(key)
            if found is not None and found[0] != function.name:
                return found
        return None

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

    def attribute_dependence(self, function, key: str) -> Dependence:
        """Can the mode of `self.<attr>` change its output, from every construction the class assigns to it
        (`self.model = SuperResolutionNet()`, a class the project index knows has no Dropout or BatchNorm)?"""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1:
            return Dependence.UNKNOWN
        known = self._attribute_dependences.get(function.cls, {})
        return known.get(key, Dependence.UNKNOWN)

    @cached_property
    def _attribute_dependences(self) -> dict:
        """class -> `self.<attr>` -> the join of the dependences of the models assigned to it."""
        out: dict = {}
        for assigned, value, site in self.flow.collector.call_assigns:
            if site.cls is None or not assigned.startswith("self."):
                continue
            built = self.flow.modules.module_expression(value)[0]
            dependence = built.dependence if built is not None else Dependence.UNKNOWN  # (not a model we know)
            known = out.setdefault(site.cls, {})
            known[assigned] = max(known.get(assigned, dependence), dependence)
        for (cls, key), dependence in passed_dependences(self.flow).items():  # `self.model = model`, given a Unet
            known = out.setdefault(cls, {})
            known[key] = max(known.get(key, dependence), dependence)
        return out

    @cached_property
    def constructor_stores(self) -> dict[str, tuple]:
        """Plain class of the file -> (its `__init__`, {parameter: `self.<attr>`}) for attributes that every
        assignment in the class sets to that constructor parameter as it is (`self._model = model`): the
        object's attribute is the very module its creator hands in (an adapter, an evaluator, a sampler)."""
        out: dict = {}
        for (cls, key), params in self.flow.modules.names.stored_parameters.items():
            init, param = params[0]
            if len(params) != 1 or cls.outer is not None or not self.plain_object(cls):
                continue
            out.setdefault(cls.name, (init, {}))[1][param] = key
        return out

    def plain_object(self, cls) -> bool:
        """A class known to be no module: a base elsewhere that may be one (a model mixin whose mode its
        users set) leaves the object's mode to whoever holds it, unless the class shows what it is: a
        trainer (`class SegTrainer(BaseTrainer)`) switches the models it holds (`self.model.train()`) and
        has no forward pass of its own."""
        if self.flow.defines_forward(cls):
            return False  # a module, or one in all but name: asking the index about its base changes nothing
        if not self.flow.may_be_module_class(cls):
            return True
        if self.flow.is_module_class(cls):
            return False
        return cls.name in self._trainers

    @cached_property
    def _trainers(self) -> frozenset[str]:
        """Classes of the file with a base elsewhere that switch a model attribute's mode and define no
        `forward` (themselves or through their bases here): trainers, predictors, inference wrappers."""
        switching = set()
        for site in self.flow.collector.calls:
            func = site.node.func
            cls = site.site.cls
            if cls is not None and type(func) is cst.Attribute and func.attr.value in ("train", "eval") \
                    and type(func.value) is cst.Attribute and type(func.value.value) is cst.Name \
                    and func.value.value.value == "self":
                switching.add(cls.name)
        classes = self.flow.modules.classes
        # (`__call__` does not make it one: an nn.Module subclass defines `forward`, and a detector
        # wrapper's `__call__` runs the model it holds.)
        return frozenset(name for name in switching if name in classes and not self.flow.defines_forward(classes[name]))

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

    def at_entry(self, function, key: str) -> ModeFact | None:
        """What the object's methods leave on `self.<attr>`, for a method of a class that is no module (a
        part of it, `self.ar.enc` run by `self.ar.get_conditioning()`, is in the same mode)."""
        if function is None or function.cls is None or not key.startswith("self.") or "[" in key:
            return None
        key = ".".join(key.split(".")[:2])
        if key == api.SERVING_HANDLER_MODEL and self.flow.serving_handler(function.cls) \
                and not self.flow.assigned_attribute(function.cls, key):
            # Loaded and put in eval mode by TorchServe's BaseHandler.initialize(); the class line stands
            # for that site.
            return ModeFact().switched("eval", function.cls.node)
        if not self.plain_object(function.cls):
            return None
        found = None
        for cls_name in self.flow.class_and_bases(function.cls.name):
            fact = self._by_class.get(cls_name, {}).get(key)
            if fact is not None:
                found = fact if found is None else found.join(fact)
        return found

    def ever_switched_to_eval(self, cls, key: str) -> bool:
        """Does a method of the class (or of its bases here) call `<key>.eval()` or `<key>.train(False)`?"""
        switched = self._switched_to_eval
        return any(key in switched.get(name, ()) for name in self.flow.class_and_bases(cls.name))

    @cached_property
    def _switched_to_eval(self) -> dict[str, set[str]]:
        """Class name -> the receivers its methods call `eval()` / `train(False)` on (one pass per file)."""
        out: dict[str, set[str]] = {}
        for site in self.flow.collector.calls:
            func = site.node.func
            if site.site.cls is None or type(func) is not cst.Attribute or func.attr.value not in ("eval", "train"):
                continue
            if mode_of_call(site.node) != "train":
                out.setdefault(site.site.cls.name, set()).add(dotted(func.value))
        return out

    def handed_in(self, function, key: str):
        """For a method of a class that is no module and never trains: the method that stores the model
        a caller hands it in `self.<attr>` (`def __init__(self, model): self.model = model.to(device)`),
        when no method of the class (or of its bases here) ever switches that attribute's mode. Such an
        inference wrapper (a predictor, an evaluator) runs the model in whatever mode its creator left."""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1 \
                or not self.plain_object(function.cls) or self.flow.modules.has_foreign_base(function.cls):
            return None  # (a base elsewhere may train it or set its mode: an RL algorithm, a framework's runner)
        classes = set(self.flow.class_and_bases(function.cls.name))
        if self._constructed_here(function.cls):
            return None  # its creator is in view (`StreamModel(from_pretrained(...), tok)`): not a guess to make
        if any(f.function is not None and f.function.cls is not None and f.function.cls.name in classes
               and self.flow.function_trains(f.function) for f in self.flow.flows):
            return None  # a trainer: its methods' mode flow says what it leaves
        storing = None
        for assign in self.flow.collector.attribute_assigns:
            method = assign.site.function
            if method is None or method.cls is None or method.cls.name not in classes \
                    or dotted(assign.target) != key:
                continue
            source = receiver_key(assign.value, self.flow.imports) if assign.value is not None else None
            head = key_root(source) if source is not None else None
            if head is None or head in ("self", "cls") or head not in method.param_set:
                return None  # also built, loaded or set from elsewhere: not only what a caller hands in
            storing = method
        if storing is None or any(self._by_class.get(name, {}).get(key, ENTRY_MODE) != ENTRY_MODE
                                  for name in classes):
            return None
        return storing

    def evaluated_in_eval_mode(self, function, key: str):
        """Another method of the class (or of its bases here) that runs `key` after putting it in eval mode
        itself (`batch_evaluation()`: `self.model.eval()`, forward, restore): (its name, the `eval()` call).
        The class's author treats that model's forward passes as evaluation."""
        if function is None or function.cls is None:
            return None
        classes = set(self.flow.class_and_bases(function.cls.name))
        for other in self.flow.flows:
            method = other.function
            if method is None or method is function or method.cls is None or method.cls.name not in classes:
                continue
            for forward in other.all_forwards():
                if forward.key == key and forward.mode.eval_sites and not forward.mode.train_sites:
                    return method.name, first_site(forward.mode.eval_sites)
        return None

    def _constructed_here(self, cls) -> bool:
        """Does the file build an instance of the class: `Predictor(...)`, or `cls(...)` in its own methods?"""
        for site in self.flow.collector.calls:
            func = site.node.func
            if type(func) is cst.Name and (func.value == cls.name or (
                    func.value == "cls" and site.site.cls is cls)):
                return True
        return False

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

