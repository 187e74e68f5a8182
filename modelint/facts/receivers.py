"""Receiver facts: is this expression an nn.Module, and what does its class define?

Rules that read a method name (`x.eval(...)`, `x.evaluate()`, `x.training = ...`,
`def train(self, ...)`) must first know what `x` is: a continual-learning
strategy's `eval(stream)`, a framework model's own `evaluate(data)` or an RL
algorithm's `train()` are not `nn.Module`'s. `Receivers.of(expr, function)`
answers from what the code shows:

- the class `x` was built from (`x = Net(...)`, through `.to(dev)` chains and
  wrappers), a parameter's annotation, the class of `self`, the value assigned to
  `self.attr`, or what the callers in this file pass for a parameter;
- that class's bases, followed through this file, other files of the project (the
  `ClassShape`s of the project index) and well-known libraries (torch.nn layers,
  Lightning, Hugging Face and timm models);
- failing all that, calls only an nn.Module has (`x.parameters()`): a module whose
  class is unknown.

A class is `complete` when it and all its bases are known, so `defines` lists every
name it adds to nn.Module's; rules that must not mistake another framework's
method stay silent unless the class is complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.libraries import STANDARD_LIBRARY
from modelint.facts.name_values import Binding, reaching, scope_bindings, statement_parents
from modelint.facts.scopes import ClassInfo, FunctionInfo
from modelint.facts.modules import EVIDENCE_METHODS, unwrap_chain
from modelint.facts.names import BUILTIN_NAMES, dotted
from modelint.summary import ClassShape

_DEPTH = 6  # how many bindings, bases and call sites one question may follow


@dataclass(frozen=True)
class ReceiverFacts:
    module: bool | None  # an nn.Module (True), known not to be one (False), unknown (None)
    complete: bool = False  # the class and all its bases are known
    defines: frozenset[str] = frozenset()  # names its class (and its non-torch bases) define
    leaf: bool = False  # a single torch layer (BatchNorm, Dropout): no children
    name: str | None = None  # the class, for messages

    def lacks(self, name: str) -> bool:
        """A known nn.Module whose class certainly does not define `name` itself."""
        return self.module is True and self.complete and name not in self.defines


UNKNOWN = ReceiverFacts(None)
NOT_MODULE = ReceiverFacts(False, True)
TORCH_MODULE = ReceiverFacts(True, True)
MODULE_BY_EVIDENCE = ReceiverFacts(True)


def _join(facts: list[ReceiverFacts]) -> ReceiverFacts:
    """What every one of several possible values is."""
    if not facts:
        return UNKNOWN
    first = facts[0]
    if all(f == first for f in facts):
        return first
    if all(f.module is True for f in facts):
        return ReceiverFacts(True, all(f.complete for f in facts), frozenset().union(*(f.defines for f in facts)),
                             all(f.leaf for f in facts))
    if all(f.module is False for f in facts):
        return NOT_MODULE
    return UNKNOWN


class Receivers:
    def __init__(self, facts) -> None:
        self.facts = facts
        self.collector = facts.collector
        self.imports = facts.imports
        self.modules = facts.modules
        self.index = facts.index
        self.path = facts.path
        self.unresolved: set[str] = set()  # imported classes asked about that this file cannot see
        self._scopes: dict = {}
        # (what, key) -> answer, for the questions that fan out over a whole file; UNKNOWN while
        # one is being worked out, so a recursion (`def f(m): f(m)`) ends there.
        self._memo: dict = {}

    # -- expressions --------------------------------------------------------
    def of(self, expr: cst.BaseExpression, function: FunctionInfo | None, stmt: cst.CSTNode | None = None,
           depth: int = 0) -> ReceiverFacts:
        """What `expr`, evaluated in `function` (None: module level) at `stmt`, is."""
        if depth > _DEPTH:
            return UNKNOWN
        expr, _ = unwrap_chain(expr)
        if type(expr) is cst.Call:
            return self._built(expr, function, stmt, depth)
        if type(expr) is cst.Name:
            found = self._name(expr.value, function, stmt, depth)
        elif type(expr) is cst.Attribute and type(expr.value) is cst.Name:
            found = self._instance_attribute(expr.value.value, expr.attr.value, function, depth)
        else:
            found = UNKNOWN
        if found.module is None and self._evidence(dotted(expr), function):
            return MODULE_BY_EVIDENCE
        return found

    def _built(self, call: cst.Call, function, stmt, depth: int) -> ReceiverFacts:
        func = call.func
        project = self.modules.project_class(func)
        if project is not None:
            return self.of_class(project)
        if type(func) is cst.Attribute and func.attr.value == "load_from_checkpoint" \
                and (project := self.modules.project_class(func.value)) is not None:
            return self.of_class(project)  # (Lightning's classmethod builds the class, then loads its weights)
        if type(func) is cst.Attribute and func.attr.value == "from_pretrained":
            built = self.modules.construction(call)
            return TORCH_MODULE if built is not None else UNKNOWN
        qualified = self.imports.qualify(func)
        if qualified is None:
            return UNKNOWN
        if qualified in ("copy.deepcopy", "torch.compile") and call.args:
            return self.of(call.args[0].value, function, stmt, depth + 1)
        if qualified in api.MODULE_WRAPPERS:
            return TORCH_MODULE
        if api.builds_library_model(qualified):
            # torch.hub runs a repository's own code: a module, but any class at all.
            return MODULE_BY_EVIDENCE if qualified.startswith("torch.hub") else TORCH_MODULE
        if qualified.rsplit(".", 1)[-1].lstrip("_")[:1].isupper():
            return self.of_qualified(qualified, self.path, depth + 1)
        return UNKNOWN

    def _name(self, name: str, function, stmt, depth: int) -> ReceiverFacts:
        scope = function
        while True:
            bindings, parents = self.scope(scope)
            found = bindings.get(name)
            if found:
                if stmt is not None and scope is function:
                    found = reaching(found, stmt, parents)
                return _join([self._binding(b, name, scope, depth) for b in found])
            if scope is None:
                return UNKNOWN
            scope = scope.outer  # a closure reads the enclosing function's names, then the module's

    def _binding(self, binding: Binding, name: str, scope, depth: int) -> ReceiverFacts:
        if binding.kind == "assign":
            return self.of(binding.value, scope, binding.node, depth + 1)
        if binding.kind != "param":
            return UNKNOWN
        if binding.annotation is not None:
            return self.of_annotation(binding.annotation, depth + 1)
        if scope is not None and scope.cls is not None and scope.params[:1] == [name] \
                and not _is_static(scope):
            return self.of_class(scope.cls)  # `self`
        return self._from_callers(scope, name, depth + 1)

    def _instance_attribute(self, owner: str, attr: str, function, depth: int) -> ReceiverFacts:
        """`self.attr`: what the class's methods assign to it."""
        method = instance_method(function, owner)
        if method is None:
            return UNKNOWN
        return self._memoized(("attribute", method.cls, attr), lambda: self._assigned(method.cls, attr, depth))

    def _memoized(self, key, compute) -> ReceiverFacts:
        found = self._memo.get(key)
        if found is None:
            self._memo[key] = UNKNOWN
            found = self._memo[key] = compute()
        return found

    def _assigned(self, cls, attr: str, depth: int) -> ReceiverFacts:
        values = []
        for assign in self.collector.attribute_assigns:
            target = assign.target
            site_method = instance_method(assign.site.function, None)
            if assign.site.cls is not cls or site_method is None or target.attr.value != attr \
                    or dotted(target.value) != site_method.params[0]:
                continue
            if assign.value is None:
                return UNKNOWN
            if type(assign.value) is cst.Name and assign.value.value == "None":
                continue  # `self.model = None` until it is built: not what a method is called on
            values.append(self.of(assign.value, assign.site.function, assign.node, depth + 1))
        return _join(values)

    def _from_callers(self, function, name: str, depth: int) -> ReceiverFacts:
        """A parameter: what every call in this file passes for it (nothing seen: unknown)."""
        if function is None or name not in function.params:
            return UNKNOWN
        return self._memoized(("callers", function, name), lambda: self._passed_by_callers(function, name, depth))

    def _passed_by_callers(self, function, name: str, depth: int) -> ReceiverFacts:
        params = function.params
        position = params.index(name)
        method = function.cls is not None and not _is_static(function)
        if method:
            position -= 1
        calls = []
        for site in self.collector.calls:
            func = site.node.func
            if function.name == "__init__" and function.cls is not None:
                hit = self.modules.project_class(func) is function.cls
            elif method:
                hit = type(func) is cst.Attribute and func.attr.value == function.name \
                    and instance_method(site.site.function, dotted(func.value)) is not None \
                    and site.site.cls is function.cls
            else:
                hit = type(func) is cst.Name and func.value == function.name \
                    and func.value not in self.imports.bindings
            if hit:
                calls.append(site)
        values = []
        for site in calls:
            arg = _passed(site.node, name, position)
            if arg is None:
                return UNKNOWN
            values.append(self.of(arg, site.site.function, site.site.stmt, depth + 1))
        return _join(values)

    def _evidence(self, key: str | None, function) -> bool:
        """Is `key` shown to be an nn.Module by a call only modules have (`key.parameters()`)?

        In the same function; for `self.<attr>` anywhere in the class.
        """
        if key is None:
            return False
        method = instance_method(function, key.split(".")[0]) if "." in key else None
        for site in self.collector.calls:
            func = site.node.func
            if not (type(func) is cst.Attribute and func.attr.value in EVIDENCE_METHODS
                    and dotted(func.value) == key):
                continue
            if site.site.function is function:
                return True
            if method is not None and site.site.cls is method.cls \
                    and instance_method(site.site.function, key.split(".")[0]) is not None:
                return True
        return False

    # -- classes ------------------------------------------------------------
    def of_annotation(self, annotation: cst.BaseExpression, depth: int = 0) -> ReceiverFacts:
        if type(annotation) is cst.Subscript:  # Optional[Net]
            return UNKNOWN
        project = self.modules.project_class(annotation)
        if project is not None:
            return self.of_class(project)
        qualified = self.imports.qualify(annotation)
        return self.of_qualified(qualified, self.path, depth) if qualified else UNKNOWN

    def of_class(self, info: ClassInfo) -> ReceiverFacts:
        return self._class_facts(self._local_shapes[info.name], self.path, info.name, 0)

    def of_qualified(self, qualified: str, from_path: str, depth: int = 0) -> ReceiverFacts:
        """A class named by its qualified import (`torch.nn.Linear`, `.models.Net`) in `from_path`."""
        known = library_class(qualified)
        if known is not None:
            return known
        if self.index is not None and depth <= _DEPTH:
            found = self.index.resolve_shape(qualified, from_path)
            if found is not None:
                shape, path = found
                return self._class_facts(shape, path, qualified.rsplit(".", 1)[-1], depth + 1)
        if os.path.abspath(from_path) == os.path.abspath(self.path):
            self.unresolved.add(qualified)
        return UNKNOWN

    def _class_facts(self, shape: ClassShape, path: str, name: str, depth: int) -> ReceiverFacts:
        if depth > _DEPTH:
            return UNKNOWN
        here = os.path.abspath(path) == os.path.abspath(self.path)
        bases = []
        for base in shape.bases:
            if base.startswith(":"):
                local = self._local_shapes.get(base[1:]) if here else self._remote_shape(path, base[1:])
                bases.append(self._class_facts(local, path, base[1:], depth + 1) if local else UNKNOWN)
            elif base == "?":
                bases.append(UNKNOWN)
            else:
                bases.append(self.of_qualified(base, path, depth + 1))
        if not bases:
            return ReceiverFacts(False, True, shape.defines, name=name)
        module = True if any(b.module is True for b in bases) else \
            False if all(b.module is False for b in bases) else None
        complete = all(b.complete for b in bases)
        defines = shape.defines.union(*(b.defines for b in bases))
        leaf = module is True and all(b.leaf for b in bases if b.module) and not shape.builds_modules
        return ReceiverFacts(module, complete, defines, leaf, name)

    def _remote_shape(self, path: str, name: str) -> ClassShape | None:
        return self.index.shape_in(path, name) if self.index is not None else None

    @cached_property
    def _local_shapes(self) -> dict[str, ClassShape]:
        from modelint.facts.base_shapes import forward_hook_calls, hook_calls, shape_of

        shapes: dict[str, ClassShape] = {}
        hooks = hook_calls(self.collector, self.imports)
        forward_hooks = forward_hook_calls(self.collector)
        for info in self.collector.classes:
            shapes.setdefault(info.name, shape_of(self, info, hooks.get(info, frozenset()),
                                                  forward_hooks.get(info, frozenset())))
        return shapes

    def shapes(self) -> dict[str, ClassShape]:
        """The classes of this file, for the project index."""
        return dict(self._local_shapes)

    # -- scopes -------------------------------------------------------------
    def scope(self, function: FunctionInfo | None) -> tuple[dict, dict]:
        """(name -> its bindings, statement -> where it sits) for a function or, for None, module level."""
        found = self._scopes.get(function)
        if found is None:
            node = function.node if function is not None else self.collector.module_node
            found = self._scopes[function] = (scope_bindings(node), statement_parents(node))
        return found


