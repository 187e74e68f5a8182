"""The construction behind a factory's returned module, in terms of the factory's own parameters.

`def build_model(cfg, trainable=False): model = Detector(cfg, trainable=trainable); return model.to(dev)`:
a caller's `build_model(cfg, False)` builds what `Detector(cfg, trainable=False)` builds. Some questions
are answered by a construction's arguments alone: a forward that picks a grad-free branch by a flag
(modelint.facts.flag_forwards), a class that freezes itself unless a flag is set (freezing.built_frozen).
`constructions_behind` answers them through factories, those of other files and factories handing on to
factories (`model, criterion = build_detector(args, trainable)` in `build_model`), by rewriting the
caller's call into the construction it amounts to, with the literals the caller hands put in place.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import libcst as cst

from modelint.facts.modules import rewraps, unwrap_chain
from modelint.facts.names import NOT_LITERAL, handed_at, literal_value
from modelint.facts.walk import iter_nodes

_UNKNOWN = cst.Name("_not_a_literal_")  # what a call hands a parameter when no literal can be told
_DEPTH = 4  # factories handing on to factories, at most
_ALTERNATIVES = 16  # constructions a factory may pick from, at most (`if args.model == "yolov2": ...`)


class Construction(NamedTuple):
    """The call a factory's module (or item `item` of the tuple it hands back) comes from."""

    reference: str  # the callable, qualified as the factory's file imports it; ":Name" for one of that file
    arguments: tuple  # (slot, source): slot a keyword or a position; source ("param", name), ("literal", v) or ()
    item: int | None  # the callable hands back a tuple and the module is this item of it (a factory's)
    params: tuple  # the factory's own parameters: (name, position or -1, ("literal", default) or ())
    open_ended: bool = False  # it also hands on `*args`/`**kwargs`: any argument may come from there


def factory_constructions(flow) -> dict[str, dict]:
    """The top-level functions of the file that hand back a module one construction builds -> item (None: the
    whole value) -> Construction. Exported for other files (FileSummary.factory_constructions)."""
    cache = flow.__dict__.get("_factory_constructions")
    if cache is None:
        cache = flow.__dict__["_factory_constructions"] = {}
        for function in flow.collector.functions:
            if function.outer is None and function.cls is None:
                found = _constructions(flow, function)
                if found:
                    cache[function.name] = found
    return cache


def constructions_behind(facts, call: cst.Call) -> list | None:
    """What `call` amounts to when it calls a factory (of this file or, through the index, of another) whose
    module is built by constructions only: one (`local class info` or None, qualified class reference or
    None, the path to ask the index from, the construction call) for each construction it may make (one
    per branch of `if args.model == "yolov2": model = YOLOv2(...)`); None otherwise."""
    func = call.func
    if type(func) is cst.Name and func.value in facts.modules.classes:
        return None  # (a construction already)
    if type(func) is cst.Name and func.value in factory_constructions(facts.flow):
        return _behind(facts, call, factory_constructions(facts.flow)[func.value], facts.path, None, 0)
    reference = facts.imports.qualify(func)
    index = facts.flow.index
    found = index.factory_constructions(reference, facts.path) if reference is not None and index is not None \
        else None
    return _behind(facts, call, found[1], found[0], None, 0) if found is not None else None


