"""Where a module value comes from, and so which mode it starts in (RULES.md 3a).

`bound_value` answers, for the right-hand side of an assignment (or an argument):
- a fresh module: a constructor (`Net(...)`, `nn.Sequential(...)`, torchvision/timm
  builders: train mode), Hugging Face `from_pretrained` (eval mode), a project function
  whose summary says it returns a module (`build_model(cfg)`, in this file or another),
  `copy.deepcopy(m)` (the mode `m` has here); chains such as `Net().to(dev).eval()`
  apply their mode calls;
- the same module under another name: `model.to(device)`, `nn.DataParallel(model)`,
  `model.cuda().train()` (chains that return self);
- or nothing we follow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.lattice import ENTRY_MODE, ModeFact, join_all, mode_of_call
from modelint.facts.modules import Dependence, unwrap_chain
from modelint.facts.names import key_root, literal_value, value_key

# Calls that return a deep copy of their first argument, in the mode it has then (SWA's averaged model
# copies the module it is given; it is not put in eval mode).
DEEPCOPY = frozenset({"copy.deepcopy", "torch.optim.swa_utils.AveragedModel"})


@dataclass(frozen=True)
class Fresh:
    fact: ModeFact


@dataclass(frozen=True)
class Same:
    key: str  # canonical key of the module this value is


def apply_chain(fact: ModeFact, applied: list[cst.Call]) -> ModeFact | None:
    """The fact after `.train()`/`.eval()` calls of a chain (None: a mode we cannot know)."""
    for call in applied:
        method = call.func.attr.value if type(call.func) is cst.Attribute else None
        if method in ("train", "eval"):
            mode = mode_of_call(call)
            if mode is None:
                return None
            fact = fact.switched(mode, call)
    return fact


def receiver_key(expr: cst.BaseExpression, imports) -> str | None:
    """`model`, `model.to(dev)`, `nn.DataParallel(model)`, `model.cuda().eval()` -> "model"."""
    base, _ = unwrap_chain(expr)
    while type(base) is cst.Call and imports.qualify(base.func) in api.MODULE_WRAPPERS and base.args:
        base, _ = unwrap_chain(base.args[0].value)
    unwrapped = _unwrapped_by_getattr(base)
    return unwrapped if unwrapped is not None else value_key(base)


def _unwrapped_by_getattr(node: cst.BaseExpression) -> str | None:
    """`getattr(model, "module", model)`: what a DataParallel wrapper holds, or the model itself: "model"."""
    if not (type(node) is cst.Call and type(node.func) is cst.Name and node.func.value == "getattr"
            and len(node.args) == 3 and not any(arg.keyword or arg.star for arg in node.args)):
        return None
    first, name, default = (arg.value for arg in node.args)
    key = value_key(first)
    if type(name) is not cst.SimpleString or name.evaluated_value != "module" or key is None \
            or value_key(default) != key:
        return None
    return key


def _held_by_new_object(flow, value: cst.BaseExpression) -> ModeFact | None:
    """`Loader(path).lm`, of a plain class of this file whose `__init__` builds `self.lm` (and maybe switches
    it): that module's mode as the constructor leaves it (modelint.facts.objects.constructor_builds)."""
    if type(value) is not cst.Attribute or type(value.value) is not cst.Call or type(value.value.func) is not cst.Name \
            or value.value.func.value not in flow.modules.classes or value.value.func.value in flow.imports.bindings:
        return None
    return flow.objects.constructor_builds(value.value.func.value).get(f"self.{value.attr.value}")


