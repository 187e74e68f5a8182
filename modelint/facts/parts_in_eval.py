"""Parts a module class puts in eval mode as it builds them: `self.backbone = resnet18().eval()`.

A model built from such a class is, until something calls its `train()`, as mode-dependent as its
other layers: the part stays in eval mode (a frozen feature extractor, a pretrained scorer kept
for inference). A class that calls `train()` anywhere, or reads its own `self.training`, is not
read this way (modelint.facts.modules.ModuleTable.fresh_dependence).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.scopes import ClassInfo

_CHAINED = frozenset({"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "requires_grad_"})


def parts_built_in_eval(info: ClassInfo) -> frozenset[cst.Call]:
    """The calls of the class that build a part and end in `.eval()` (`Net().to(dev).eval()`): the built call
    and each call of its chain. Empty when the class switches something to training mode itself."""
    if any(type(c.func) is cst.Attribute and c.func.attr.value == "train" for c in info.calls):
        return frozenset()
    out: set[cst.Call] = set()
    for call in info.calls:
        if type(call.func) is not cst.Attribute or call.func.attr.value != "eval" or call.args:
            continue
        chain = [call]
        value = call.func.value
        while type(value) is cst.Call and type(value.func) is cst.Attribute and value.func.attr.value in _CHAINED:
            chain.append(value)
            value = value.func.value
        if type(value) is cst.Call:
            out.update(chain)
            out.add(value)
    return frozenset(out)
