"""The calls this file makes into other files' objects, for the project index.

Methods it calls on objects it cannot place (`generator.module.infer(x)`, `learner.infer(faces)`):
under no_grad or not, after an `eval()` of the receiver (or of a part of it) or not, by the
literal a keyword is handed (`update(batch, eval=True)`). A method elsewhere with no caller in
sight may be one of these. And the base-class methods a subclass here calls on `self`, which
another file defines (`self.predict_box(feats)`): those have a caller then.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.lattice import mode_of_call
from modelint.facts.names import dotted, key_prefixes, literal_value
from modelint.facts.regions import lexically_grad_free
from modelint.facts.summaries import qualname


def method_calls(flow) -> dict[str, bool | tuple[str, ...]]:
    """Methods this file calls on objects it cannot place (not `self`, no function of this file), and
    whether every such call is under no_grad, or in a function whose grad mode callers this file cannot see
    decide (False: one surely runs with autograd on). A method elsewhere with no caller in sight may be one.
    Calls in module-level functions nothing here calls (`eval_model(model, data)` calling `model.predict(x)`)
    leave it to those functions' callers in other files: their qualnames, which the index answers for."""
    out: dict[str, bool | tuple[str, ...]] = {}
    entries: dict = {}  # function -> its callers' grad mode (asked once per function)
    for _ordinal, site, name in _calls_on_unplaced_objects(flow):
        free = lexically_grad_free(flow.imports, site.site, flow.grad_wrappers)
        function = site.site.function
        if not free and function is not None:
            # (or in a function run with autograd off by every caller here; a private hook nothing here calls,
            # `_assisted_decoding` dispatched by name from a no_grad `generate()`, is no evidence of autograd on)
            if function not in entries:
                entries[function] = flow.entry_grad(function)
            entry = entries[function]
            free = entry.definitely_free or (entry.unknown and not entry.may_enabled) \
                or _run_by_module_calls_elsewhere(flow, function)
            if not free and function.outer is None and not flow.has_callers(function) \
                    and (function.cls is None or not function.name.startswith("_")):
                free = (qualname(function),)  # (or a public method's: the calls of its name elsewhere decide)
        # (and by the literal it hands a keyword, `trainer.update(model, batch, eval=True)`: a helper's phase)
        for key in (name, *(f"{name}({arg.keyword.value}={value!r})" for arg in site.node.args
                            if arg.keyword is not None and type(value := literal_value(arg.value)) in (bool, str))):
            seen = out.get(key, True)
            if seen is True:
                out[key] = free
            elif seen is not False and free is not True:  # (one call with autograd on settles the name)
                out[key] = False if free is False else tuple(sorted(set(seen) | set(free)))
    return out


def inherited_methods_called(flow) -> set[str]:
    """`self.predict_box(feats)` in a class of this file that defines no such method, whose base comes from
    another file: `models.base.GroundingBase.predict_box`, for the index. That method has a caller then (the
    runner's `called_from_other_files`): its own file cannot see this one."""
    out: set[str] = set()
    for site in flow.collector.calls:
        if _inherited_from_elsewhere(flow, site):
            name = site.node.func.attr.value
            out.update(f"{qualified}.{name}" for qualified in flow.bases_elsewhere(site.site.cls.name))
    return out


def inherited_calls(flow) -> dict[str, dict[str, bool]]:
    """The base-class methods a subclass here calls on `self` (`self.run_vocoder(mel)`), by base (as imported
    here) -> method -> whether every such call runs under no_grad (lexically, or in a function every caller
    here runs so): the base's file sees no caller of a public method its subclasses alone call."""
    out: dict[str, dict[str, bool]] = {}
    entries: dict = {}
    for site in flow.collector.calls:
        if not _inherited_from_elsewhere(flow, site):
            continue
        free = runs_without_grad(flow, site, entries)
        for base in flow.bases_elsewhere(site.site.cls.name):
            methods = out.setdefault(base, {})
            name = site.node.func.attr.value
            methods[name] = methods.get(name, True) and free
    return out


def runs_without_grad(flow, site, entries: dict) -> bool:
    """Does the call at `site` run under no_grad: lexically, or in a function every caller here runs under no_grad
    (`entries`: function -> that answer, filled as the calls of one file are looked at)?"""
    if lexically_grad_free(flow.imports, site.site, flow.grad_wrappers):
        return True
    function = site.site.function
    if function is None:
        return False
    if function not in entries:
        entries[function] = flow.entry_grad(function).definitely_free and flow.has_callers(function)
    return entries[function]


def _inherited_from_elsewhere(flow, site) -> bool:
    """Is the call `self.<name>(...)` in a class of this file that defines no such method (nor do its bases
    here), with a base from another file?"""
    func, cls = site.node.func, site.site.cls
    if cls is None or type(func) is not cst.Attribute or type(func.value) is not cst.Name \
            or func.value.value != "self":
        return False
    name = func.attr.value
    return not any(name in info.methods for base in flow.class_and_bases(cls.name)
                   if (info := flow.modules.classes.get(base)) is not None) and bool(flow.bases_elsewhere(cls.name))


def _run_by_module_calls_elsewhere(flow, function) -> bool:
    """A module's `forward` nothing here calls: `percept(a, b)` in other files runs it, in their grad mode."""
    return function.name == "forward" and function.cls is not None and function.outer is None \
        and flow.is_module_class(function.cls) and not flow.has_callers(function)


