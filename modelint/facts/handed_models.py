"""Models handed to calls we cannot see into: objects built holding them, and other files' callables.

- `trainer = Trainer(model, args)`, then `trainer.evaluate()`: the object evaluates the model it holds in a
  mode of its choosing (HF's Trainer leaves it in eval mode).
- `inferer(inputs=x, diffusion_model=unet)`: an object handed, by keyword, a model this function switched
  runs that model.
- `ClassifierLearner(model=net, ...)` of another file: what each argument slot gets, for that file.
- `StepRunner(self.net, "val")`, `Tracer(model, example)`, a plain class of this file: its constructor switches
  the model it is handed (kept on the object, or not), and the caller's model is switched with it.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.modules import unwrap_chain
from modelint.facts.names import dotted, key_root, value_key
from modelint.facts.provenance import DEEPCOPY
from modelint.facts.scopes import own_attribute
from modelint.facts.state import State
from modelint.facts.summary_effects import bind_arguments

# The receiver an object built in the call itself stands for while its method's summary applies.
INLINE_OBJECT = "<object>"


class HandedModels:
    """Mixed into CallEffects (which provides `flow`, `out` and `apply_summary`)."""

    def constructor_effects(self, call: cst.Call, built, state: State) -> None:
        """`StepRunner(self.net, "val")`, a plain class of this file whose `__init__` keeps the model it is
        handed and switches it (`self.net.train() if stage == "train" else self.net.eval()`), or switches the
        model it is handed itself (a graph tracer's `module.eval()`): the caller's model is switched as the
        constructor leaves it."""
        flow = self.flow
        summary = flow.summaries.get(f"{built.name}.__init__")
        if summary is None or not summary.effects:
            return
        stores = flow.objects.constructor_stores.get(built.name)
        if stores is None and built.outer is None:  # (a module keeping what it is handed: `Calibrated(base)`)
            kept = flow.modules.names.kept_from_the_creator(built)
            stores = (next(iter(kept.values()))[0], {param: key for key, (_init, param) in kept.items()}) \
                if kept and any(key in summary.effects for key in kept) else None
        if stores is None and not any(key in summary.params for key in summary.effects):
            return
        if stores is not None:
            init, kept = stores
            for param, value in bind_arguments(init.params, True, call).items():
                held, attribute = value_key(value), kept.get(param)
                if held is not None and attribute is not None:
                    state.aliases[f"{INLINE_OBJECT}{attribute[4:]}"] = state.canonical(held)
        self.apply_summary(summary, call, state, INLINE_OBJECT)
        state.forget(INLINE_OBJECT)

    def record_handed_to_constructor(self, call: cst.Call, built, state: State) -> None:
        """`TD3(actor_network=Actor(obs, act), ...)`, a plain class of this file: the mode of the model each
        constructor parameter gets here, for what the object's methods start from (ObjectModes)."""
        from modelint.facts.summary_effects import bind_arguments

        init = self.flow.collector.constructor(built)
        if init is None:
            return
        table = self.flow.handed_to_constructors
        passed = bind_arguments(init.params, True, call)
        for param in init.params[1:]:
            value = passed.get(param)
            key = value_key(value) if value is not None else None
            fact = None
            if _held_by_the_object(self.out.function, key, state):
                # (its mode is what the object's methods leave on it: read once they are all known)
                self.flow.attributes_to_constructors.setdefault((built.name, param), set()).add(
                    (self.out.function, key))
                continue
            if key is not None and state.canonical(key) in state.models \
                    and not _named_after(self.out.function, self.flow.collector, call, key_root(key)):
                # (a model the creator goes on using may be switched later: `lm.eval()` after `Scorer(lm)`)
                fact = state.fact(state.canonical(key))
            elif type(value) is cst.Call:
                fact = self.flow.provenance.built_here(value, state, self.out.function)
            slot = (built.name, param)
            if slot not in table:
                table[slot] = fact
            elif table[slot] is not None:
                table[slot] = table[slot].join(fact) if fact is not None else None

    def _handed_to_builder_of(self, receiver: str, state: State) -> list[str]:
        """The models this function (or the module, for a global it does not bind) hands the call it binds
        `receiver` to (`trainer = Trainer(model, args)`, `models = Models({"G": G, "C": C})`)."""
        bound = calls_binding(self.flow, self.out.function, receiver)
        if any((made := self.flow.modules.construction(value)) is not None and made.certain for value in bound):
            return []  # (a module wrapping the model, `DataParallel(model)`: its own mode is the model's)
        if any(self.flow.imports.qualify(value.func) in DEEPCOPY for value in bound):
            return []  # (`probe = copy.deepcopy(model)`: a copy, whose switches leave the model as it is)
        held = []
        for value in bound:
            for arg in value.args:
                values = [arg.value]
                if type(arg.value) in (cst.Dict, cst.List, cst.Tuple):  # (a container written in the call)
                    values = [element.value for element in arg.value.elements if hasattr(element, "value")]
                for item in values:
                    key = value_key(item)
                    if key is not None and state.tracks(key := state.canonical(key)):
                        held.append(key)
        return held

    def _imported_class_of(self, receiver: str) -> str | None:
        """The imported class (as qualified) every call this function binds `receiver` to builds; for an
        attribute of `self`, every assignment of it in the class's methods (`self.actor = Actor(4, 2)` in
        `__init__`, then `self.actor.act(state)` in another method)."""
        classes = self._imported_classes_of(receiver)
        return next(iter(classes)) if len(classes) == 1 else None

    def _object_origin(self, state, receiver: str) -> str | None:
        """The imported class (as qualified) of an object: the origin the state followed it from, or the one
        every binding of it here builds."""
        return (state.fact(receiver).origin if state.tracks(receiver) else None) or self._imported_class_of(receiver)

    def _called_object(self, name: str, state) -> tuple:
        """`agent(obs)` on an object of a plain class of another file (`agent = GreedyAgent(net)`): its
        `__call__`, as its file summarises it, with the object as its `self`; (None, None) for a model, whose
        call is a forward."""
        receiver = state.canonical(name)
        origin = self._object_origin(state, receiver)
        if not origin or self._is_model(state, receiver):
            return None, None
        summary = self.flow.resolve_method_of(origin, "__call__")
        if summary is None:
            self.flow.ask_the_index_later()  # (what its `__call__` does)
        return summary, receiver if summary is not None else None

    def _plain_class_setting_no_mode(self, qualified: str | None) -> bool:
        """Is `qualified` a class of another file that the index shows is no module and whose methods call no
        `eval()`/`train()` (`Predictor`, keeping the model it is handed and running it)?"""
        index = self.flow.index
        if index is None or not qualified:
            return False
        found = index.resolve_shape(qualified, self.flow.path)
        return found is not None and not found[0].switches and index.resolve_class(qualified, self.flow.path) is None

    def _fit_keeps_training(self, call: cst.Call, state, key: str) -> bool:
        """`trainer.fit(model, loader)` with a Lightning `Trainer`, handed a model in training mode: it returns
        it in training mode (the fit loop puts it there, or since Lightning 2.2 keeps the mode it had), so the
        forwards after it run in that mode, unless something switches it (`predict` after `fit`, no `eval()`)."""
        func = call.func
        if type(func) is not cst.Attribute or func.attr.value != "fit" or not state.fact(key).definitely_train:
            return False
        receiver = value_key(func.value)
        trainer = self._imported_class_of(receiver) if receiver is not None else None
        if trainer is None and type(func.value) is cst.Call:
            trainer = self.flow.imports.qualify(func.value.func)  # (`pl.Trainer(max_epochs=3).fit(model)`)
        return bool(trainer) and trainer.startswith(("pytorch_lightning.", "lightning.")) \
            and trainer.rsplit(".", 1)[-1] == "Trainer"

    def _another_frameworks(self, receiver: str) -> bool:
        """Is `receiver` built by another framework or an inference engine (`caffe.Net(...)`, OpenCV's
        `dnn.DetectionModel(...)`): its `forward()` runs no torch module."""
        builders = self._imported_classes_of(receiver, classes_only=False)
        return bool(builders) and all(
            name.startswith(api.NOT_TORCH_PREFIXES) for name in builders)

    def _imported_classes_of(self, receiver: str, classes_only: bool = True) -> set[str]:
        """The imported classes (as qualified) the calls this function binds `receiver` to build (see
        `_imported_class_of`), when each of them is one (`self.policy = GaussianPolicy(...)` on one branch,
        `DeterministicPolicy(...)` on the other); with `classes_only` False, whatever imported callables those
        calls call (`cv2.dnn.readNet(path)`)."""
        function = self.out.function
        if receiver.startswith("self.") and receiver.count(".") == 1 and function is not None \
                and function.cls is not None:
            assigns = self.flow.collector.assigns_to(function.cls, receiver)
            values = [unwrap_chain(assign.value)[0] for assign in assigns]
            # (`self.encoder = self.encoder.cuda()`: the same object, moved)
            values = [value for value in values if dotted(value) != receiver]
            bound = values if all(type(value) is cst.Call for value in values) else ()
            if not bound and assigns:
                # `self.model: Tagger = model`, or `def __init__(self, model: Tagger)`: the class it is annotated with;
                # or the one every construction here hands that parameter (`Trainer(BPRMF(n_users, n_items))`)
                annotated = {self._annotated_class(assign) or self._handed_at_construction(assign)
                             for assign in assigns}
                return annotated if None not in annotated else set()
        else:
            bound = calls_bound_by_name(self.flow).get((function, receiver), ())
            if not bound and function is not None and receiver in function.param_set:
                # `def evaluate(model: Tagger, loader)`, or every call of it here hands `model = G()`
                found = self._annotated_parameter(function, receiver) or self._handed_here(function, receiver)
                return {found} if found is not None else set()
            if not bound and function is not None and "." not in receiver and receiver not in function.param_set:
                # `model = Attention()` at the top of the script, `model.calculate_objective(x, y)` in `test()`
                bound = calls_bound_by_name(self.flow).get((None, receiver), ())
                if bound and receiver in self.flow._scope_bindings(function):
                    bound = ()  # (a local of that name)
        classes = {self.flow.imports.qualify(value.func) for value in bound}
        return classes if all(found and (found.rpartition(".")[2][:1].isupper() or not classes_only)
                              for found in classes) else set()

    def _annotated_class(self, assign) -> str | None:
        """The imported class an attribute assignment is annotated with, on the target or on the `__init__`
        parameter it stores (`self.model: Tagger = model`, `def __init__(self, model: Tagger)`)."""
        if type(assign.node) is cst.AnnAssign:
            return self._imported_class_named(assign.node.annotation.annotation)
        function = assign.site.function
        if type(assign.value) is cst.Name and function is not None:
            return self._annotated_parameter(function, assign.value.value)
        return None

    def _handed_at_construction(self, assign) -> str | None:
        """`self.model = model` in `__init__`, where every construction of the class in this file hands that
        parameter an object of one imported class: that class (as qualified)."""
        from modelint.facts.summary_effects import bind_arguments

        function, cls = assign.site.function, assign.site.cls
        if function is None or cls is None or function.name != "__init__" or type(assign.value) is not cst.Name \
                or assign.value.value not in function.param_set:
            return None
        classes = set()
        for site in self.flow.collector.calls:
            if type(site.node.func) is cst.Name and site.node.func.value == cls.name:
                given = bind_arguments(function.params, True, site.node).get(assign.value.value)
                classes.add(self._class_built_by(given) if given is not None else None)
        return classes.pop() if len(classes) == 1 else None

    def _handed_here(self, function, param: str, depth: int = 0) -> str | None:
        """The imported class every call of this file's function hands its parameter `param`, as a name the
        caller binds to a construction of it (`model = G()` then `batch_eval_folder(loader, model)`), or a
        parameter of its own every call of the caller hands one (`synthesis(model)` calling `run(model, x)`),
        when this file calls the function at all and the class is one."""
        from modelint.facts.summary_effects import bind_arguments

        if function is None or function.outer is not None or param in ("self", "cls") or depth > 2:
            return None
        classes = set()
        for call in self.flow._calls_of.get(function, ()):
            given = bind_arguments(function.params, function.cls is not None, call).get(param)
            caller = self.flow.site_of_call[call].site.function
            values = calls_binding(self.flow, caller, given.value) if type(given) is cst.Name else ()
            if not values and type(given) is cst.Name and caller is not None and caller is not function \
                    and given.value in caller.param_set:
                classes.add(self._handed_here(caller, given.value, depth + 1))
                continue
            if not values:
                return None  # (a model made some other way, or none handed: its class is not known here)
            classes.update(self._class_built_by(value) for value in values)
        return classes.pop() if len(classes) == 1 else None

    def _class_built_by(self, value: cst.BaseExpression) -> str | None:
        """The imported class a construction builds (`BPRMF(n_users, n_items).to(device)`), else None."""
        built = unwrap_chain(value)[0]
        return self._imported_class_named(built.func) if type(built) is cst.Call else None

    def _annotated_parameter(self, function, name: str) -> str | None:
        param = next((p for p in function.node.params.params if p.name.value == name), None)
        return self._imported_class_named(param.annotation.annotation) \
            if param is not None and param.annotation is not None else None

    def _imported_class_named(self, annotation: cst.BaseExpression) -> str | None:
        """`Tagger`, imported from another file of the project (not torch's `nn.Module`, not `Optional[...]`)."""
        qualified = self.flow.imports.qualify(annotation)
        return qualified if qualified and qualified.rpartition(".")[2][:1].isupper() \
            and not self.flow.imports.is_torch_name(qualified) else None

    def _method_of_alike_classes(self, receiver: str, method: str):
        """`self.policy.sample(s)` where `self.policy` is built as one of several imported classes: the summary
        of their `method` when every one of them has it and does the same to the model and the grad mode
        (two policies' `sample`, each a forward of `self`); None when they differ or one is unknown. Torch's own
        classes among them (an optimizer the name held before a wrapper of it) do not count."""
        # (`optimizer = Adam(...)`, then a project's wrapper of it on each branch: torch's class has no such method)
        found = self._imported_classes_of(receiver)
        classes = sorted(c for c in found if not self.flow.imports.is_torch_name(c))
        if not classes or len(classes) == len(found) < 2:
            return None
        summaries = []
        for origin in classes:
            self.flow.last_unresolved = None
            summary = self.flow.resolve_method_of(origin, method)
            if summary is None:
                self.flow.ask_the_index_later()
                return None
            summaries.append(summary)
        shapes = {_shape(summary) for summary in summaries}
        return summaries[0] if len(shapes) == 1 else None

    def _record_handed_models(self, call: cst.Call, state: State) -> None:
        """A callable of another file of the project handed a model (`ClassifierLearner(model=net, ...)`):
        what each argument slot gets, for the file that stores it (modelint.runner: a trainer class whose
        every creator hands a model without Dropout or BatchNorm, or one already in eval mode)."""
        handed, origins, in_eval = {}, {}, {}
        for position, arg in enumerate(call.args):
            if arg.star:
                return  # (`*args`: the positions after it are unknown)
            key = value_key(arg.value)
            slot = arg.keyword.value if arg.keyword is not None else str(position)
            if key is not None and state.tracks(key := state.canonical(key)):
                handed[slot] = int(state.fact(key).dependence)
                origins[slot] = state.fact(key).origin or "?"  # (a class of this file: not named for others)
                in_eval[slot] = state.fact(key).definitely_eval
            elif type(arg.value) is cst.Call:  # `TD3(actor_network=Actor(obs, act))`: built for the call
                built = self.flow.provenance.built_here(arg.value, state, self.out.function)
                if built is not None:
                    handed[slot] = int(built.dependence)
                    origins[slot] = built.origin or "?"
                    in_eval[slot] = built.definitely_eval
        qualified = self.flow.imports.qualify(call.func) if handed else None
        if qualified is None and handed and type(call.func) is cst.Name:
            # (`evaluate(model, ...)` after `from utils import *`: named after each star import, for the index)
            for module in self._star_modules_for(call.func.value):
                self._record_handed_classes(f"{module}.{call.func.value}", origins)
        if qualified is None or self.flow.imports.is_torch_name(qualified):
            return
        slots = self.flow.handed_models.setdefault(qualified, {})
        for slot, dependence in handed.items():
            slots[slot] = max(slots.get(slot, 0), dependence)
        modes = self.flow.handed_in_eval.setdefault(qualified, {})
        for slot, evaluating in in_eval.items():
            modes[slot] = modes.get(slot, True) and evaluating
        self._record_handed_classes(qualified, origins)

    def _record_handed_classes(self, reference: str, origins: dict[str, str]) -> None:
        classes = self.flow.handed_classes.setdefault(reference, {})
        for slot, origin in origins.items():
            classes[slot] = origin if classes.get(slot, origin) == origin else "?"

    def _star_modules_for(self, name: str) -> list[str]:
        flow = self.flow
        if name in flow.local_functions or name in flow.modules.classes or name in flow.imports.bindings:
            return []
        return list(flow.imports.star_modules)


def calls_bound_by_name(flow) -> dict:
    """(function, name) -> the calls the function binds the name to (`trainer = Trainer(...)`), once per file."""
    found = flow.__dict__.get("calls_bound_by_name")
    if found is None:
        found = flow.__dict__["calls_bound_by_name"] = {}
        for name, value, site in flow.collector.call_assigns:
            found.setdefault((site.function, name), []).append(value)
    return found


def calls_binding(flow, function, name: str) -> list:
    """The calls `function` binds `name` to, or, for a name it does not bind, the module level's."""
    by_name = calls_bound_by_name(flow)
    return by_name.get((function, name)) or by_name.get((None, name), [])


def handed_known_model(call: cst.Call, key: str, state: State) -> str | None:
    """The keyword argument that is a model whose mode this function switched (or a helper set), if one is
    (`diffusion_model=unet`: named as what the callee runs; a positional one may be anything's input). Of
    several (`autoencoder_model=vae, diffusion_model=unet`), one not in eval mode: the frozen one is no
    concern of a training step, and a validation that forgot `eval()` forgot it on that one."""
    handed = []
    for arg in call.args:
        name = value_key(arg.value) if arg.keyword is not None else None
        if name is None or name == key:
            continue
        name = state.canonical(name)
        fact = state.models.get(name)
        if fact is not None and (fact.train_sites or fact.eval_sites):
            handed.append((name, fact))
    live = [name for name, fact in handed if not fact.definitely_eval]
    return live[0] if live else handed[0][0] if handed else None


def _shape(summary) -> tuple:
    """What a method does that its callers' findings read: its effects on models, its forwards (whose, for
    what, under which grad mode), whether it trains, what it returns and the context it makes."""
    return (tuple(sorted(summary.effects.items())),
            tuple(sorted((f.param, f.intent, f.grad, f.method) for f in summary.forwards)),
            summary.trains, summary.returns is None, summary.context_mode, summary.context_grad,
            tuple(summary.evaluates), tuple(summary.backprops))


def _held_by_the_object(function, key: str | None, state: State) -> bool:
    """Is `key` an attribute of the method's object (`self.model`) that the method has not switched?"""
    if not own_attribute(function, key):
        return False
    canonical = state.canonical(key)
    if canonical not in state.models:
        return True
    fact = state.fact(canonical)
    return fact.entry and not fact.havoc and not fact.train_sites and not fact.eval_sites


def _named_after(function, collector, call: cst.Call, name: str) -> bool:
    """Does the code that makes `call` (a function's body, or the module's) name `name` after it?"""
    from modelint.facts.walk import iter_nodes

    cache = collector.__dict__.setdefault("_names_in_order", {})  # scope -> (node -> rank, name -> last rank)
    if function not in cache:
        rank, last = {}, {}
        for i, node in enumerate(iter_nodes(function.node.body if function is not None else collector.module_node)):
            rank[node] = i
            if type(node) is cst.Name:
                last[node.value] = i
        cache[function] = rank, last
    rank, last = cache[function]
    end = max((rank.get(node, -1) for node in iter_nodes(call)), default=-1)  # (the call's own arguments are in it)
    return last.get(name, -1) > end
