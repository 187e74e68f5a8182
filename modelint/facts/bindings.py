"""Assignments: what a name holds after `target = value`.

- the module it now names (modelint.facts.provenance): a fresh one, the same one under
  another name (an alias), or nothing we follow;
- the forward outputs its value derives from (modelint.facts.intent), kept on local
  names, added to containers (`preds[i] = out`), reported as kept when stored on an
  object (`self.out = out`, where another method may train on it);
- whether it was computed under no_grad (MDL007);
- a constant a phase loop can decide with (`phases = ("train", "val")`).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.uses import NONE, TRAIN, detached
from modelint.facts.lattice import ENTRY_MODE, NO_MODULE, ModeFact, first_site, join_all
from modelint.facts.modules import unwrap_chain
from modelint.facts.names import NOT_LITERAL, any_element, dotted, handed_at, key_root, literal_value, value_key
from modelint.facts.phases import decide, literal_strings
from modelint.facts.parts_in_eval import attributes_built_in_eval
from modelint.facts.provenance import Fresh, Same, apply_chain
from modelint.facts.scopes import own_attribute
from modelint.facts.state import State
from modelint.facts.summary_effects import bind_arguments


class Bindings:
    """Mixed into the interpreter: `self.flow`, `self.out`, `self.params`, `self.uses`, `self.constants`."""

    def forget(self, state: State, key: str) -> None:
        state.forget(key)
        if key in self.params and key not in self.filling and self.out.function is not None \
                and key in self.out.function.param_set:
            # A parameter bound to another value: what happens to it from here on is not the caller's model's
            # (`model = copy.deepcopy(model)`); unless it held None (`if model is None: model = Net()`).
            self.out.rebound_params.add(key)
        self.params.discard(key)

    def _taint(self, state: State, key: str) -> None:
        if state.grad.definitely_free:
            state.grad_free_values[key] = first_site(state.grad.free_sites)
        else:
            state.grad_free_values.pop(key, None)

    def _derive(self, state: State, target: cst.BaseExpression, origins, extend: bool = False) -> None:
        """`target` now holds a value derived from these forward outputs (added to what it held with `extend`)."""
        key = dotted(target)
        if key is None:
            if type(target) is cst.Subscript:  # `preds[i] = out`: the container holds it
                self._derive(state, target.value, origins, extend=True)
            return
        if type(target) is cst.Attribute and origins:
            self.uses.stored(origins)  # kept on an object: another method may train on it
            if key in _back_propagated_attributes(self.flow).get(getattr(self.out.function, "cls", None), ()):
                self.uses.use(origins, TRAIN)  # (Grad-CAM's `self.logits`, which its `backward()` back-propagates)
        if extend:
            if origins:
                state.values[key] = state.values.get(key, NONE) | origins
        elif origins:
            state.values[key] = origins
        else:
            state.values.pop(key, None)

    def _either_of(self, key: str, value: cst.IfExp, state: State) -> bool:
        """`net = ema if use_ema else model`, a side a model this state follows (`model.train()` above): `net` is
        in the mode of either, and switching it may switch either (State.either). The other side may be a name
        or attribute not followed here (an EMA copy made on one path) or None; not a computed value (`x if m
        is None else x + m` is no choice of models)."""
        targets, facts = [], []
        for side in (value.body, value.orelse):
            if type(side) is cst.Name and side.value == "None":
                continue
            if type(side) not in (cst.Name, cst.Attribute, cst.Subscript):
                return False
            bound = self.flow.provenance.bound_value(
                side, state, lambda k: self.follows(k, state) or self.held_by_param(k), self.out.function)
            if isinstance(bound, Same) and bound.key != key and state.tracks(state.canonical(bound.key)):
                targets.append(state.canonical(bound.key))
                facts.append(state.fact(targets[-1]))
            else:
                facts.append(ENTRY_MODE)
        if not targets or len(set(targets)) != len(targets):
            return False
        fact = facts[0].join(facts[1]) if len(facts) == 2 else facts[0]
        self.forget(state, key)
        state.models[key] = fact
        state.either[key] = frozenset(targets)
        return True

    def bind(self, target: cst.BaseExpression, value: cst.BaseExpression | None, origins, state: State) -> None:
        if type(target) in (cst.Tuple, cst.List) and type(value) in (cst.Tuple, cst.List) \
                and len(target.elements) == len(value.elements) \
                and not any(isinstance(e, (cst.StarredElement,)) for e in (*target.elements, *value.elements)):
            for element, bound in zip(target.elements, value.elements):  # `best_loss, best = loss, deepcopy(m)`
                self.bind(element.value, bound.value, origins, state)
            return
        key = value_key(target)
        unpacked = self.flow.provenance.unpacked(value, self.out.function, state) \
            if key is None and type(target) in (cst.Tuple, cst.List) else None
        if unpacked is None and key is None and type(target) in (cst.Tuple, cst.List) and type(value) is cst.Call \
                and api.builds_library_model(self.flow.imports.qualify(value.func) or ""):
            # `model, _, preprocess = open_clip.create_model_and_transforms(name)`: a library's model factory
            # hands the model first, then its transforms or utilities
            built = self.flow.provenance.built_here(value, state, self.out.function)
            unpacked = [built, *[None] * (len(target.elements) - 1)] if built is not None else None
        if unpacked is not None and len(unpacked) == len(target.elements) \
                and not any(type(e) is cst.StarredElement for e in target.elements):
            # `model, optimizer = get_model()`: each name holds what the factory returns at its position
            for element, fact in zip(target.elements, unpacked):
                inner = value_key(element.value)
                if inner is not None:
                    self.forget(state, inner)
                    self._taint(state, inner)
                    self._derive(state, element.value, origins)
                    if fact is not None and type(element.value) is cst.Name:
                        state.models[inner] = fact
            return
        if key is None:
            indices = target.elements[1].value if _values_and_indices(self.flow.imports, target, value) else None
            for element in flatten(target):
                inner = dotted(element)
                if inner is not None:
                    self.forget(state, inner)
                    self._taint(state, inner)
                    self._derive(state, element, detached(origins) if element is indices else origins)
            return
        if key in state.aliases and type(target) is cst.Attribute and not key.startswith("self."):
            del state.aliases[key]  # `scorer._model = other`: no longer the module handed in
        key = state.canonical(key) if "." in key else key
        if value is None:
            self.forget(state, key)
            return
        if dotted(value) == key + ".module" and (state.tracks(key) or self.follows(key, state)):
            return  # `model = model.module`: what its DataParallel wrapper holds, in the same mode
        saved = _saved_mode(value, state)
        if saved is not None and type(target) is cst.Name:
            self.forget(state, key)
            state.saved[key] = saved
            return
        if type(target) is cst.Name and type(value) is cst.IfExp and self._either_of(key, value, state):
            return
        bound = self.flow.provenance.bound_value(
            value, state, lambda k: self.follows(k, state) or self.held_by_param(k), self.out.function)
        if type(target) is cst.Subscript:
            # One element of a container: `models["gen"] = Net()` or `test_args["model"] = model` joins what
            # its elements may hold; `preds[i] = out` adds the output to what the container holds.
            held = bound.fact if isinstance(bound, Fresh) else state.fact(bound.key) if isinstance(bound, Same) \
                and bound.key != key and state.tracks(bound.key) else None
            if held is not None:
                # (the named element, and the abstract one a loop over the container reads)
                for element in filter(None, (key, any_element(key))):
                    state.models[element] = state.models[element].join(held) if element in state.models else held
            self._derive(state, target, origins)
            return
        if isinstance(bound, Fresh):
            self.forget(state, key)
            state.models[key] = bound.fact
            built = unwrap_chain(value)[0]
            if type(target) is cst.Name and type(built) is cst.Call:
                self._alias_held_parts(key, built, state)
                for attribute, part in attributes_built_in_eval(self.flow.modules, built).items():
                    # (`module.model`, a Hugging Face model its constructor loaded: in eval mode as built)
                    state.models[f"{key}{attribute[4:]}"] = ModeFact(eval_sites=frozenset({part}), certain=True)
        elif isinstance(bound, Same):
            if bound.key != key:
                rebound = key in self.out.rebound_params
                self.forget(state, key)
                if key_root(bound.key) == key and not rebound:
                    self.out.rebound_params.discard(key)  # (`model = model.module`: a part of the caller's model)
                if "." not in key:
                    state.aliases[key] = bound.key
                else:
                    state.models[key] = state.fact(bound.key)
            self._derive(state, target, origins)  # (and the outputs it carries, if any: `total = loss`)
            return
        else:
            resumed = self._resumed(key, value, state)
            self.forget(state, key)
            self._taint(state, key)
            loaded = self.built_to_load(key, value) if resumed is None else None
            if resumed is not None:
                state.models[key] = resumed
            elif loaded is not None:
                built = ModeFact(certain=True, train_sites=frozenset({loaded}))
                # (`net = build_network(cfg).to(device).eval()`: the mode its chain leaves it in)
                state.put(key, apply_chain(built, unwrap_chain(value)[1]) or built.join(ModeFact(havoc=True)))
            elif literal_value(value) is not NOT_LITERAL or type(value) is cst.Lambda:
                state.models[key] = NO_MODULE  # (`fn = lambda x: x` on one branch, `fn = nn.Sigmoid()` on the other)
            elif type(target) is cst.Name and type(value) is cst.Dict:
                self._alias_entries(key, value, state)
            elif type(target) is cst.Name and type(value) in (cst.List, cst.Tuple, cst.ListComp):
                self._built_elements(key, value, state)
            elif type(target) is cst.Name and type(value) is cst.Call:
                self._alias_held_arguments(key, value, state)
                self._constructed_models(key, value, state)
                for entry, fact in self.flow.provenance.entries_returned(value, self.out.function).items():
                    state.models[f"{key}[{entry!r}]"] = fact  # `parts = build_parts(cfg)`, then `parts["encoder"]`
        self._derive(state, target, origins)

    def _resumed(self, key: str, value: cst.BaseExpression, state: State) -> ModeFact | None:
        """`model = torch.load(path)` where `model` holds a module built here (`model = Net()` first, then
        `if resume:` or a `try:`): what comes back is presumably that model saved earlier, the same kind of
        module, in the mode it was pickled in (unknown)."""
        if type(value) is not cst.Call or self.flow.imports.qualify(value.func) != "torch.load" \
                or not state.tracks(key):
            return None
        held = state.fact(key)
        if not (held.train_sites or held.eval_sites) or not held.certain or held.parameterless:
            return None
        return ModeFact(entry=True, dependence=held.dependence, certain=True, origin=held.origin)

    def _alias_entries(self, name: str, value: cst.Dict, state: State) -> None:
        """`nets = {"teacher": teacher, ...}`: `nets["teacher"]` is another name of the model `teacher` (its
        `eval()` through either name switches the same object)."""
        for element in value.elements:
            if type(element) is not cst.DictElement:
                continue
            entry = literal_value(element.key)
            held = value_key(element.value)
            if isinstance(entry, str) and held is not None and state.tracks(state.canonical(held)):
                state.aliases[f"{name}[{entry!r}]"] = state.canonical(held)

    def _built_elements(self, name: str, value: cst.List | cst.Tuple | cst.ListComp, state: State) -> None:
        """`members = [Member(), Member()]` or `[Member() for _ in range(k)]`: modules built right here;
        `members[i](x)`, or `m(x)` in `for m in members:`, runs one of them, in the mode they share."""
        elements = [value.elt] if type(value) is cst.ListComp else \
            [element.value if type(element) is cst.Element else None for element in value.elements]
        facts = [self.flow.provenance.built_here(element, state, self.out.function) if element is not None else None
                 for element in elements]
        joined = join_all(facts)
        if joined is not None:
            state.models[f"{name}[]"] = joined

    def _alias_held_arguments(self, name: str, call: cst.Call, state: State) -> None:
        """`scorer = Scorer(model)`, a plain class of this file whose `__init__` keeps `self._model = model`:
        `scorer._model` is another name of `model`, so `model.eval()` before or after reaches the forward
        in `scorer.score(x)`, and a method of the object switching `self._model` switches `model`."""
        func = call.func
        stores = self.flow.objects.constructor_stores.get(func.value) if type(func) is cst.Name else None
        if stores is None or func.value in self.flow.imports.bindings:
            self._alias_held_by_a_class_elsewhere(name, call, state)
            return
        init, kept = stores
        self._alias_kept(name, call, init, kept.items(), state)

    def _alias_kept(self, name: str, call: cst.Call, init, kept, state: State) -> None:
        """`name.<attr>` is the followed model `call` hands the constructor parameter its class keeps as
        `self.<attr>` (`kept`: (parameter, `self.<attr>`) pairs)."""
        bound = bind_arguments(init.params, True, call)
        for param, attribute in kept:
            held = value_key(bound[param]) if param in bound else None
            # (`Adapter(self.model)` in a method: the object's model, in the mode its methods leave it)
            if held is not None and (state.tracks(state.canonical(held)) or own_attribute(self.out.function, held)):
                state.aliases[f"{name}{attribute[4:]}"] = state.canonical(held)

    def _alias_held_parts(self, name: str, call: cst.Call, state: State) -> None:
        """`eagle = Eagle3Model(target_head=head, draft_model=draft)`, a module class (of this file or another)
        that keeps what it is handed: `eagle.draft_model` is `draft`, a part of `eagle` (switching one
        reaches the other: State.put)."""
        func = call.func
        info = self.flow.modules.classes.get(func.value) if type(func) is cst.Name \
            and func.value not in self.flow.imports.bindings else None
        if info is None:
            self._alias_held_by_a_class_elsewhere(name, call, state)
            return
        kept = self.flow.modules.names.kept_from_the_creator(info)  # (`self.<attr>` -> (`__init__`, parameter))
        if kept:
            init = next(iter(kept.values()))[0]
            self._alias_kept(name, call, init, [(param, attribute) for attribute, (_, param) in kept.items()], state)

    def _alias_held_by_a_class_elsewhere(self, name: str, call: cst.Call, state: State) -> None:
        """`predictor = Predictor(model)`, a plain class of another file of the project that keeps the model
        it is handed (`self.model = model`): `predictor.model` is `model` (the index says what it keeps). A
        class the project does not define, handed the model by keyword (`system = pw.System(model=net)`): what
        it holds under that name is the model (`system.model(x)` runs `net`)."""
        handed = [arg for arg in call.args if not arg.star and (key := value_key(arg.value)) is not None
                  and state.tracks(state.canonical(key))]
        qualified = self.flow.imports.qualify(call.func) if handed else None
        if qualified is None or self.flow.imports.is_torch_name(qualified) \
                or not qualified.rpartition(".")[2][:1].isupper():
            return
        index = self.flow.index
        found = index.resolve_shape(qualified, self.flow.path) if index is not None else None
        if found is None:
            for arg in handed:  # (until the second pass says what a class of the project keeps)
                if arg.keyword is not None and not qualified.startswith("."):
                    state.aliases[f"{name}.{arg.keyword.value}"] = state.canonical(value_key(arg.value))
        if index is None:
            self.flow.unresolved.add(qualified)  # (the second pass may know what it keeps)
            return
        if found is None or not found[0].stores:
            return
        # (a module class too: a wrapper module is a model of its own, and switching a part it holds leaves
        # it in no single mode, see State.put)
        for param, position, attribute in found[0].stores:
            arg = handed_at(call, param, position)
            held = value_key(arg) if arg is not None else None
            if held is not None and state.tracks(state.canonical(held)):
                state.aliases[f"{name}{attribute[4:]}"] = state.canonical(held)

    def _constructed_models(self, name: str, call: cst.Call, state: State) -> None:
        """`eval_model = LoadEvalModel(device)`, a plain class of this file whose `__init__` builds
        `self.model = inception_v3()`: `eval_model.model` is that module, in training mode, until a method of
        the object (`eval_model.eval()`) or the caller switches it."""
        func = call.func
        if type(func) is not cst.Name or func.value in self.flow.imports.bindings:
            return
        for attribute, fact in self.flow.objects.constructor_builds(func.value).items():
            key = f"{name}{attribute[4:]}"
            if key not in state.aliases:
                state.models[key] = fact

    def _remember_constant(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        """`phases = ("train", "val")`, `is_train = phase == "train"`: values phase loops decide with."""
        if type(target) is not cst.Name or target.value == self.out.phase_param:
            return  # (`phase = sys.argv[1]` in a script run once per phase: the value of this pass stays)
        known = literal_strings(value, self.constants)
        if known is None:
            known = decide(value, self.constants)
        if known is None:
            self.constants.pop(target.value, None)
        else:
            self.constants[target.value] = known


def flatten(target: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The names a (nested) tuple/list target binds, left to right."""
    out: list[cst.BaseExpression] = []
    stack = [target]
    while stack:
        node = stack.pop()
        if type(node) in (cst.Tuple, cst.List):
            stack.extend(element.value for element in reversed(node.elements))
        elif type(node) is cst.StarredElement:
            stack.append(node.value)
        else:
            out.append(node)
    return out


