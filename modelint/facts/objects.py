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

Other names of an object's models (a wrapper's attribute, a held object's): modelint.facts.object_aliases.
What the public methods hand back to the object's users: modelint.facts.object_exits.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.base_shapes import switched_by_bases_elsewhere
from modelint.facts.lattice import ENTRY_MODE, HAVOC_MODE, ModeFact, first_site, mode_of_call
from modelint.facts.modules import Dependence, rewraps, unwrap_chain
from modelint.facts.names import dotted, key_root
from modelint.facts.walk import iter_nodes
from modelint.facts.object_aliases import ObjectAliases
from modelint.facts.object_attributes import AttributeLayers
from modelint.facts.object_exits import ObjectExits
from modelint.facts.object_starts import ObjectStarts
from modelint.facts.provenance import receiver_key
from modelint.facts.summaries import qualname


class ObjectModes(ObjectAliases, ObjectExits, ObjectStarts, AttributeLayers):
    def __init__(self, flow) -> None:
        self.flow = flow

    @cached_property
    def _by_class(self) -> dict[str, dict[str, ModeFact]]:
        """class -> `self.<attr>` -> what its methods, its creators and its training leave on the attribute."""
        out = {cls_name: dict(facts) for cls_name, facts in self._by_methods.items()}
        for (cls_name, key), fact in self.started_by_creators.items():
            facts = out.setdefault(cls_name, {})
            facts[key] = facts[key].join(fact) if key in facts else fact
        for (cls_name, key), fact in self.started_by_training.items():
            facts = out.setdefault(cls_name, {})
            facts.setdefault(key, fact)  # (only where no method sets a mode)
        return out

    @cached_property
    def _by_methods(self) -> dict[str, dict[str, ModeFact]]:
        """class -> `self.<attr>` -> the join of what the class's methods leave on it."""
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
                if method == "__init__" and (cls_name, key) in self.switched_by_creators:
                    # (built there, then put in eval mode by every creator before any other method runs)
                    fact = self.switched_by_creators[cls_name, key]
                    facts[key] = facts[key].join(fact) if key in facts else fact
                    continue
                site = summary.effect_sites.get(key)
                built = flow.modules.construction(site) if type(site) is cst.Call else None
                if effect == "train" and built is not None and not built.certain:
                    fact = ENTRY_MODE  # a class we cannot see may set its own mode (a wrapper calling eval())
                elif (effect in ("eval", "train") or (effect == "may-train" and key in self._built_by_methods.get(
                        cls_name, ()))) and site is not None:
                    # (`if self._net is None: self._initialize(n)`: built on first use, in training mode; before,
                    # there is no module at all)
                    effect = "train" if effect == "may-train" else effect
                    fact = ModeFact(dependence=built.dependence if built is not None else Dependence.UNKNOWN,
                                    certain=built is None or built.certain,
                                    parameterless=built is not None and built.parameterless).switched(effect, site)
                    if method != "__init__" and key not in self._built_by_methods.get(cls_name, ()):
                        fact = fact.join(ENTRY_MODE)  # set by a method someone calls, at some point
                else:
                    fact = HAVOC_MODE if effect == "unknown" else ENTRY_MODE
                facts[key] = facts[key].join(fact) if key in facts else fact
        return out

    def _factory_builds(self, value, function) -> bool:
        """Is `value` a call of a function of this file (a method of the object, say) whose summary says it
        returns a module it builds, in training mode?"""
        if type(value) is not cst.Call:
            return False
        summary, _receiver = self.flow.resolve(value, function)
        returned = summary.returns if summary is not None else None
        return returned is not None and returned.mode == "train" and returned.certain and returned.param is None

    @cached_property
    def _built_by_methods(self) -> dict[str, frozenset[str]]:
        """class -> attributes that every assignment in the class sets to a module it builds in training mode
        (`self.generator = Generator(...)` in `fit()`, None before): before the method that builds it runs there
        is no such module, so whatever mode it has later is what the class's own methods leave, not an unknown one."""
        built: dict[str, set[str]] = {}
        other: set[tuple[str, str]] = set()
        for assign in self.flow.collector.attribute_assigns:
            cls = assign.site.cls
            key = dotted(assign.target)
            if cls is None or key is None or key.count(".") != 1 or not key.startswith("self."):
                continue
            if assign.value is not None and rewraps(self.flow.imports, assign.value, key):
                continue  # `self.net = nn.DataParallel(self.net)`, `self.net = self.net.cuda()`: the same module
            if type(assign.value) is cst.Name and assign.value.value == "None":
                continue  # `self._generator = None` in `__init__`: a placeholder, no module yet
            made = self.flow.modules.module_expression(assign.value)[0] if assign.value is not None else None
            # (`self.G: Generator = Generator(opts)` too: an annotated assignment binds the same)
            binds = type(assign.node) in (cst.Assign, cst.AnnAssign)
            if made is not None and made.certain and not made.starts_in_eval and not made.runs_loaded and binds:
                built.setdefault(cls.name, set()).add(key)
            elif binds and self._factory_builds(assign.value, assign.site.function):
                built.setdefault(cls.name, set()).add(key)  # `self.network = self._get_network()`
            else:
                other.add((cls.name, key))
        classes = self.flow.modules.classes
        return {name: frozenset(key for key in keys if (name, key) not in other
                                and not switched_by_bases_elsewhere(self.flow, classes[name], key))
                for name, keys in built.items() if name in classes}

    def creators_argument(self, function, key: str) -> tuple | None:
        """`self.model` that every assignment sets to a constructor parameter as it is (`def __init__(self,
        model): self.model = model`), in a class this file never builds: (the classes whose instances run
        `function`, that parameter, its position after `self`), for the runner to ask what the creators in
        other files hand there. None when this file knows the model (`attribute_dependence`)."""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1 \
                or self.attribute_dependence(function, key) is not Dependence.UNKNOWN:
            return None
        stored = self.flow.modules.names.stored_parameters
        for name in self.flow.class_and_bases(function.cls.name):
            params = next((p for (c, k), p in stored.items() if k == key and c.name == name), None)
            if params is None:
                continue
            if len(params) != 1:
                return None
            init, param = params[0]
            positional = init.positional_params[1:]  # (after `self`)
            position = positional.index(param) if param in positional else -1
            classes = tuple(sorted(c for c in self.flow.modules.classes
                                   if function.cls.name in self.flow.class_and_bases(c)))
            return classes, param, position
        return None

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
        # (a subclass handing its parameter of that name on to `super().__init__(model)`: the same attribute)
        for cls_name, info in self.flow.modules.classes.items():
            init = self.flow.local_functions.get(f"{cls_name}.__init__")
            for base in self.flow.class_and_bases(cls_name)[1:] if init is not None and info.outer is None else ():
                for param, key in out.get(base, (None, {}))[1].items():
                    if param in init.param_set and not self.flow.collector.assigns_to(info, key):
                        out.setdefault(cls_name, (init, {}))[1].setdefault(param, key)
        return out

    def constructor_builds(self, cls_name: str) -> dict[str, ModeFact]:
        """`self.<attr>` -> the mode of the module the `__init__` of a plain class of the file (or of its
        first base here that writes one) builds there (`self.model = inception_v3().to(device)`): what a new
        object holds, before any of its methods runs. Not a module of a class we cannot see, which may set
        its own mode."""
        info = self.flow.modules.classes.get(cls_name)
        if info is None or info.outer is not None or not self.plain_object(info):
            return {}
        summary = next(filter(None, (self.flow.summaries.get(f"{name}.__init__")
                                     for name in self.flow.class_and_bases(cls_name))), None)
        out: dict[str, ModeFact] = {}
        for key, effect in (summary.effects.items() if summary is not None else ()):
            site = summary.effect_sites.get(key)
            built = self.flow.modules.construction(site) if type(site) is cst.Call else None
            if effect in ("may-eval", "may-train") and self._only_built_here(info, key, effect == "may-eval"):
                effect = effect[4:]  # (`if arch == "a": self.net = A() elif ...: self.net = B()`: no other object)
            if not key.startswith("self.") or key.count(".") != 1 or effect not in ("eval", "train"):
                continue
            if built is not None and built.certain:
                out[key] = ModeFact(dependence=built.dependence, parameterless=built.parameterless,
                                    origin=built.origin).switched(effect, site)
            elif effect == "eval" and type(site) is cst.Call:
                # (`self.model = build_model(cfg)`, then `self.model.eval()`: whatever a factory built is in eval mode)
                out[key] = ModeFact().switched("eval", site)
        return out

    def _only_built_here(self, info, key: str, any_call: bool = False) -> bool:
        """Is every assignment of `self.<attr>` in the class a construction (or a wrap of what is there,
        `self.G = DataParallel(self.G)`; with `any_call`, any call: a factory's) in its `__init__` or a method it
        calls (`self.build_model()`)? Then a new object whose constructor took a path that builds none has no such
        attribute at all: the paths that build one are the only ones a method can meet it on."""
        assigns = self.flow.collector.assigns_to(info, key)
        init = info.methods.get("__init__")
        setting_up = {"__init__"} | {node.func.attr.value for node in (iter_nodes(init.body) if init else ())
                                     if type(node) is cst.Call and type(node.func) is cst.Attribute
                                     and dotted(node.func.value) == "self"}
        modules = self.flow.modules
        return bool(assigns) and all(
            a.site.function is not None and a.site.function.name in setting_up and type(a.value) is cst.Call
            and (any_call or modules.construction(unwrap_chain(a.value)[0]) is not None
                 or rewraps(self.flow.imports, a.value, key)) for a in assigns)

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
        return self._joined_over_bases(function, key, self._by_class)

    def left_by_methods(self, function, key: str) -> ModeFact | None:
        """What the methods of the object alone leave on `self.<attr>` (not what its creators hand it)."""
        return self._joined_over_bases(function, key, self._by_methods)

    def _joined_over_bases(self, function, key: str, by_class: dict) -> ModeFact | None:
        if not self.plain_object(function.cls):
            return None
        found = None
        for cls_name in self.flow.class_and_bases(function.cls.name):
            fact = by_class.get(cls_name, {}).get(key)
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
            if mode_of_call(site.node) != "train":  # (`self.net.to(device).eval()`: `self.net`)
                out.setdefault(site.site.cls.name, set()).add(dotted(unwrap_chain(func.value)[0]))
        return out

    def handed_in(self, function, key: str):
        """For a method of a class that is no module and never trains: the method that stores the model
        a caller hands it in `self.<attr>` (`def __init__(self, model): self.model = model.to(device)`),
        when no method of the class (or of its bases or subclasses here) ever switches that attribute's mode. Such an
        inference wrapper (a predictor, an evaluator) runs the model in whatever mode its creator left."""
        if function is None or function.cls is None or not key.startswith("self.") or key.count(".") != 1 \
                or not self.plain_object(function.cls) or self.flow.modules.has_foreign_base(function.cls):
            return None  # (a base elsewhere may train it or set its mode: an RL algorithm, a framework's runner)
        # (and the subclasses here: `PyTorchTrainer(Predictor)` trains `self.module` and switches it)
        classes = set(self.flow.class_and_bases(function.cls.name)) | {
            name for name in self.flow.modules.classes if function.cls.name in self.flow.class_and_bases(name)}
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
        name = qualname(function)
        for other in self.flow.flows:
            method = other.function
            if method is None or method is function or method.cls is None or method.cls.name not in classes:
                continue
            for forward in other.all_forwards():
                if forward.callee is not None and forward.callee.qualname == name:
                    continue  # (through this very method: `predict_volume()` switching, then calling it)
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

