"""What the Collector files about assignments (mixed into it): attribute assignments (`self.net = Net()`),
names bound to calls (`model = build(cfg)`, candidates for "this name is a module"), items picked by a literal
key (`model = checkpoint["model"]`), plain aliases (`helper = base`), parameters' aliases, module-level literal
globals, and module-level aliases of torch's module class (`MyModule = nn.Module`) and of its no_grad."""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.names import dotted, head_name
from modelint.facts.scopes import AttributeAssign

_LITERALS = (cst.Dict, cst.List, cst.Tuple, cst.Set, cst.SimpleString, cst.ConcatenatedString, cst.FormattedString,
             cst.Integer, cst.Float)


# What a module-level alias may stand for: torch's module class, and a grad-disabling context manager
# (`eval_ctx = torch.no_grad if compiled else torch.inference_mode`, then `@eval_ctx()`).
_ALIASED_KINDS = {"torch.nn.Module": api.MODULE_BASES, "torch.no_grad": api.GRAD_DISABLING}


class AssignmentRecords:
    """Mixed into Collector, which provides `_function`, `_site`, `_mark_gradients`, `_a_parameter`, `imports`
    and the lists these methods fill."""

    def visit_Assign(self, node: cst.Assign) -> None:
        function = self._function()
        if function is None:
            for target in node.targets:
                if type(target.target) is cst.Name:
                    if type(node.value) in (cst.Name, cst.Attribute, cst.IfExp):  # (`MyModule = nn.Module`)
                        self.imports.add_module_level_alias(target.target.value, node.value, _ALIASED_KINDS)
                    if type(node.value) in _LITERALS:
                        self._literal_globals.add(target.target.value)
                    else:
                        self._literal_globals.discard(target.target.value)
        if function is not None and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name \
                and type(node.value) in (cst.Subscript, cst.Attribute):
            root = head_name(node.value)
            if root is not None and root not in ("self", "cls") and root in function.param_set:
                function.param_aliases.add(node.targets[0].target.value)
        if type(node.value) in (cst.Name, cst.Attribute) and len(node.targets) == 1 and \
                type(node.targets[0].target) is cst.Attribute:
            self.imports.add_attribute_binding(node.targets[0].target, node.value)
        elif type(node.value) is cst.Name and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name:
            self.name_aliases.append((node.targets[0].target.value, node.value.value))
        if type(node.value) is cst.Attribute and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name \
                and type(node.value.value) in (cst.Name, cst.Call) and dotted(node.value.value) != "self":
            self.held_reads.append((node.targets[0].target.value, node.value))
        for target in node.targets:
            self._attribute_targets(target.target, node.value, node)
        if len(node.targets) == 1 and type(node.targets[0].target) is cst.Name and type(node.value) is cst.IfExp \
                and type(node.value.body) is cst.Call and type(node.value.orelse) is cst.Call:
            self.choice_assigns.append((node.targets[0].target.value, node.value, self._site()))
        if len(node.targets) == 1 and type(node.targets[0].target) is cst.Name and type(node.value) is cst.Subscript \
                and len(node.value.slice) == 1 and type(node.value.slice[0].slice) is cst.Index \
                and type(node.value.slice[0].slice.value) is cst.SimpleString:
            self.item_assigns.append((node.targets[0].target.value, node.value, self._site()))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._attribute_targets(node.target, node.value, node)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._attribute_targets(node.target, None, node)

    def _attribute_targets(self, target: cst.BaseExpression, value, node) -> None:
        if type(target) in (cst.Tuple, cst.List) and type(value) in (cst.Tuple, cst.List) \
                and len(target.elements) == len(value.elements) \
                and not any(type(e) is cst.StarredElement for e in (*target.elements, *value.elements)):
            # `self.net, self.stage = net, stage`: each attribute gets its own value
            for element, assigned in zip(target.elements, value.elements):
                self._attribute_targets(element.value, assigned.value, node)
            return
        if type(target) is cst.Attribute and target.attr.value == "requires_grad" \
                and type(value) is cst.Name and value.value == "True":
            name = dotted(target.value)
            self._mark_gradients(inputs=not self._a_parameter(name), name=name)  # as `x.requires_grad_()`
        if type(value) is cst.Call:
            key = dotted(target)
            if key is not None:
                self.call_assigns.append((key, value, self._site()))
        stack = [target]
        while stack:  # `a.x, (b.y, c.z) = ...`: every attribute, left to right; only a lone one gets the value
            current = stack.pop()
            if type(current) is cst.Attribute:
                self.attribute_assigns.append(AttributeAssign(current, value if current is target else None, node,
                                                              self._site()))
            elif type(current) in (cst.Tuple, cst.List):
                stack.extend(element.value for element in reversed(current.elements))
