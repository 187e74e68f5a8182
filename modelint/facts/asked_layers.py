"""Layers a module's `forward` applies only when its caller asks: `def forward(self, x, is_training=False):
... if is_training: h = self.dropout(h)`. Such a module's Dropout (or BatchNorm) runs on the calls that pass the
flag, the training ones; a call that leaves it off runs no mode-dependent layer, whatever the module's mode."""

from __future__ import annotations

import libcst as cst

from modelint.facts.modules import Dependence
from modelint.facts.names import dotted, handed_at, literal_value
from modelint.facts.scopes import flags_gating


def runs_no_mode_layer(facts, forward) -> bool:
    """Does the forward call, on a model every binding of which builds a class of this file, leave off the
    flag under which alone that class applies its mode-dependent layers?"""
    from modelint.facts.input_gradients import builders_of

    call = forward.call
    if forward.via is not None or type(call) is not cst.Call or any(arg.star for arg in call.args) \
            or not _classes_gating_mode_layers(facts):
        return False
    builders = builders_of(facts, forward)
    classes = [func.value for func in builders if type(func) is cst.Name and func.value in facts.modules.classes]
    if not classes or len(classes) != len(builders):
        return False
    gating = _classes_gating_mode_layers(facts)
    for name in classes:
        method, flags = gating.get(name, (None, None))
        if not flags or any(_passed_on(call, method, flag) for flag in flags):
            return False
    return True


def _classes_gating_mode_layers(facts) -> dict:
    """Class of this file -> (its forward, the flags gating its mode-dependent layers), once per file."""
    found = facts.__dict__.get("_classes_gating_mode_layers")
    if found is None:
        assigned: dict = {}
        for assign in facts.collector.attribute_assigns:
            assigned.setdefault(assign.site.cls, []).append(assign)
        found = facts.__dict__["_classes_gating_mode_layers"] = {
            f.cls.name: (f, flags) for f in facts.collector.functions
            if f.name == "forward" and f.cls is not None and f.cls.name in facts.modules.classes
            and (flags := _flags_gating_mode_layers(facts, f.cls, f, assigned))}
    return found


def _flags_gating_mode_layers(facts, info, method, assigned) -> frozenset[str] | None:
    """The forward's flags (parameters defaulting to False or None) under which alone it calls the class's
    mode-dependent layers (`self.dropout` built as `nn.Dropout(p)` in `__init__`); None when one runs ungated.
    `assigned`: class -> its attribute assignments."""
    defaults = {param.name.value for param in method.node.params.params
                if param.default is not None and literal_value(param.default) in (False, None)}
    if not defaults:
        return None
    dependent = {dotted(assign.target) for assign in assigned.get(info, ())
                 if type(assign.value) is cst.Call
                 and (built := facts.modules.construction(assign.value)) is not None
                 and built.dependence is not Dependence.INDEPENDENT}
    if not dependent:
        return None
    return flags_gating(method.node.body, defaults,
                        lambda node: type(node) is cst.Call and dotted(node.func) in dependent) or None


def _passed_on(call: cst.Call, method, flag: str) -> bool:
    """Does the call hand the flag a value that may be true (by keyword, or at its position)?"""
    names = method.positional_params[1:]  # (after `self`)
    passed = handed_at(call, flag, names.index(flag) if flag in names else -1)
    return passed is not None and literal_value(passed) not in (False, None)
