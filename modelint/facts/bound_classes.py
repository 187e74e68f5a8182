"""The class of this file a local name is bound to: `model.predict(x)` with `model = Classifier(10)` in the
scope Python finds `model` in, through moves and wraps (`m = model.to(device)`, `net = DataParallel(RCNN())`)
and methods handing back their object (`helper = base.configure(32)`); one of several classes whose method
does the same to grad and mode stands for them all.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.accessors import methods_returning_self
from modelint.facts.mode_handling import grad_and_mode_text
from modelint.facts.modules import rewraps, unwrap_chain
from modelint.facts.names import BUILTIN_NAMES, dotted
from modelint.facts.scopes import FunctionInfo


class BoundClasses:
    """Mixed into MethodTargets: `self.modules`, `self.imports`, `self.collector`, `self.local_functions`,
    `self.visible_bindings()`, `self._attribute_class()` and `self._method_of()` come from there."""

    def alike_class(self, classes, method: str) -> str | None:
        """One of several classes of this file whose `method` each does the same to grad and mode (two policies'
        `sample`, each running its own forward): it stands for them all."""
        methods = [self._method_of(name, method) for name in sorted(classes)]
        same = all(m is not None for m in methods) and len({grad_and_mode_text(m) for m in methods}) == 1
        return sorted(classes)[0] if same else None

    def bound_object_class(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """`model.predict(x)` with `model = Classifier(10)`: the class of this file that every binding of
        the name, in the scope Python finds it in (the function, an enclosing one, the module), builds;
        through an alias too (`m = model.to(device)`, then `m.generate(idx)`)."""
        func = call.func
        if type(func) is cst.Attribute and type(func.value) is cst.Attribute and func.value.attr.value != "module":
            # `evaluator.nnet.score(hyp)`: the class the object's class keeps there
            owner = self._holder_class(func.value.value, enclosing, set())
            return self.held_class(owner, func.value.attr.value) if owner is not None else None
        name, through_module = object_name(func)
        if name is None or name == "self":
            return None
        return self._class_bound_to(name, enclosing, set(), through_module, method=call.func.attr.value
                                    if type(call.func) is cst.Attribute else None)

    def class_of_name(self, name: str, enclosing: FunctionInfo | None) -> str | None:
        """The one class of this file every binding of the plain name `name` builds, as `enclosing` sees it."""
        return self._class_bound_to(name, enclosing, set())

    def _class_bound_to(self, name: str, enclosing: FunctionInfo | None, seen: set,
                        through_module: bool = False, method: str | None = None) -> str | None:
        """The one class of this file every binding of `name` builds (wrapped in DataParallel and the like,
        `through_module`: reached as `name.module`); with `method`, one of several whose `method` each does the
        same to grad and mode (`Stepper(...)` or `SyncStepper(...)`, each `backward_and_step(loss)` a step), torch's
        own classes left out (the `Adam(...)` the name held before a wrapper of it)."""
        if name not in self._names_built_from_classes or name in seen:
            return None  # (most receivers: no need to list a scope's bindings)
        seen.add(name)
        found = self.visible_bindings(name, enclosing)
        if found is None:
            return None
        bindings, scope = found
        classes = set()
        for binding in bindings:
            node = unwrap_chain(binding.value)[0] if binding.kind == "assign" else None
            if rewraps(self.imports, node, name):
                continue  # `ic = ic.cuda()`, `ic = DataParallel(ic)`: the same object, or one without its methods
            inner = self._wrapped(node)  # (`net = DataParallel(RCNN())`: its methods are `net.module`'s)
            if through_module and inner is node:
                return None
            node = inner
            if type(node) is cst.Name:  # `m = model.to(device)`: the object `model` holds, moved
                aliased = self._class_bound_to(node.value, scope, seen)
                if aliased is None:
                    return None
                classes.add(aliased)
                continue
            if type(node) is cst.Call and type(node.func) is cst.Attribute and type(node.func.value) is cst.Name \
                    and node.func.attr.value in self._methods_returning_self:
                # `helper = base.configure(32)`, a method of the object's class handing back `self`
                owner = self._class_bound_to(node.func.value.value, scope, seen)
                if owner is None or owner not in self._methods_returning_self[node.func.attr.value]:
                    return None
                classes.add(owner)
                continue
            owner = self._holder_class(node.value, scope, seen) if type(node) is cst.Attribute else None
            held = self.held_class(owner, node.attr.value) if owner is not None else \
                self._attribute_class(node, scope) if not through_module else None
            if held is not None:  # `model = self.model`, `lm = Evaluator(path).nnet`
                classes.add(held)
                continue
            if type(node) is cst.IfExp and method is not None:
                # (`BigNet() if use_big else SmallNet()`: either class, alike in `method` below)
                chosen = {self._class_called(unwrap_chain(branch)[0], scope) for branch in (node.body, node.orelse)}
                if None in chosen:
                    return None
                classes |= chosen
                continue
            built = self._class_called(node, scope)
            if built is None and method is not None and type(node) is cst.Call \
                    and self.imports.is_torch_name(self.imports.qualify(node.func)):
                continue
            if built is None:
                return None  # a parameter, a loop variable, anything else: not one class we know
            classes.add(built)
        if len(classes) > 1 and method is not None:
            return self.alike_class(classes, method)
        return classes.pop() if len(classes) == 1 else None

    def _class_called(self, node, scope: FunctionInfo | None) -> str | None:
        """The class of this file a call constructs: `Trainer(...)`, or `model_type(...)` after
        `model_type = GraphTrainer` (a class picked at run time, here the only one)."""
        if type(node) is not cst.Call or type(node.func) is not cst.Name:
            return None
        name = node.func.value
        if name in self.modules.classes:
            return name
        if name in self.local_functions or name in self.imports.bindings or name in BUILTIN_NAMES:
            return None
        found = self.visible_bindings(name, scope)
        if found is None:
            return None
        bindings = found[0]
        named = {b.value.value if b.kind == "assign" and type(b.value) is cst.Name else None for b in bindings}
        return named.pop() if len(named) == 1 and None not in named and next(iter(named)) in self.modules.classes \
            else None

    def _holder_class(self, holder: cst.BaseExpression, scope: FunctionInfo | None, seen: set) -> str | None:
        """The class of this file of the object `holder` is (`Evaluator(path)` built right there, or a name bound
        to one), whose attribute is read: not `self`, whose class the enclosing method says."""
        if type(holder) is cst.Call:
            return self._class_called(holder, scope)
        return self._class_bound_to(holder.value, scope, seen) if type(holder) is cst.Name \
            and holder.value != "self" else None

    def _wrapped(self, node):
        """The module a wrapper call wraps (`nn.DataParallel(RCNN())` -> `RCNN()`), else `node` itself."""
        while type(node) is cst.Call and node.args and self.imports.qualify(node.func) in api.MODULE_WRAPPERS:
            node = unwrap_chain(node.args[0].value)[0]
        return node

    @cached_property
    def _methods_returning_self(self) -> dict[str, set[str]]:
        return methods_returning_self(self.collector)

    @cached_property
    def _names_built_from_classes(self) -> frozenset[str]:
        """Plain names some assignment of this file binds to a constructor of one of its classes."""
        names = set()
        for key, value, site in self.collector.call_assigns:
            node = self._wrapped(unwrap_chain(value)[0])
            if "." not in key and self._class_called(node, site.function) is not None:
                names.add(key)
        names.update(key for key, value, site in self.collector.choice_assigns
                     if self._class_called(value.body, site.function) is not None)
        aliases = [(key, node.value) for key, node in
                   ((key, unwrap_chain(value)[0]) for key, value, _site in self.collector.call_assigns)
                   if "." not in key and type(node) is cst.Name]
        aliases += self.collector.name_aliases  # (`helper = base`)
        # (`lm = evaluator.nnet`, `lm = Evaluator(path).nnet`: what such an object holds)
        aliases += [(key, dotted(read.value)) for key, read in self.collector.held_reads
                    if type(read.value) is cst.Name]
        names.update(key for key, read in self.collector.held_reads
                     if type(read.value) is cst.Call and self._class_called(read.value, None) is not None)
        aliases += [(key, dotted(value.func.value)) for key, value, _site in self.collector.call_assigns
                    if "." not in key and type(value.func) is cst.Attribute and type(value.func.value) is cst.Name
                    and value.func.attr.value in self._methods_returning_self]  # (`helper = base.configure(32)`)
        while True:  # `m = model.to(device)`: a name bound to such a name, moved
            added = {key for key, source in aliases if source in names and key not in names}
            if not added:
                return frozenset(names)
            names |= added


def object_name(func: cst.BaseExpression) -> tuple[str | None, bool]:
    """(`model`, False) for `model.predict(x)`; (`model`, True) for `model.module.mask_net(feat)`: a
    DataParallel's wrapped module (no wrapper forwards the methods of what it wraps: they are reached through
    `.module`)."""
    if type(func) is not cst.Attribute:
        return None, False
    owner = func.value
    through_module = type(owner) is cst.Attribute and owner.attr.value == "module"
    if through_module:
        owner = owner.value
    return (owner.value if type(owner) is cst.Name else None), through_module
