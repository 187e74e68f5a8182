"""Which names a function follows as models, for the call effects (modelint.facts.calls).

A name is a model here when the state tracks it (built, loaded, switched), when it is a
parameter or an element of a container the caller fills, a module-level model, or an
attribute the object shows to be one (`self.model` of a trainer, TorchServe's handler
model, an inherited `self.model` whose output the caller detaches). A name bound once
by a call this file cannot see into, then given `load_state_dict()`, is a module just
built.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.base_shapes import a_visible_base_elsewhere_switches, base_shapes_elsewhere
from modelint.facts.batches import call_fed_batches
from modelint.facts import torch_api as api
from modelint.facts.lattice import ModeFact
from modelint.facts.modules import unwrap_chain
from modelint.facts.names import dotted, head_name, key_root, value_key
from modelint.facts.parts_in_eval import only_dependent_part
from modelint.facts.state import State
from modelint.facts.uses import is_parameter

# Methods of Python's containers and strings: on an object not shown to be a module, `x.items()` is one of them.
_BUILTIN_METHODS = frozenset(name for kind in (dict, list, set, str, tuple) for name in dir(kind)
                             if not name.startswith("_"))


class FollowedNames:
    """Mixed into the call effects: `self.flow`, `self.out`, `self.params` come from there."""

    def follows(self, key: str, state: State | None = None) -> bool:
        """Is `key` a module this function follows (built, set, passed in, an element of a container passed
        in, an object's model)?"""
        return key in self.params or key in self.flow.global_models or \
            (state is not None and state.tracks(key)) or self._object_model(key) or self._passed_element(key) \
            or (self.out.function, key) in self.flow.free.loaded_modules

    def _passed_element(self, key: str) -> bool:
        """`args["model"]`, `args[i]`: an element of a dict or list the caller passes, as the caller
        filled it (`test_args["model"] = model`); the summary of this function takes it back there."""
        return key.endswith("]") and "." not in key and key_root(key) in self.params \
            and not self._receiver(key_root(key))

    def held_by_param(self, key: str) -> bool:
        """`model = context.model`: an attribute of an object the caller passes, named again here; it is
        followed under its full name (`self.` attributes are the object's own, see `_object_model`)."""
        head, dot, _rest = key.partition(".")
        return (bool(dot) and head in self.params and not self._receiver(head)) or self._passed_element(key)

    def _receiver(self, name: str) -> bool:
        """`self`/`cls` of a method (or of a closure in one): the object, whose attributes its class says. (A
        module-level `def new_labels(self)` names its parameter so: what it holds is its caller's.)"""
        return self.out.function is not None and name in self.out.function.receivers

    def _plain_receiver(self, name: str) -> bool:
        """`self` of a method of a class that is no module and runs or switches a model it holds (a trainer
        handing itself to a helper); not a model's own `self`, which a module hands to utilities of its library
        (`is_fsdp_managed_module(self)`), nor a mixin's."""
        cls = self.out.function.owner_class if self.out.function is not None else None
        if cls is None or name not in ("self", "cls") or not self.flow.objects.plain_object(cls):
            return False
        cache = self.flow.__dict__.setdefault("_runs_held_models", {})  # (asked at every such call, every round)
        if cls not in cache:
            held = {dotted(assign.target) for assign in self.flow.collector.attribute_assigns if assign.site.cls is cls}
            cache[cls] = any((key := dotted(call.func) or "") in held or (
                key.rpartition(".")[0] in held and key.rpartition(".")[2] in ("eval", "train", "forward"))
                for call in cls.calls)
        return cache[cls]

    def _object_model(self, key: str) -> bool:
        """`self.model` in a method: an attribute the class shows is a module, or, in a class
        that is no module itself (a trainer, a predictor), any attribute it sets and calls."""
        function = self.out.function
        if not key.startswith("self.") or function is None or function.cls is None:
            return False
        if key.count(".") == 1 and self.flow.assigned_attribute(function.cls, key) \
                and not self.flow.defines_forward(function.cls) and not self.flow.is_module_class(function.cls):
            return True  # set somewhere in the class (an inherited method from a base elsewhere is not)
        if key == api.SERVING_HANDLER_MODEL and self.flow.serving_handler(function.cls):
            return True  # the model TorchServe's BaseHandler loads
        if key.count(".") == 1 and self.flow.modules.has_foreign_base(function.cls) \
                and a_visible_base_elsewhere_switches(self.flow, function.cls, key):
            return True  # a subclass's hook running `self.model`, which its base in another file puts in eval mode
        if self.flow.modules.is_module_name(key, function):
            return True
        # `self.convs[i]` of an `nn.ModuleList` (`nn.ModuleDict`, `nn.Sequential`) the class builds: a layer of it
        container = key[:key.rindex("[")] if key.endswith("]") else None
        return container is not None and "[" not in container and self.flow.modules.is_module_name(container, function)

    def _inherited_attribute(self, key: str) -> bool:
        """`self.model(x)` in a class that is no module and gets `self.model` from a base in another file
        (a serving handler, a project's trainer): maybe a model. Its forward counts only if it is given
        something (`self.one_batch()` is a method) and the caller detaches the output (`.detach()`,
        `.data`): whoever cuts a graph knows one was built."""
        function = self.out.function
        if function is None or function.cls is None or key.count(".") != 1 or not key.startswith("self."):
            return False
        cls = function.cls
        name = key.split(".")[1]
        if not self.flow.modules.has_foreign_base(cls) or self.flow.defines_forward(cls) \
                or self.flow.assigned_attribute(cls, key) or self.flow.has_method(cls, name):
            return False
        shapes = base_shapes_elsewhere(self.flow, cls)  # (`self.get_task(timeout)`: a method of the base)
        return not any(name in shape.defines for shape in shapes or ())

    def _made_from_nothing(self, call: cst.Call) -> bool:
        """`self._icdf(torch.ones_like(x) * q)`: its inputs are constant tensors, no data and no noise: the
        callee computes a function of constants (a quantile, a grid), which says nothing of a model."""
        return bool(call.args) and all(self._constant_tensor(arg.value) for arg in call.args)

    def _constant_tensor(self, expr) -> bool:
        """`torch.ones_like(x) * q`: a constant tensor factory's result, or arithmetic on one."""
        if type(expr) is cst.BinaryOperation:
            return self._constant_tensor(expr.left) or self._constant_tensor(expr.right)
        if type(expr) is cst.Call:
            qualified = self.flow.imports.qualify(expr.func) or ""
            return qualified in api.CONSTANT_TENSOR_FACTORIES
        return False

    def whole_switched_through(self, state: State, part: str) -> str | None:
        """`ranker.model.eval()` where `ranker` is of a module class all of whose mode-dependent layers are in its
        `model` (this file's, or another's the index knows): `ranker` itself, switched whole."""
        owner, dot, attribute = part.rpartition(".")
        if not dot or "." in owner or "[" in part or not state.tracks(owner):
            return None
        flow = self.flow
        function = self.out.function
        local = flow.modules.classes.get(flow.class_of_name(owner, function) or (
            flow._handed_class(function, owner) if function is not None else None) or "")
        if local is not None:
            found = only_dependent_part(flow.modules, flow.collector, local)
        else:
            origin = self._object_origin(state, owner)
            found = flow.index.only_dependent_part(origin, flow.path) if origin and flow.index is not None else None
        return owner if found == attribute else None

    def _is_model(self, state: State, key: str) -> bool:
        return key in state.models or self.follows(key) or self._submodule(state, key)

    def _submodule(self, state: State, key: str) -> bool:
        """`model.encoder(x)`, `self.model.text_encoder(ids)`: a part of a followed model that the file's
        classes build as a module (`self.encoder = Encoder()`), or, where none of them sets that name, the
        classes of the project's other files; it runs in its parent's mode."""
        parent, dot, name = key.rpartition(".")
        if not dot or "[" in name or not (state.tracks(parent) or self.follows(parent, state)):
            return False
        modules = self.flow.modules
        if modules.sets_attribute(name):
            return modules.submodule_dependence(name) is not None
        if name in api.MODE_PRESERVING_METHODS or parent in ("self", "cls") or name in self.flow.method_names \
                or not (parent in state.models or self._object_model(parent) or parent in self.flow.global_models) \
                or (name in _BUILTIN_METHODS and not (state.tracks(parent) and state.fact(parent).certain)):
            # (`self.key_mapping.items()`: a dict's method, whatever `self.items = nn.Embedding(...)` another
            # file's class builds; on a model shown to be one, `model.values(x)` is that part)
            # (what `self` holds is its class's to say, here or in its bases' files; a method of a class of this
            # file is no part; a parameter never shown to be a model may be a tensor: `x.view(...)`)
            return False
        if self.flow.index is None:
            self.flow.asked_submodules.add(name)  # (the second phase knows the other files' classes)
        return modules.part_dependence(name) is not None

    def _loaded_after_building(self, state: State, key: str) -> None:
        """`model = vgg19()` from a factory this file cannot see into, then `model.load_state_dict(...)`:
        weights are loaded into a module just built, and a module is built in training mode. (A name
        bound once, here, by that call, or moved after (`model = model.to(device)`: the same module);
        `torch.load`, `from_pretrained` and the like say their own mode.)"""
        if "." in key or key in self.params or key in state.models:
            return
        built = self._only_building_call(key)
        if built is not None:
            state.put(key, ModeFact(certain=True, train_sites=frozenset({built})))

    def built_to_load(self, key: str, value: cst.BaseExpression) -> cst.Call | None:
        """`model = build(cfg)` (a factory we cannot see into), when this function goes on to load weights into
        `model` on some path (`if pretrained: model.load_state_dict(...)`): a module, built in training mode on
        every path, the one that loads nothing too."""
        if "." in key or key in self.params or (self.out.function, key) not in self._loaded_names():
            return None
        built = self._only_building_call(key)
        return built if built is not None and built is unwrap_chain(value)[0] else None

    def _loaded_names(self) -> set:
        """(function, name) for each `name.load_state_dict(...)` of the file (found once per file)."""
        found = self.flow.__dict__.get("_loaded_state_names")
        if found is None:
            found = self.flow.__dict__["_loaded_state_names"] = {
                (site.site.function, site.text.rpartition(".")[0]) for site in self.flow.collector.calls
                if site.text is not None and site.text.endswith(".load_state_dict")}
        return found

    def _only_building_call(self, key: str) -> cst.Call | None:
        """The one call this function binds `key` to (moves of it aside), unless it is torch's own."""
        function = self.out.function
        values = [value for name, value, site in self.flow.collector.call_assigns
                  if name == key and site.function is function and not _moved_itself(value, key)]
        if len(values) != 1:
            return None
        built, _chain = unwrap_chain(values[0])
        if type(built) is not cst.Call or (self.flow.imports.qualify(built.func) or "").startswith("torch."):
            return None
        return built

    def _own_inference_method(self, call: cst.Call, state: State, receiver: str, method: str) -> bool:
        """`model.eval()`, then `model.infer(batch["image"])` or `model.feature_list(x)`: a method of a model this
        function put in eval mode, of a class we cannot see, handed a dataset's batches: its own inference pass.
        Not the module API (`model.to(device)`, `load_state_dict(sd)`)."""
        from modelint.facts.calls import _NOT_FORWARD_PREFIXES, _UPDATE_WORDS
        from modelint.facts.names import tokens

        if not (call.args and receiver not in ("self", "cls") and method not in _MODULE_API
                and (receiver in state.models or receiver in self.params) and state.fact(receiver).definitely_eval
                and not method.startswith(("_", *_NOT_FORWARD_PREFIXES)) and not set(tokens(method)) & _UPDATE_WORDS):
            return False
        if any(any(not is_parameter(origin) for origin, _level in state.values.get(head_name(arg.value), ()))
               for arg in call.args):
            return False  # handed an output of a forward (`model.module.show_result(img, result)`): post-processing
        # (a model built from a class in sight, here or at the top of the file, is followed through that class)
        return not state.fact(receiver).origin and receiver not in self.flow.global_models \
            and self._imported_class_of(receiver) is None and self.flow.resolve(call, self.out.function)[0] is None \
            and call_fed_batches(self.flow, call, self.flow.site_of_call[call].site)

    def _module_receiver(self, state: State, key: str) -> bool:
        """A receiver known to be an nn.Module, whose other methods may wrap its forward."""
        fact = state.models.get(key)
        if fact is not None and fact.certain and not fact.havoc:
            return True
        return self.flow.modules.is_module_name(key, self.out.function)

    def bound_forward(self, name: str) -> str | None:
        """The model whose bound `forward` every binding of `name` in the function is (`forward = self.net.forward`)."""
        bound = self.flow._scope_bindings(self.out.function).get(name) or []
        receivers = {value_key(b.value.value) if b.kind == "assign" and type(b.value) is cst.Attribute
                     and b.value.attr.value == "forward" else None for b in bound}
        return receivers.pop() if len(receivers) == 1 else None

    def _summarised_elsewhere(self, call: cst.Call, state: State, receiver: str, effects: bool = True) -> bool:
        """`model.generate(x)` on a module built from a class another file defines, which the index summarises:
        what that method does (`self.eval()` first, its forward under no_grad) is in view, no guess needed.
        (With `effects=False`, whether it does anything to the object or not.)"""
        origin = state.fact(receiver).origin
        function = self.out.function
        if not origin and function is not None and receiver in function.param_set:
            origin = self._annotated_parameter(function, receiver)  # (`def render(model: Vocoder, ...)`)
        if not origin or type(call.func) is not cst.Attribute:
            return False
        summary = self.flow.resolve_method_of(origin, call.func.attr.value)
        # (one that runs the object's forward says how, `validation_step()` under its own no_grad, as well)
        return summary is not None and summary.is_method and (
            "self" in summary.effects or not effects or any(use.param == "self" for use in summary.forwards))


def _moved_itself(value: cst.BaseExpression, key: str) -> bool:
    """`model.to(device)` bound back to `model`: the same module, moved."""
    base, chain = unwrap_chain(value)
    return bool(chain) and type(base) is cst.Name and base.value == key



# nn.Module's own methods, which run no forward pass (`generate` runs one: it is a forward's wrapper), and the
# save/load/fuse helpers projects add to their models
_MODULE_API = (api.MODULE_METHODS - {"generate"}) | {"save", "load", "fuse_model"}