def _behind(facts, call: cst.Call, constructions: dict, path: str, item: int | None, depth: int) -> list | None:
    alternatives = constructions.get(item)
    if not alternatives or depth > _DEPTH:
        return None
    out = []
    for construction in alternatives:
        rewritten = _rewritten(call, construction)
        reference, item_made = construction.reference, construction.item
        if reference.startswith(":") and path == facts.path:
            local = facts.modules.classes.get(reference[1:])
            if local is not None:
                if item_made is not None:
                    return None
                out.append((local, None, path, rewritten))
                continue
            onward, onward_path = factory_constructions(facts.flow).get(reference[1:]), path
        else:
            if reference.startswith(":"):
                reference = f".{os.path.splitext(os.path.basename(path))[0]}.{reference[1:]}"  # (as that file)
            found = facts.flow.index.factory_constructions(reference, path) if facts.flow.index is not None else None
            if found is None:  # (a class of another file, or something the index cannot see: asked as a class)
                if item_made is not None or facts.flow.index is None:
                    return None
                out.append((None, reference, path, rewritten))
                continue
            onward_path, onward = found
        behind = _behind(facts, rewritten, onward, onward_path, item_made, depth + 1) if onward else None
        if behind is None:
            return None
        out.extend(behind)
        if len(out) > _ALTERNATIVES:
            return None  # (factories picking among factories picking among classes: too many to follow)
    return out


def _rewritten(call: cst.Call, construction: Construction) -> cst.Call:
    """The construction call `call` of the factory amounts to: each argument the factory hands on from a parameter
    replaced by the literal `call` hands that parameter (or its default), anything else by an unknown value."""
    params = {name: (position, default) for name, position, default in construction.params}
    positional, keywords = {}, []
    for slot, source in construction.arguments:
        value = _UNKNOWN
        if source and source[0] == "literal":
            value = _literal_node(source[1])
        elif source and source[0] == "param" and source[1] in params and not any(a.star for a in call.args):
            position, default = params[source[1]]
            handed = handed_at(call, source[1], position)
            if handed is not None:
                value = handed
            elif default:
                value = _literal_node(default[1])
        if type(slot) is int:
            positional[slot] = value
        else:
            keywords.append(cst.Arg(value, keyword=cst.Name(slot)))
    ordered = [cst.Arg(positional.get(i, _UNKNOWN)) for i in range(max(positional, default=-1) + 1)]
    opened = [cst.Arg(_UNKNOWN, star="**")] if construction.open_ended else []
    return cst.Call(cst.Name("_constructed_"), [*ordered, *keywords, *opened])


def _literal_node(value) -> cst.BaseExpression:
    try:
        return cst.parse_expression(repr(value))
    except Exception:  # noqa: BLE001 (a value whose repr is no expression: no literal after all)
        return _UNKNOWN


def _constructions(flow, function) -> dict:
    from modelint.facts.returned_closures import own_returns  # (it imports the flow's rooms, which import this)

    found: dict = {}
    returns = [r.value for r in own_returns(function.node) if r.value is not None]
    wholes = [value for value in returns if type(value) is not cst.Tuple]
    # (a factory handing back `model, criterion` in one branch and `model` in another: a caller that runs what
    # the call gave it as a model took the branch handing back the module alone)
    candidates = {None: wholes}
    for value in returns:
        if type(value) is cst.Tuple:
            for i, element in enumerate(value.elements):
                candidates.setdefault(i, []).append(element.value)
    for item, values in candidates.items():
        made = [_made_by(flow, function, value) for value in values]
        if made and None not in made:
            found[item] = tuple(dict.fromkeys(c for alternatives in made for c in alternatives))[:_ALTERNATIVES]
    return found


def _made_by(flow, function, value: cst.BaseExpression) -> tuple | None:
    """The constructions `value`, handed back by `function`, may come from: a call written there, or the calls
    the name it hands back is bound to in the function (moved or wrapped later, `model = model.to(device)`)."""
    value = unwrap_chain(value)[0]
    if type(value) is not cst.Name:
        made = _construction(flow, function, value, None)
        return (made,) if made is not None else None
    if value.value not in _bound_to_calls(flow).get(function, ()):
        return None  # (no `name = <call>` in the function, in any form: no construction behind it)
    bound = [(v, i) for v, i in _bindings(flow, function, value.value)
             if v is None or not rewraps(flow.imports, v, value.value)]
    if not bound or any(v is None for v, _ in bound):
        return None
    out = []
    for bound_value, item in bound:
        bound_value = unwrap_chain(bound_value)[0]
        if item is not None and type(bound_value) is cst.Tuple:  # (`model, loss = Net(), nn.MSELoss()`)
            elements = bound_value.elements
            if item >= len(elements) or type(elements[item]) is cst.StarredElement:
                return None
            bound_value, item = unwrap_chain(elements[item].value)[0], None
        made = _construction(flow, function, bound_value, item)
        if made is None:
            return None
        out.append(made)
    return tuple(out)


