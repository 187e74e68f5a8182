"""Names: dotted expression keys, identifier tokens, and what imports bind.

`ImportTable` answers "what does this expression name?" for the torch API without
libcst's scope provider (which costs several times the parse): imports are few, and
a file that rebinds `torch` locally is rare enough to accept being wrong about.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass, field

import libcst as cst

from modelint.facts.walk import iter_nodes

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


# The names Python binds before any code of a file runs (`len`, `print`, `object`).
BUILTIN_NAMES = frozenset(dir(builtins))

_TORCH_MODULES = frozenset({"torch", "torch.nn", "torch.nn.functional", "torch.autograd"})


def dotted(node: cst.BaseExpression) -> str | None:
    """`self.model.encoder` -> "self.model.encoder"; None for anything but names."""
    kind = type(node)
    if kind is cst.Name:
        return node.value  # (most calls: a plain name, no list to build)
    if kind is not cst.Attribute:
        return None
    parts: list[str] = []
    while type(node) is cst.Attribute:
        parts.append(node.attr.value)
        node = node.value
    if type(node) is cst.Name:
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def key_prefixes(key: str) -> set[str]:
    """`model.encoder.head` -> {"model", "model.encoder", "model.encoder.head"}: the key and its parents."""
    parts = key.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def same_or_nested(a: str, b: str) -> bool:
    """Is `a` the model `b`, a part of it (`b.encoder`) or a model it holds (`a` a prefix of `b`)?"""
    return a in key_prefixes(b) or b in key_prefixes(a)


def parameter_owners(expr: cst.BaseExpression, parents: bool = True) -> set[str]:
    """Whose parameters `expr` hands over (`model.encoder.parameters()`: the encoder's, so the model's
    too): the receivers of `.parameters()` / `.named_parameters()` calls in it, with their parents
    (without them: only the parts whose parameters these are)."""
    from modelint.facts.walk import iter_nodes

    found: set[str] = set()
    for node in iter_nodes(expr):
        if type(node) is cst.Call and type(node.func) is cst.Attribute \
                and node.func.attr.value in ("parameters", "named_parameters"):
            receiver = dotted(node.func.value)
            if receiver:
                found |= key_prefixes(receiver) if parents else {receiver}
    return found


def value_key(node: cst.BaseExpression) -> str | None:
    """Like `dotted`, with subscripts: a name's element `args["model"]` is "args['model']" (a dict of
    settings keeps its model apart from its loss and its loader); any other subscript is one abstract
    element, `self.models[k]` and `self.models[0]` both "self.models[]" (a list of models is followed as
    one, and it stands for every element: see Bindings.bind)."""
    suffix = ""
    while type(node) is cst.Subscript:
        suffix = _element(node) + suffix
        node = node.value
    head = dotted(node)
    if head is None:
        return None
    return head + suffix


def is_torch_module(name: str) -> bool:
    """`torch` or one of its submodules; not a package merely named like it (`torch_geometric_temporal`,
    `torchvision`)."""
    return name == "torch" or name.startswith("torch.")


def is_super_call(node: cst.BaseExpression) -> bool:
    """`super()` or `super(Cls, self)`: the object itself, seen as an instance of its bases."""
    return type(node) is cst.Call and type(node.func) is cst.Name and node.func.value == "super"


def unwrapped_key(node: cst.BaseExpression) -> str | None:
    """`value_key`, also of `model.module if hasattr(model, "module") else model` (either the model or what its
    DataParallel wrapper holds: the same module, whichever branch runs): "model"; and of `model.to(dev).eval()`,
    a chain handing back its receiver."""
    if type(node) is cst.Call:
        from modelint.facts.modules import unwrap_chain

        base, chain = unwrap_chain(node)  # `demo(net.eval(), frames)`: net itself, switched first (post-order)
        return value_key(base) if chain else None
    if type(node) is not cst.IfExp:
        return value_key(node)
    keys = {value_key(node.body), value_key(node.orelse)}
    if None in keys:
        return None
    bases = {key[:-len(".module")] if key.endswith(".module") else key for key in keys}
    return bases.pop() if len(bases) == 1 else None


def _element(node: cst.Subscript) -> str:
    if len(node.slice) == 1 and type(node.slice[0].slice) is cst.Index:
        index = node.slice[0].slice.value
        if type(index) is cst.SimpleString and _IDENTIFIER.fullmatch(str(index.evaluated_value)):
            return f"['{index.evaluated_value}']"
    return "[]"


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def any_element(key: str) -> str | None:
    """"args[]" for "args['model']": the abstract element that stands for every element of the container."""
    if not key.endswith("']"):
        return None
    return key[:key.rindex("['")] + "[]"


def head_name(expr: cst.BaseExpression) -> str | None:
    """`model` for `model`, `ctx.model` and `args["model"]` (a name, or an attribute or element of one)."""
    while type(expr) in (cst.Attribute, cst.Subscript):
        expr = expr.value
    return expr.value if type(expr) is cst.Name else None


def key_root(key: str) -> str:
    """The variable a value key starts from: "model" for "model", "model.encoder" and "args[].net"."""
    return key.split(".", 1)[0].split("[", 1)[0]


def tokens(name: str) -> list[str]:
    """Lower-case words of an identifier: `runValidation_epoch` -> run, validation, epoch."""
    out: list[str] = []
    for part in name.split("_"):
        out.extend(t.lower() for t in _CAMEL.findall(part))
    return out


def literal_value(node: cst.BaseExpression | None) -> object:
    """The Python value of a simple literal, or `NOT_LITERAL`."""
    if type(node) is cst.Name and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if type(node) in (cst.Integer, cst.Float):
        try:  # a literal of more than 4,300 digits is a ValueError for int()
            return (int(node.value.replace("_", ""), 0) if type(node) is cst.Integer
                    else float(node.value.replace("_", "")))
        except ValueError:
            return NOT_LITERAL
    if type(node) is cst.SimpleString:
        return node.evaluated_value
    if type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
        # `-1`, `- -1`, ... (a loop, not a recursion: a file may stack thousands of them)
        sign = 1
        while type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
            sign = -sign
            node = node.expression
        if type(node) is cst.UnaryOperation:
            return NOT_LITERAL
        inner = literal_value(node)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return inner if sign == 1 else -inner
    return NOT_LITERAL


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


NOT_LITERAL = _NotLiteral()


def argument(call: cst.Call, keyword: str | None, index: int | None) -> cst.Arg | None:
    """The argument bound to `keyword` or positional `index`, if the call passes it."""
    positional = 0
    for arg in call.args:
        if arg.star:
            # `*args` / `**kwargs` may carry it: callers check `has_star_args` first.
            return None
        if arg.keyword is not None:
            if keyword is not None and arg.keyword.value == keyword:
                return arg
            continue
        if index is not None and positional == index:
            return arg
        positional += 1
    return None


def has_star_args(call: cst.Call) -> bool:
    return any(arg.star for arg in call.args)


@dataclass
class ImportTable:
    """Local name -> fully qualified name, from every import in the file."""

    bindings: dict[str, str] = field(default_factory=dict)
    # `self.torch = torch`: an imported module kept on an object, by the attribute's dotted text.
    attribute_bindings: dict[str, str] = field(default_factory=dict)
    # What `import x`, `import x.y` and `import x.y as z` bind: names (and dotted texts) of modules.
    modules: set[str] = field(default_factory=set)
    # `from util import *`: the modules whose names come in unseen, in the order the file imports them.
    star_modules: list[str] = field(default_factory=list)
    # Once every import is in (see settle): node -> its qualified name. The flow asks about the same calls over
    # and over (each branch, each pass over a loop, each rule), nine times per node on average.
    _qualified: dict | None = field(default=None, repr=False, compare=False)
    _rebound: set = field(default_factory=set, repr=False, compare=False)  # (see add_module_level_alias)
    # What the imports written at module level bind, and those written in each function (its node -> names): a
    # factory per network doing its own `from nets_bn import Actor` names another class than its neighbour's.
    _module_level: dict = field(default_factory=dict, repr=False, compare=False)
    _in_functions: dict = field(default_factory=dict, repr=False, compare=False)

    def settle(self) -> None:
        """Every import of the file is recorded: from now on each node's qualified name is worked out once. A
        name a module-level import binds is that import's outside the functions importing it otherwise; in a
        function whose own import binds a name otherwise than the file does, its nodes get the function's."""
        self.bindings.update(self._module_level)
        self._qualified = {}
        for function, own in self._in_functions.items():
            differing = {name: value for name, value in own.items() if self.bindings.get(name) != value}
            if differing:
                self._qualify_in(function, differing)

    def _qualify_in(self, function: cst.FunctionDef, own: dict) -> None:
        file_wide = self.bindings
        self.bindings = {**file_wide, **own}
        try:
            for node in iter_nodes(function.body):
                if type(node) in (cst.Name, cst.Attribute) and (dotted(node) or "").split(".")[0] in own:
                    self._qualified[node] = self._qualify(node)
        finally:
            self.bindings = file_wide

    def _bind(self, name: str, value: str, function: cst.FunctionDef | None) -> None:
        self.bindings[name] = value
        (self._module_level if function is None else self._in_functions.setdefault(function, {}))[name] = value

    def add_import(self, node: cst.Import, function: cst.FunctionDef | None = None) -> None:
        for alias in node.names:
            full = dotted(alias.name)
            if full is None:
                continue
            if alias.asname is not None and type(alias.asname.name) is cst.Name:
                self._bind(alias.asname.name.value, full, function)
                self.modules.add(alias.asname.name.value)
            else:
                head = full.split(".")[0]
                self._bind(head, head, function)
                self.modules.update(key_prefixes(full))

    def add_import_from(self, node: cst.ImportFrom, function: cst.FunctionDef | None = None) -> None:
        module = "." * len(node.relative) + ((dotted(node.module) or "") if node.module else "")
        if type(node.names) is cst.ImportStar:
            if module and not is_torch_module(module):
                self.star_modules.append(module)
            return
        for alias in node.names:
            name = dotted(alias.name)
            if name is None:
                continue
            local = name
            if alias.asname is not None and type(alias.asname.name) is cst.Name:
                local = alias.asname.name.value
            # (`from . import helpers` binds `.helpers`, not `..helpers`, which would be the parent package's)
            self._bind(local, (f"{module}{name}" if module.strip(".") == "" else f"{module}.{name}") if module
                       else name, function)

    def add_attribute_binding(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        """`self.torch = torch` (or `= torch.nn.functional`): the attribute names that imported module."""
        key = dotted(target)
        qualified = self.qualify(value)
        plain_import = type(value) is cst.Name and self.bindings.get(value.value) == value.value
        if key is not None and qualified is not None and (plain_import or qualified in _TORCH_MODULES):
            self.attribute_bindings[key] = qualified

    def add_module_level_alias(self, name: str, value: cst.BaseExpression, kinds: dict[str, frozenset[str]]) -> None:
        """`MyModule = nn.Module` (or `= torch.jit.ScriptModule if jit else nn.Module`), `eval_ctx = torch.no_grad`
        (or `torch.inference_mode` on another branch) at module level: another name of one of torch's `kinds`
        (its name -> the qualified names that stand for it), unless the name is bound to something else too."""
        branches = (value.body, value.orelse) if type(value) is cst.IfExp else (value,)
        found = {self.qualify(branch) for branch in branches}
        kind = next((kind for kind, members in kinds.items() if found <= members), None)
        if kind is not None and name not in self._rebound and self.bindings.get(name, kind) == kind:
            self.bindings[name] = kind
            return
        self._rebound.add(name)
        if self.bindings.get(name) in kinds:
            del self.bindings[name]  # (bound to something else as well)

    def qualify(self, node: cst.BaseExpression) -> str | None:
        """Qualified name of a Name/Attribute chain (`nn.Dropout` -> "torch.nn.Dropout")."""
        known = self._qualified
        if known is None:
            return self._qualify(node)
        found = known.get(node, _UNKNOWN)
        if found is _UNKNOWN:
            found = known[node] = self._qualify(node)
        return found

    def _qualify(self, node: cst.BaseExpression) -> str | None:
        text = dotted(node)
        if text is None:
            return None
        if self.attribute_bindings and "." in text:
            for prefix, bound in self.attribute_bindings.items():
                if text.startswith(prefix + "."):
                    return f"{bound}{text[len(prefix):]}"
        head, _, rest = text.partition(".")
        bound = self.bindings.get(head)
        if bound is None:
            # `torch` used without an import (notebook cells, star imports) is still torch; so is `nn.X` under a
            # star import, and whatever a star import brings in whose grad-mode switch is called (`T.set_grad_enabled(False)` after
            # `from modules import *`, where modules did `import torch as T`).
            if head == "nn" and rest and self.star_modules:
                # (`class FastSpeech2(nn.Module)` after `from common_layers import *`, where that file did
                # `from torch import nn`: the name a star import brings, nothing here binds it otherwise)
                return f"torch.nn.{rest}"
            if head != "torch" and not (self.star_modules and rest in _GRAD_MODE_SWITCHES):
                return None
            bound = "torch"
        return f"{bound}.{rest}" if rest else bound

    def is_torch_name(self, qualified: str | None) -> bool:
        return qualified is not None and is_torch_module(qualified)


_UNKNOWN = object()
_GRAD_MODE_SWITCHES = frozenset({"no_grad", "enable_grad", "set_grad_enabled", "inference_mode"})


def handed_at(call: cst.Call, param: str, position: int) -> cst.BaseExpression | None:
    """What `call` hands the parameter `param`, by keyword or at `position` among the positional arguments
    (-1: keyword only), when no `*args` comes before it."""
    found = next((arg.value for arg in call.args if arg.keyword is not None and arg.keyword.value == param), None)
    positional = [arg for arg in call.args if arg.keyword is None]
    if found is None and 0 <= position < len(positional) and not any(arg.star for arg in positional[:position + 1]):
        found = positional[position].value
    return found


def chain_runs(value: cst.BaseExpression, method: str, flag: object = None) -> bool:
    """Does the chain of calls `value` is (`torch.hub.load(...).to(device).eval().requires_grad_(False)`) run
    `.method()`, with no argument, or with the literal `flag` as its only one when given?"""
    while type(value) is cst.Call and type(value.func) is cst.Attribute:
        if value.func.attr.value == method and (not value.args if flag is None else len(value.args) == 1
                                                 and literal_value(value.args[0].value) == flag):
            return True
        value = value.func.value
    return False
