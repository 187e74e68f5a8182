"""Forwards that check a model rather than evaluate it (RULES section 3).

- a network just built, run once on made-up input (`torch.randn(...)`): a shape check;
- the first forward of a model with lazy modules, run before the optimizer is built so that the
  optimizer sees every parameter: a warm-up;
- a module's own check at the bottom of its file (`if __name__ == "__main__":`);
- a pass whose outputs nothing reads, in a function that tends BatchNorm's statistics itself (precise BN:
  `bn.momentum = 1.0`, averaging `bn.running_mean` over batches): run for those statistics.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.lattice import is_train_site
from modelint.facts.names import dotted, literal_value, value_key
from modelint.facts.uses import evaluated
from modelint.facts.walk import iter_nodes


# Methods that hand back a tensor made from the one they are called on, moved or refilled in place: a tensor made
# from nothing stays one.
_MOVED_OR_FILLED = frozenset({"to", "cuda", "float", "half", "zero_", "fill_", "normal_", "uniform_"})


def dummy_input(facts, forward, only=None) -> bool:
    """`model(torch.empty(1, n))`: a tensor made from nothing, to trace hooks or shapes (in argument `only`)."""
    bindings, _ = facts.receivers.scope(forward.function)

    def dummy(expr, depth=0) -> bool:
        if type(expr) is cst.Call:
            qualified = facts.imports.qualify(expr.func)
            if qualified == "torch.autograd.Variable" and expr.args and depth < 3:
                return dummy(expr.args[0].value, depth + 1)  # `Variable(torch.randn(...))`
            if type(expr.func) is cst.Attribute and expr.func.attr.value in _MOVED_OR_FILLED and depth < 3:
                return dummy(expr.func.value, depth + 1)  # `torch.randn(...).to(device)`, `torch.empty(...).zero_()`
            return qualified in api.DUMMY_TENSOR_FACTORIES
        if type(expr) is cst.Name and depth < 3:
            found = bindings.get(expr.value) or []
            return bool(found) and all(b.kind == "assign" and dummy(b.value, depth + 1) for b in found)
        return False

    return any(dummy(arg.value) for arg in (forward.call.args if only is None else (only,)))


def initialises_lazy_modules(facts, forward) -> bool:
    """A forward whose output nothing uses, followed in the same body by an optimizer built over the
    model's parameters (`model(data.x_dict, ...)` under no_grad, then `Adam(model.parameters())`), or by a
    `model.load_state_dict(...)`: it materialises lazy layers (`in_channels=-1`) before the optimizer or the
    checkpoint sees them; nothing is evaluated."""
    if forward.via is None and not forward.uses <= {"discard"}:
        return False
    if forward.via is not None and (not _dropped(facts, forward.call) or forward.via.intent == "evaluation"):
        return False  # (a helper's result: what the caller does with it is not tracked; a helper scoring it evaluates)
    function = forward.function
    body = function.node.body.body if function is not None else facts.collector.module_node.body
    later = None
    for i, statement in enumerate(body):
        if any(node is forward.call for node in iter_nodes(statement)):
            later = body[i + 1:]
            break
    for statement in later or ():
        for node in iter_nodes(statement):
            if type(node) is cst.Call and (_optimizer_over(facts, node, forward.key) or _loads_into(node, forward.key)):
                return True
    return False


def _loads_into(call: cst.Call, key: str) -> bool:
    """`model.load_state_dict(ckpt)` after the forward: it overwrites every weight and buffer the forward set up
    (lazily sized state, ActNorm's data-dependent initialisation), so that pass evaluated nothing."""
    func = call.func
    return type(func) is cst.Attribute and func.attr.value == "load_state_dict" and dotted(func.value) == key


def _dropped(facts, call: cst.Call) -> bool:
    site = facts.call_sites.get(call)
    statement = site.site.stmt if site is not None else None
    return type(statement) is cst.SimpleStatementLine and any(
        type(small) is cst.Expr and small.value is call for small in statement.body)


def _optimizer_over(facts, call: cst.Call, key: str) -> bool:
    """`Adam(model.parameters())`, or a trainer's `fit(model, ...)`: the model's weights are trained next."""
    if type(call.func) is cst.Attribute and call.func.attr.value == "fit":
        return any(dotted(arg.value) == key for arg in call.args)
    handed = any(type(node) is cst.Call and type(node.func) is cst.Attribute
                 and node.func.attr.value in ("parameters", "named_parameters") and dotted(node.func.value) == key
                 for arg in call.args for node in iter_nodes(arg.value))
    # (a factory's result stepped later in the function is an optimizer too: asked only of calls handed them)
    return handed and (api.is_optimizer_class(facts.imports.qualify(call.func) or "") or _stepped_later(facts, call))


def _stepped_later(facts, call: cst.Call) -> bool:
    """`opt = construct(cfg.optimizer, params=net.parameters())`, then `opt.step()` in the same function: built by
    a factory, an optimizer all the same."""
    bound = next(((key, site.function) for key, value, site in facts.collector.call_assigns if value is call), None)
    return bound is not None and "." not in bound[0] and any(
        site.site.function is bound[1] and site.text == f"{bound[0]}.step" for site in facts.collector.calls)


def smoke_test(facts, forward, mode) -> bool:
    """A model built in this very function, neither trained nor loaded here, run on a tensor made from
    nothing, its output only printed or measured (`net = densenet_cifar(); print(net(torch.randn(1, 3, 32,
    32)))`): a shape check, whose output means nothing in either mode. At module level, only a model
    file's own `if __name__ == "__main__":` self-test (a script's top level is its main job)."""
    function = forward.function
    if not mode.train_sites or mode.eval_sites or any(is_train_site(s) for s in mode.train_sites):
        return False  # (a model put in eval mode is a real one, loaded or pretrained: not a shape check)
    if forward.via is not None and not all(value_key(arg.value) == forward.key or dummy_input(facts, forward, arg)
                                           for arg in forward.call.args):
        return False  # (a helper handed the model and real data: `scored(table, ids, queries)` only on made-up ones)
    if function is None and not _in_main_guard(facts, forward):
        return False
    key = forward.key
    head = key.split(".")[0].split("[")[0]
    if (function is not None and (head in function.param_set or head in function.enclosing_params)) \
            or head in ("self", "cls") or (head in facts.flow.global_models and (function is not None or any(
                head in facts.flow.free.globals_of(other) for other in facts.collector.functions))):
        return False  # not built here, or a global some function uses: it may be trained or loaded elsewhere
    if not all(type(s) is cst.Call and facts.modules.construction(s) is not None
               and (where := facts.call_sites.get(s)) is not None
               and (where.site.function is function or _plain_builder(facts, where.site.function, function))
               for s in mode.train_sites):
        return False  # trained here (a training step put it in this mode), or built elsewhere (and loaded there)
    if any(key in step.reached for flow in facts.flow.flows if flow.function is function
           for step in flow.steps.values()):
        return False  # its outputs reach a backward here: a generator trained in this loop, sampled from noise
    if evaluated(forward.uses) and any(site.site.function is function and site.node is not forward.call and any(
            value_key(arg.value) == key for arg in site.node.args) for site in facts.collector.calls):
        return False  # handed to a call that may train it (a generator scored after `fit(gen, data)`)
    return not any(site.site.function is function and type(site.node.func) is cst.Attribute
                   and site.node.func.attr.value.startswith("load") and value_key(site.node.func.value) == key
                   for site in facts.collector.calls) and dummy_input(facts, forward)


def _in_main_guard(facts, forward) -> bool:
    """Is the forward under `if __name__ == "__main__":`?"""
    site = facts.call_sites.get(forward.call)
    return site is not None and any(
        type(guard) is cst.If and type(guard.test) is cst.Comparison and dotted(guard.test.left) == "__name__"
        for guard in site.site.guards)


def _plain_builder(facts, function, caller=None) -> bool:
    """A top-level function of this file that builds a module and loads nothing (`def ShuffleV1(**kwargs):
    return ShuffleNet(cfg, **kwargs)`): what it returns is as untrained as a constructor's."""
    if function is None or function.cls is not None or function.outer is not None:
        return False
    return not any(site.site.function is function and (
        ((site.qualified or "") in ("torch.load", "torch.hub.load", "torch.hub.load_state_dict_from_url"))
        or (type(site.node.func) is cst.Attribute and site.node.func.attr.value.startswith(("load", "from_pretrained"))))
        and not _left_unasked(facts, site.site, function, caller) for site in facts.collector.calls)


def _left_unasked(facts, site, function, caller) -> bool:
    """Is the call made only under `if pretrained:` on a parameter of the builder, which no call in `caller`
    (the function running the model) sets by name (`resnet(pretrained=True)` asks for the weights)?"""
    flags = {guard.test.value for guard in site.guards if type(guard) is cst.If and type(guard.test) is cst.Name
             and guard.test.value in function.param_set and any(node is site.stmt for node in iter_nodes(guard.body))}
    return bool(flags) and not any(
        call.site.function is caller and arg.keyword is not None and arg.keyword.value in flags
        and literal_value(arg.value) not in (False, None, 0) for call in facts.collector.calls for arg in call.node.args)


_NORM_STATISTICS = frozenset({"running_mean", "running_var", "reset_running_stats", "num_batches_tracked"})


def recomputes_norm_statistics(facts, forward) -> bool:
    """A forward whose output nothing reads, in a function that reads or resets BatchNorm's running statistics
    or sets a layer's `momentum` (`for bn in norms: bn.momentum = 1.0`): precise BN, which runs the model in
    training mode on purpose for the statistics it leaves. (Run by a helper of this file: the same there.)"""
    via, callee = forward.via, forward.callee
    if via is not None:
        helper = facts.flow.local_functions.get(callee.qualname) \
            if callee is not None and callee.path == facts.path else None
        return helper is not None and via.intent == "inference" and tends_norm_statistics(helper)
    return forward.function is not None and forward.uses <= {"discard"} and tends_norm_statistics(forward.function)


def tends_norm_statistics(function) -> bool:
    """Does the function read or reset BatchNorm's running statistics, or set a layer's `momentum`?"""
    cached = function.__dict__.get("tends_norm_statistics")
    if cached is None:
        cached = function.__dict__["tends_norm_statistics"] = _reads_norm_statistics(function)
    return cached


def _reads_norm_statistics(function) -> bool:
    for node in iter_nodes(function.node.body):
        if type(node) is cst.Attribute and node.attr.value in _NORM_STATISTICS:
            return True
        if type(node) is cst.AssignTarget and type(node.target) is cst.Attribute \
                and node.target.attr.value == "momentum":
            return True
    return False