class Provenance:
    def __init__(self, flow) -> None:
        self.flow = flow
        self.modules = flow.modules
        self.imports = flow.imports

    def built_here(self, value: cst.BaseExpression, state, enclosing) -> ModeFact | None:
        """The module `value` builds right there (`Actor(obs, act)`, `Net().to(dev)`, a factory's call), in the
        mode it starts in; None for anything else (a model named, whatever it holds)."""
        bound = self.bound_value(value, state, lambda k: False, enclosing)
        return bound.fact if isinstance(bound, Fresh) else None

    def bound_value(self, value: cst.BaseExpression, state, follows, enclosing) -> Fresh | Same | None:
        """What binding `value` gives; `follows(key)` says whether a key names a module we follow."""
        built, applied = self.modules.module_expression(value)
        if built is not None:
            source = self._regrouped(built.call, state, follows, enclosing)
            if source is not None:  # `nn.Sequential(*list(vgg.children())[:31])`: vgg's own layers, in vgg's mode
                fact = state.fact(source)
                return Fresh(apply_chain(fact, applied) or fact)
        if built is not None and built.runs_loaded:
            # (a wrapper of what its constructor loads: its mode is the loader's, unknown here)
            fact = ModeFact(havoc=True, dependence=built.dependence, certain=built.certain, origin=built.origin)
            return Fresh(apply_chain(fact, applied) or fact)
        if built is not None:
            fact = ModeFact(
                train_sites=frozenset() if built.starts_in_eval else frozenset({built.call}),
                eval_sites=frozenset({built.call}) if built.starts_in_eval else frozenset(),
                dependence=built.dependence,
                certain=built.certain,
                origin=built.origin,
                parameterless=built.parameterless,
            )
            return Fresh(apply_chain(fact, applied) or fact.join(ModeFact(havoc=True)))
        base, applied = unwrap_chain(value)
        if type(base) is cst.Call:
            fresh = self._from_call(base, state, follows, enclosing)
            if fresh is not None:
                fact = apply_chain(fresh, applied)
                return Fresh(fact if fact is not None else fresh.join(ModeFact(havoc=True)))
        if type(base) is cst.Subscript and type(base.value) is cst.Call:
            held = self.entry_returned(base.value, _literal_key(base), enclosing)
            if held is not None:  # `load_embeddings(path)["embeddings"]`
                fact = apply_chain(held, applied)
                return Fresh(fact if fact is not None else held.join(ModeFact(havoc=True)))
        held = _held_by_new_object(self.flow, base)
        if held is not None:  # `lm = Loader(path).lm`: what the constructor of a plain class of the file left there
            fact = apply_chain(held, applied)
            return Fresh(fact if fact is not None else held.join(ModeFact(havoc=True)))
        if type(base) is cst.Attribute and type(unwrap_chain(base.value)[0]) is cst.Call:
            # `densenet121(pretrained=True).features`: a part of a model built right here, in its mode (what
            # the part holds is not known: the classifier of a model with BatchNorm may have none)
            whole = self.bound_value(base.value, state, follows, enclosing)
            if isinstance(whole, Fresh):
                part = replace(whole.fact, origin=None, dependence=Dependence.INDEPENDENT
                               if whole.fact.dependence is Dependence.INDEPENDENT else Dependence.UNKNOWN)
                fact = apply_chain(part, applied)
                return Fresh(fact if fact is not None else part.join(ModeFact(havoc=True)))
        source = receiver_key(value, self.imports)
        if source is not None:
            source = state.canonical(source)
            if follows(source):
                return Same(source)
        return None

    def regrouped_parameter(self, value: cst.BaseExpression, state, function) -> str | None:
        """`return nn.Sequential(*list(net.children())[:k])`, or a name bound once to that, where `net` is a
        parameter still as the caller handed it: the container holds the caller's own layers, in their mode
        (not a fresh model in training mode), as if the function handed `net` back. So does a copy of it,
        `cut = copy.deepcopy(net)`, its head replaced, returned with no mode switched on the way."""
        if function is None:
            return None
        returned, values = value, [value]
        if type(value) is cst.Name:  # `cut = nn.Sequential(*...)` (on each branch), then `return cut`
            bound = self.flow._scope_bindings(function).get(value.value, ())
            if not bound or any(binding.kind != "assign" for binding in bound):
                return None
            values = [binding.value for binding in bound]
        params = function.param_set - {"self", "cls"}
        sources = set()
        for value in values:
            copied = self._copied_parameter(value, params)
            if copied is not None:
                sources.add(copied)
                continue
            built, applied = self.modules.module_expression(value)
            if built is None or apply_chain(ModeFact(), applied) != ModeFact():
                return None  # (`nn.Sequential(*layers).eval()`: the mode is the chain's)
            # (of the parameter, or of a part of it still in its mode: `*list(net.features.children())[:k]`)
            source = self._regrouped(built.call, state,
                                     lambda k: key_root(k) in params and state.fact(k) == ENTRY_MODE, function)
            sources.add(key_root(source) if source is not None else None)
        source = sources.pop() if len(sources) == 1 else None
        if type(returned) is cst.Name and state.fact(returned.value) != ENTRY_MODE:
            return None  # (the copy switched before it is handed back: `cut.eval(); return cut`)
        return source if source in params and state.fact(source) == ENTRY_MODE else None

    def _copied_parameter(self, value: cst.BaseExpression, params) -> str | None:
        """`copy.deepcopy(net)` of a parameter: that parameter."""
        if type(value) is not cst.Call or self.imports.qualify(value.func) != "copy.deepcopy" or not value.args:
            return None
        copied = value.args[0].value
        return copied.value if type(copied) is cst.Name and copied.value in params else None

    def _hands_back_its_arguments(self, call: cst.Call, enclosing) -> bool:
        """`amp.initialize(model, opt)`, or `accelerator.prepare(model, opt, loader)` on an `Accelerator()`."""
        if self.imports.qualify(call.func) in _PREPARING:
            return True
        func = call.func
        if type(func) is not cst.Attribute or func.attr.value != "prepare" or type(func.value) is not cst.Name:
            return False
        scope = enclosing
        while scope is not None and func.value.value not in self.flow._scope_bindings(scope):
            scope = scope.outer
        bound = self.flow._scope_bindings(scope).get(func.value.value, ())
        return bool(bound) and all(b.kind == "assign" and type(b.value) is cst.Call
                                   and self.imports.qualify(b.value.func) == "accelerate.Accelerator" for b in bound)

    def _regrouped(self, call: cst.Call, state, follows, enclosing) -> str | None:
        """The model whose own submodules a container gathers, every argument starred from its `children()`,
        `modules()` or one of its parts (`*list(vgg.children())[:31]`, `*encoder.features`, or a name bound
        once to such a list): no new layer is built, so the container is in that model's mode."""
        if self.imports.qualify(call.func) not in _REGROUPING or not call.args:
            return None
        sources = set()
        for arg in call.args:
            if arg.star != "*":
                return None
            value = arg.value
            if type(value) is cst.Name:  # `modules = list(model.children())[:-1]`, then `nn.Sequential(*modules)`
                bound = self.flow._scope_bindings(enclosing).get(value.value, ())
                value = bound[0].value if len(bound) == 1 and bound[0].kind == "assign" else value
            source = _gathered_from(value)
            if source is None:
                return None
            sources.add(state.canonical(source))
        source = sources.pop() if len(sources) == 1 else None
        return source if source is not None and (follows(source) or state.tracks(source)) else None

    def _from_call(self, call: cst.Call, state, follows, enclosing) -> ModeFact | None:
        qualified = self.imports.qualify(call.func)
        if qualified in DEEPCOPY and call.args and not call.args[0].star:
            source = receiver_key(call.args[0].value, self.imports)
            if source is not None:
                source = state.canonical(source)
                if follows(source):
                    return state.fact(source)
            return None
        self.flow.last_unresolved = None
        summary, _receiver = self.flow.resolve(call, enclosing)
        if summary is None and self.flow.last_unresolved is not None:
            self.flow.unresolved.add(self.flow.last_unresolved)  # another file may say what it returns
        returned = summary.returns if summary is not None else None
        if returned is None:
            return None
        if returned.param is not None:  # `model = load_checkpoint(path, model)`: the same module, as it came
            given = returned_argument(call, summary)
            bound = self.bound_value(given, state, lambda k: state.tracks(k) or follows(k), enclosing) \
                if given is not None else None
            if isinstance(bound, Fresh):  # `load_checkpoint(path, Encoder())`
                return bound.fact
            return state.fact(bound.key) if isinstance(bound, Same) else None
        return _handed_back(returned, call)

    def entries_returned(self, call: cst.Call, enclosing) -> dict[str, ModeFact]:
        """`parts = build_parts(cfg)`: the module under each literal key of the dict the factory returns."""
        self.flow.last_unresolved = None
        summary, _receiver = self.flow.resolve(call, enclosing)
        if summary is None:
            self.flow.ask_the_index_later()  # (a factory of another file: the index knows)
        if summary is None or not summary.returns_entries:
            return {}
        return {key: _handed_back(held, call) for key, held in summary.returns_entries.items()}

    def entry_returned(self, call: cst.Call, key: str | None, enclosing) -> ModeFact | None:
        return self.entries_returned(call, enclosing).get(key) if key is not None else None

    def unpacked(self, call: cst.Call, enclosing, state=None) -> list | None:
        """`model, optimizer = get_model()`: the module each position of the tuple a factory returns holds
        (None where it holds none we know), from its summary; `model, opt = amp.initialize(model, opt)`: what
        it is handed, position by position."""
        if type(call) is not cst.Call:
            return None
        if state is not None and self._hands_back_its_arguments(call, enclosing):
            keys = [receiver_key(arg.value, self.imports) if not arg.star else None
                    for arg in call.args if arg.keyword is None]
            return [state.fact(state.canonical(key)) if key is not None and state.tracks(state.canonical(key))
                    else None for key in keys]
        self.flow.last_unresolved = None
        summary, _receiver = self.flow.resolve(call, enclosing)
        if summary is None and type(call.func) is cst.Subscript and type(call.func.value) is cst.Name:
            # `LOADERS[kind](name)`: whichever of the registry's functions it calls, each position joined
            loaders = self._registered_loaders(call.func.value.value)
            found = [self._items(loader, call, state) for loader in loaders]
            return [join_all(facts) for facts in zip(*found)] if found else None
        if summary is None:
            self.flow.ask_the_index_later()  # (`net, aug = build_model(cfg)` of another file: the index knows)
        if summary is None or not summary.returns_items:
            return None
        return self._items(summary, call, state)

    def _items(self, summary, call: cst.Call, state) -> list:
        return [self._handed_back_argument(item.param, summary, call, state) if item is not None and item.param
                else _handed_back(item, call) if item is not None else None for item in summary.returns_items]

    def _registered_loaders(self, registry: str) -> list:
        """The summaries of the functions of this file a module-level dict of them holds, when they all hand
        back tuples of one length (`{"open_clip": load_open_clip, "hf": load_hf}`, each `return model, transform`)."""
        names = self.flow.modules.function_registries.get(registry)
        summaries = [self.flow.summaries.get(name) for name in names or ()]
        if not summaries or None in summaries or any(not s.returns_items for s in summaries) \
                or len({len(s.returns_items) for s in summaries}) != 1:
            return []
        return summaries

    def _handed_back_argument(self, param: str, summary, call: cst.Call, state) -> ModeFact | None:
        """`model, msg = load_checkpoint(model, path)`: the module the call hands the parameter it gives back."""
        from modelint.facts.summary_effects import bind_arguments

        arg = bind_arguments(summary.params, summary.is_method, call).get(param)
        key = receiver_key(arg, self.imports) if arg is not None else None
        if state is None or key is None or not state.tracks(state.canonical(key)):
            return None
        return state.fact(state.canonical(key))


