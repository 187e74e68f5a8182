"""The attributes a class only computes with: numbers and settings, not modules.

`self.smoothing / (self.size - 2)`, `dist[:, self.pad_id]`, `device=self.device`,
`x.view(n, self.dim)`, `range(0, n, self.step)`, `self.alpha.gather(0, y)`: whatever the constructor was handed for
such an attribute, the class never calls it or hands it on, so it holds no weights
(modelint.facts.layer_kinds.holds_no_weights).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.scopes import ClassInfo
from modelint.facts.walk import iter_nodes

_SIZE_METHODS = frozenset({"view", "reshape", "expand", "repeat", "permute", "transpose", "unsqueeze", "squeeze",
                           "split", "chunk", "narrow", "flatten", "unflatten", "new_zeros", "new_ones", "new_empty",
                           "topk", "roll", "unfold"})
# Methods of tensors that no nn.Module has: an attribute they are called on is a tensor (`self.alpha.gather(0, y)`,
# a loss's class weights).
_TENSOR_ONLY_METHODS = frozenset({"gather", "scatter", "index_select", "masked_fill", "masked_select", "view",
                                  "reshape", "expand", "expand_as", "unsqueeze", "squeeze", "permute", "transpose",
                                  "clamp", "exp", "log", "sqrt", "pow", "abs", "sum", "mean", "std", "matmul", "mm",
                                  "bmm", "numel", "size", "item", "tolist", "numpy", "detach", "clone", "long"})
_SIZE_FUNCTIONS = frozenset({"range", "torch.zeros", "torch.ones", "torch.empty", "torch.randn", "torch.rand",
                             "torch.arange", "torch.eye", "torch.nn.functional.one_hot"})


def _takes_sizes(call: cst.Call, qualify) -> bool:
    func = call.func
    if type(func) is cst.Attribute and func.attr.value in _SIZE_METHODS:
        return True
    qualified = qualify(func) or (func.value if type(func) is cst.Name else "")
    return qualified in _SIZE_FUNCTIONS or (qualified.startswith("tqdm") and qualified.endswith(".trange")) \
        or qualified.startswith("numpy.")  # (`np.random.randn(n, self.rank)`: NumPy takes numbers, no module)


def computed_with(info: ClassInfo, qualify) -> set[str]:
    """The attributes the class's code only computes with: operands (`self.smoothing / (self.size - 2)`,
    `ids == self.pad_id`), indices (`dist[:, self.pad_id]`), keyword values (`device=self.device`), sizes
    in a tuple or handed to what takes sizes (`D.expand(n, self.doc_len, self.dim)`, `range(0, n, self.step)`,
    `F.one_hot(y, self.num_classes)`), receivers of a tensor's method (`self.alpha.gather(0, y)`), never called or
    handed on otherwise: numbers and settings, whatever its constructor was handed."""
    seen: dict[str, int] = {}
    plain: dict[str, int] = {}
    for node in iter_nodes(info.node.body):
        kind = type(node)
        if kind is cst.Attribute and type(node.value) is cst.Name and node.value.value == "self":
            seen[node.attr.value] = seen.get(node.attr.value, 0) + 1
            continue
        if kind is cst.BinaryOperation:
            operands = (node.left, node.right)
        elif kind is cst.Comparison:
            operands = (node.left, *(target.comparator for target in node.comparisons))
        elif kind is cst.UnaryOperation:
            operands = (node.expression,)
        elif kind is cst.SubscriptElement and type(node.slice) is cst.Index:
            operands = (node.slice.value,)
        elif kind is cst.Arg and node.keyword is not None:
            operands = (node.value,)
        elif kind is cst.Element:  # `torch.zeros((n, self.vocab_size))`
            operands = (node.value,)
        elif kind is cst.AssignTarget:
            operands = (node.target,)
        elif kind is cst.Assign and type(node.value) is cst.Attribute:
            operands = (node.value,)  # (`self.stride = self.hop`: copied into another attribute)
        elif kind is cst.Call and _takes_sizes(node, qualify):
            operands = tuple(arg.value for arg in node.args if arg.keyword is None and not arg.star)
            if type(node.func) is cst.Attribute and node.func.attr.value in _TENSOR_ONLY_METHODS:
                operands += (node.func.value,)
        elif kind is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _TENSOR_ONLY_METHODS:
            operands = (node.func.value,)
        else:
            continue
        for operand in operands:
            if type(operand) is cst.Attribute and type(operand.value) is cst.Name and operand.value.value == "self":
                plain[operand.attr.value] = plain.get(operand.attr.value, 0) + 1
    return {f"self.{name}" for name, count in plain.items() if count == seen.get(name)}