def _values_and_indices(imports, target: cst.BaseExpression, value: cst.BaseExpression | None) -> bool:
    """`best, index = dist.min(dim=1)`, `scores, labels = torch.topk(p, 5)`: a pair whose second name gets the
    indices, integers that carry no graph (predictions, like an `argmax`)."""
    if type(target) not in (cst.Tuple, cst.List) or len(target.elements) != 2 or type(value) is not cst.Call \
            or type(target.elements[1].value) is not cst.Name:
        return False
    func = value.func
    if type(func) is cst.Attribute and func.attr.value in _PAIRED_METHODS:
        return bool(value.args) or func.attr.value in ("topk", "sort")
    qualified = imports.qualify(func) or ""
    return qualified.startswith("torch.") and qualified.rpartition(".")[2] in _PAIRED_METHODS \
        and (len(value.args) > 1 or qualified.endswith(("topk", "sort")))


# Methods (and torch functions) that, given a dim, return (values, indices).
_PAIRED_METHODS = frozenset({"max", "min", "topk", "sort", "kthvalue", "median", "mode", "cummax", "cummin"})


def _saved_mode(value: cst.BaseExpression, state: State):
    """`model.training` (the value of `was_training = model.training`): the model and its mode now."""
    if type(value) is not cst.Attribute or value.attr.value != "training":
        return None
    key = dotted(value.value)
    if key is None:
        return None
    key = state.canonical(key)
    return key, state.fact(key)


def _back_propagated_attributes(flow) -> dict:
    """class -> the `self.<attr>` some method of it back-propagates (`self.logits.backward(gradient=one_hot)`,
    `torch.autograd.grad(self.score, ...)`): an output kept there is kept for its gradients."""
    found = flow.__dict__.get("_back_propagated_attributes")
    if found is None:
        found = flow.__dict__["_back_propagated_attributes"] = {}
        for site in flow.collector.calls:
            func, cls = site.node.func, site.site.cls
            if cls is None:
                continue
            if type(func) is cst.Attribute and func.attr.value == "backward":
                target = value_key(func.value)
            elif site.qualified in api.GRADIENT_FUNCTIONS and site.node.args:
                target = value_key(site.node.args[0].value)
            else:
                continue
            if target is not None and target.startswith("self.") and target.count(".") == 1:
                found.setdefault(cls, set()).add(target)
    return found