def _calls_on_unplaced_objects(flow):
    """(ordinal, call site, method name) for each method call on an object this file cannot place (not
    `self`, no function or import of this file), in the order the calls are written."""
    for ordinal, site in enumerate(flow.collector.calls):
        func = site.node.func
        if type(func) is cst.Attribute and site.qualified is None and not _on_super(func) and (
                # (not `model.encode(x)` with `model = Trainer()`: a method of this file's class, placed)
                (not (site.text or "").startswith("self.") and flow.callee_of(site.node) is None)
                # (`self.actor.act(s)`: a method of an object it holds, of no class of this file; whatever the
                # method's name, of an object every assignment builds from an import: `self.model.forward(a, b)`)
                or ((site.text or "").count(".") >= 2 and (func.attr.value not in flow.method_names
                                                           or _holds_an_imported_object(flow, site)
                                                           # (a method of this file's class, on an object
                                                           # it cannot place: `self.model.test(x)` with
                                                           # `self.model = model` handed in)
                                                           or flow.callee_of(site.node) is None))):
            yield ordinal, site, func.attr.value


def _holds_an_imported_object(flow, site) -> bool:
    """`self.model.forward(...)` in a class whose every `self.model = ...` builds an imported class's object."""
    cls = site.site.cls
    key = ".".join((site.text or "").split(".")[:2])
    assigns = flow.collector.assigns_to(cls, key) if cls is not None else ()
    return bool(assigns) and all(
        type(a.value) is cst.Call and (qualified := flow.imports.qualify(a.value.func)) is not None
        and not flow.imports.is_torch_name(qualified) for a in assigns)


def _on_super(func: cst.Attribute) -> bool:
    """`super().get_candidates(ids)`: the method of a base of its own class, no object of unknown class."""
    return type(func.value) is cst.Call and type(func.value.func) is cst.Name and func.value.func.value == "super"


def method_calls_in_eval(flow) -> dict[str, frozenset[str]]:
    """The same calls as `method_calls`: the parts of the receiver each comes, in its function, after an
    `eval()` of, with no `train()` of them between (in the order the calls are written), joined over the calls of
    a name. "" is the receiver itself or an object holding it (`model.eval()`, then
    `model.encoder.get_embeddings(loader)`); "model" its `.model` (`learner.model.eval()`, then
    `learner.infer(faces)`). For a module-level model a function uses without switching it, at each call of that
    function by the script (`model.eval()` at module level, then `decode(feats)` calling `model.greedy_decode(x)`)."""
    out: dict[str, frozenset[str]] = {}
    switches: dict[object, list[tuple[int, str, str]]] = {}  # function -> (ordinal, receiver, "eval"|"train")
    calls_by_script: dict[object, list[int]] = {}  # function -> the ordinals of its calls at module level
    for ordinal, site in enumerate(flow.collector.calls):
        mode = mode_of_call(site.node)
        receiver = dotted(site.node.func.value) if mode is not None else None
        if receiver is not None:
            switches.setdefault(site.site.function, []).append((ordinal, receiver, mode))
        callee = flow._local_callees.get(site.node) if site.site.function is None else None
        if callee is not None:
            calls_by_script.setdefault(callee, []).append(ordinal)

    def parts_in_eval(function, ordinal: int, receiver: str | None) -> frozenset[str]:
        modes: dict[str, str] = {}  # part -> its last switch
        for at, switched, mode in switches.get(function, ()):
            if at >= ordinal or receiver is None:
                break
            if switched in key_prefixes(receiver):
                modes = {"": mode}
            elif switched.startswith(receiver + "."):
                part = switched[len(receiver) + 1:]
                modes = {p: m for p, m in modes.items() if not p.startswith(part + ".")}
                modes[part] = mode
                if mode == "train":
                    modes.pop("", None)  # (the receiver is no longer in eval mode as a whole)
        return frozenset(part for part, mode in modes.items() if mode == "eval")

    for ordinal, site, name in _calls_on_unplaced_objects(flow):
        if name in ("eval", "train"):
            continue
        receiver = dotted(site.node.func.value)
        function = site.site.function
        parts = parts_in_eval(function, ordinal, receiver)
        root = receiver.split(".")[0] if receiver is not None else None
        if not parts and function is not None and function.outer is None and function.cls is None \
                and root in flow.global_models and root not in function.param_set \
                and root not in flow._assigned_names.get(function, ()) \
                and set(flow.syntactic_callers(function)) == {None}:
            called = calls_by_script.get(function, ())
            if called and all("" in parts_in_eval(None, at, receiver) for at in called):
                parts = frozenset({""})
        outer = function.outer if function is not None else None
        if not parts and outer is not None and root is not None and root not in function.param_set \
                and root not in flow._assigned_names.get(function, ()) \
                and all(mode == "eval" for _at, switched, mode in switches.get(outer, ()) if switched == root):
            # (a closure over a model its factory put in eval mode and never back: `judge.eval()`, then
            # `def _reward(x): return judge.get_label(x)`)
            parts = parts_in_eval(outer, len(flow.collector.calls), receiver)
        out[name] = out[name] & parts if name in out else parts
    return out