# Calls that hand back what they are given, prepared for mixed precision or devices, in the same order.
_PREPARING = frozenset({"apex.amp.initialize"})


def _handed_back(returned, call: cst.Call) -> ModeFact:
    """The module a call of a factory hands back, as its summary's ReturnFact says."""
    site = returned.site if returned.site is not None else call
    if returned.mode == "eval":
        train, evaluation = frozenset(), frozenset({site})
    elif returned.mode == "train":
        train, evaluation = frozenset({site}), frozenset()
    else:
        return ModeFact(havoc=True, dependence=Dependence(returned.dependence), certain=returned.certain,
                        parameterless=returned.parameterless)
    return ModeFact(train_sites=train, eval_sites=evaluation, dependence=Dependence(returned.dependence),
                    certain=returned.certain, parameterless=returned.parameterless)


def returned_argument(call: cst.Call, summary) -> cst.BaseExpression | None:
    """What `call` hands the parameter the function's summary says it returns (`load_checkpoint(path, model)`:
    `model`), a method's `self` left out as its callers leave it out."""
    param = summary.returns.param if summary.returns is not None else None
    if not param:
        return None
    params = summary.params[1:] if summary.is_method and summary.params[:1] in (["self"], ["cls"]) else summary.params
    return argument_for(call, params, param)