def library_class(qualified: str) -> ReceiverFacts | None:
    """Classes of torch and of well-known libraries; None: not one we know."""
    head = qualified.lstrip(".").split(".")[0]
    tail = qualified.rsplit(".", 1)[-1]
    if qualified.startswith("."):
        return None
    if qualified in BUILTIN_NAMES or head in STANDARD_LIBRARY:
        return NOT_MODULE
    if qualified in api.MODULE_BASES:
        return TORCH_MODULE
    if qualified.startswith(("torch.nn.parallel.", "torch.nn.DataParallel")):
        return TORCH_MODULE
    if qualified.startswith("torch.nn.") and tail.lstrip("_")[:1].isupper():
        container = tail in api.CONTAINERS or tail in api.STACKS or tail.startswith("Transformer") \
            or tail == "MultiheadAttention"
        return replace(TORCH_MODULE, leaf=not container, name=tail)
    if head == "torch":
        return NOT_MODULE  # Optimizer, Dataset, autograd.Function ...
    if head in api.NOT_MODULE_LIBRARIES:
        return NOT_MODULE  # estimators and arrays of the scientific stack, inference engines: never an nn.Module
    if head in api.OTHER_FRAMEWORKS:
        return NOT_MODULE  # the other frameworks' layers and models: no torch mode to misuse
    if tail == "LightningModule" and head in ("pytorch_lightning", "lightning"):
        return replace(TORCH_MODULE, name=tail)
    if head in ("transformers", "diffusers") and (tail in ("PreTrainedModel", "ModelMixin")
                                                   or api.from_pretrained_loads(tail)):
        return replace(TORCH_MODULE, name=tail)
    if qualified.startswith(("timm.models.", "torchvision.models.", "timm.layers.")) and tail[:1].isupper():
        return replace(TORCH_MODULE, name=tail)
    return None


def instance_method(function: FunctionInfo | None, owner: str | None) -> FunctionInfo | None:
    """The method whose instance parameter (its first) is `owner` (any, if None), seen from `function`."""
    while function is not None:
        if function.cls is not None and function.params and not _is_static(function) and (
                owner is None or function.params[0] == owner):
            return function
        function = function.outer
    return None


def _is_static(function: FunctionInfo) -> bool:
    return any(dotted(d) in ("staticmethod", "classmethod") for d in function.decorators)


def _passed(call: cst.Call, name: str, position: int) -> cst.BaseExpression | None:
    index = 0
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is not None:
            if arg.keyword.value == name:
                return arg.value
            continue
        if index == position:
            return arg.value
        index += 1
    return None

