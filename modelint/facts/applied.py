"""Functions handed to `module.apply(fn)`: does one leave the modules' modes as they were?

`apply()` runs `fn` on every submodule. A weight initialiser (`m.weight.data.normal_(0, 0.02)`)
changes no mode; `lambda m: m.eval()` or a `freeze_bn(m)` does. A function we cannot read makes
the model's mode unknown.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.names import value_key
from modelint.facts.walk import iter_nodes

# Builtins that change nothing they are handed.
NEUTRAL_BUILTINS = frozenset({"print", "len", "isinstance", "str", "repr", "type", "id", "hasattr", "getattr",
                              "sum", "list", "tuple", "dict", "set", "sorted", "enumerate", "zip", "iter", "next",
                              "vars", "format", "max", "min", "any", "all"})


def applies_a_mode_neutral_function(flow, call: cst.Call, enclosing) -> bool:
    """`net.apply(weights_init)` with a function of this file that cannot change a module's mode: it
    switches none, touches no `training` flag and hands its module to no call we cannot see into
    (initialising weights: `m.weight.data.normal_()`, `nn.init.zeros_(m.bias)`)."""
    if len(call.args) != 1:
        return False
    name = flow.local_reference(call.args[0].value, enclosing)
    function = flow.local_functions.get(name) or flow.closures_by_name.get(name) if name else None
    if function is None or function.mode_relevant or not function.params:
        return False
    module = function.params[0]
    for node in iter_nodes(function.node.body):
        if type(node) is cst.Attribute and node.attr.value in ("training", "apply"):
            return False
        if type(node) is cst.Call and not _keeps_mode_of(flow, node, module):
            return False
    return True


def _keeps_mode_of(flow, call: cst.Call, module: str) -> bool:
    """Does a call in an applied function leave `module`'s mode alone: a method of one of its parts
    (`m.weight.data.normal_()`), a torch function, or a call not handed the module?"""
    func = call.func
    if type(func) is cst.Attribute:
        receiver = value_key(func.value) or ""
        if receiver.split(".")[0] == module and receiver != module:
            return True  # `m.weight.data.normal_(0, 0.02)`, `m.bias.data.fill_(0)`
        if receiver == module and func.attr.value in api.MODE_PRESERVING_METHODS | {"reset_parameters"}:
            return True
    if (flow.imports.qualify(func) or "").startswith("torch.") \
            or (type(func) is cst.Name and func.value in NEUTRAL_BUILTINS):
        return True  # `nn.init.normal_(m.weight)`, `isinstance(m, nn.Conv2d)`
    return all((value_key(arg.value) or "").split(".")[0] != module for arg in call.args) \
        and (value_key(func) or "").split(".")[0] != module