def argument_for(call: cst.Call, params: list[str], name: str) -> cst.BaseExpression | None:
    """What `call` passes for the parameter `name` of a function with these parameters (`self` left out by
    the caller of a method is not among `params` as the summary lists them)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    positional = [arg for arg in call.args if arg.keyword is None]
    if any(arg.star for arg in positional) or name not in params:
        return None
    index = params.index(name)
    return positional[index].value if index < len(positional) else None


_REGROUPING = frozenset({"torch.nn.Sequential", "torch.nn.ModuleList"})


def _gathered_from(expr: cst.BaseExpression) -> str | None:
    """`list(vgg.children())[:31]`, `vgg.children()`, `vgg.features`, `list(vgg.features)[:k]`: `vgg`(`.features`)."""
    while True:
        if type(expr) is cst.Subscript:
            expr = expr.value
        elif type(expr) is cst.Call and type(expr.func) is cst.Name and expr.func.value in ("list", "tuple") \
                and len(expr.args) == 1:
            expr = expr.args[0].value
        else:
            break
    if type(expr) is cst.Call and type(expr.func) is cst.Attribute and not expr.args \
            and expr.func.attr.value in ("children", "modules"):
        return value_key(expr.func.value)
    if type(expr) is cst.Attribute:
        return value_key(expr)
    return None


def _literal_key(subscript: cst.Subscript) -> str | None:
    """`parts["encoder"]`: the literal string key, if the subscript is one."""
    if len(subscript.slice) != 1 or type(subscript.slice[0].slice) is not cst.Index:
        return None
    key = literal_value(subscript.slice[0].slice.value)
    return key if isinstance(key, str) else None

