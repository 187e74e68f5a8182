"""Parts a module class puts in eval mode as it builds them: `self.backbone = resnet18().eval()`.

A model built from such a class is, until something calls its `train()`, as mode-dependent as its
other layers: the part stays in eval mode (a frozen feature extractor, a pretrained scorer kept
for inference). A class that calls `train()` anywhere, or reads its own `self.training`, is not
read this way (modelint.facts.modules.ModuleTable.fresh_dependence).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.scopes import ClassInfo


def parts_built_in_eval(info: ClassInfo) -> frozenset[cst.Call]:
    """The calls of the class that build a part and end in `.eval()` (`Net().to(dev).eval()`): the built call
    and each call of its chain. Empty when the class switches something to training mode itself."""
    from modelint.facts.modules import unwrap_chain  # (that module asks this one)

    if any(type(c.func) is cst.Attribute and c.func.attr.value == "train" for c in info.calls):
        return frozenset()
    out: set[cst.Call] = set()
    for call in info.calls:
        if type(call.func) is not cst.Attribute or call.func.attr.value != "eval" or call.args:
            continue
        built, chain = unwrap_chain(call)
        if type(built) is cst.Call:
            out.update(chain)
            out.add(built)
    return frozenset(out)