def _construction(flow, function, value: cst.BaseExpression, item: int | None) -> Construction | None:
    if type(value) is not cst.Call:
        return None
    func = value.func
    if type(func) is cst.Name and (func.value in flow.modules.classes or func.value in _top_level(flow)):
        reference = ":" + func.value
    else:
        reference = flow.imports.qualify(func)
        if reference is None or "." not in reference:
            return None
    params = function.param_set
    arguments, position = [], 0
    for arg in value.args:
        if arg.star:
            continue  # (`ConvExtractor(**kwargs)`: unknown arguments, see open_ended)
        slot = arg.keyword.value if arg.keyword is not None else position
        position += arg.keyword is None
        if type(arg.value) is cst.Name and arg.value.value in params:
            source = ("param", arg.value.value)
        else:
            literal = literal_value(arg.value)
            source = ("literal", literal) if literal is not NOT_LITERAL else ()
        arguments.append((slot, source))
    return Construction(reference, tuple(arguments), item, _own_params(function), any(arg.star for arg in value.args))


def _own_params(function) -> tuple:
    """(name, position or -1, ("literal", default) or ()) for each parameter of the factory."""
    positional = function.positional_params
    own = []
    for name in function.params:
        param = function.param(name)
        default = literal_value(param.default) if param is not None and param.default is not None else NOT_LITERAL
        own.append((name, positional.index(name) if name in positional else -1,
                    ("literal", default) if default is not NOT_LITERAL else ()))
    return tuple(own)


def _bindings(flow, function, name: str) -> list:
    """(value, item) for each binding of `name` in the function's own body (modelint.facts.name_values): `name =
    value` (item None), `name, other = value` (item 0); (None, None) for a binding of another kind (a parameter,
    a loop target, an augmented or nested one)."""
    out = []
    for binding in flow._scope_bindings(function).get(name, ()):
        node = binding.node
        if binding.kind == "assign" and type(node) in (cst.Assign, cst.AnnAssign):
            out.append((binding.value, None))
            continue
        items = [[e.value.value if type(e.value) is cst.Name else None for e in target.target.elements]
                 for target in (node.targets if type(node) is cst.Assign else ())
                 if type(target.target) in (cst.Tuple, cst.List)
                 and not any(type(e) is cst.StarredElement for e in target.target.elements)]
        found = [names.index(name) for names in items if name in names]
        out.append((node.value, found[0]) if binding.kind == "other" and found else (None, None))
    return out


def _bound_to_calls(flow) -> dict:
    """function -> the names an assignment there binds to a call's result (`model = Net()`, `model, loss = ...`),
    from the calls the collector found (a body is walked for a returned name only when it is among them)."""
    cache = flow.__dict__.get("_names_bound_to_calls")
    if cache is None:
        cache = flow.__dict__["_names_bound_to_calls"] = {}
        for site in flow.collector.calls:
            statement = site.site.stmt
            small = statement.body[0] if type(statement) is cst.SimpleStatementLine and statement.body else None
            if type(small) in (cst.Assign, cst.AnnAssign) and site.site.function is not None:
                targets = [t.target for t in small.targets] if type(small) is cst.Assign else [small.target]
                names = cache.setdefault(site.site.function, set())
                for target in targets:
                    names.update(n.value for n in iter_nodes(target) if type(n) is cst.Name)
    return cache


def _top_level(flow) -> frozenset:
    cache = flow.__dict__.get("_top_level_functions")
    if cache is None:
        cache = flow.__dict__["_top_level_functions"] = frozenset(
            f.name for f in flow.collector.functions if f.outer is None and f.cls is None)
    return cache
