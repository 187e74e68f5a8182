"""How a loop's body runs in the mode flow.

- a plain loop: the body again and again until the state at its head is stable, so an
  `eval()` late in the body reaches the top of the next iteration;
- a phase loop (`for phase in ("train", "val"):`): the body once per phase, in order,
  with the phase known (modelint.facts.phases);
- a loop over models that switches each one's mode (`for m in (encoder, head): m.eval()`,
  or, in a helper, `for m in models: m.train()` over a parameter): the body once per
  model, in order, with the loop variable naming it; over a parameter, once for "each
  element" (`models[]`), which the summary hands to the models a caller lists.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.bindings import flatten
from modelint.facts.names import dotted, key_root, value_key
from modelint.facts.value_nodes import COMPREHENSIONS, comp_for_clauses, iterated_elements
from modelint.facts.naming import names_evaluation_data
from modelint.facts.phases import names_evaluation_value, phase_values
from modelint.facts.state import State, join
from modelint.facts.walk import iter_nodes

_SUBMODULE_LISTS = frozenset({"modules", "children", "named_modules", "named_children"})


class _ModelElement:
    """The value of a loop variable over models: no literal (`m is None` is False, `m == "x"` too)."""

    def __repr__(self) -> str:
        return "<a model>"


MODEL_ELEMENT = _ModelElement()


class Loops:
    """Mixed into the interpreter: `self.block`, `self.calls_of`, `self.forget`, `self.uses`,
    `self.constants`, `self.loop_exits`, `self.parts`, `self.params` come from there."""

    def loop(self, stmt: cst.For | cst.While, state: State) -> State | None:
        evaluation = False
        paired = []  # (part of the target, what it holds): `for i, p in zip(best, probs)`, `i` holds no output
        if type(stmt) is cst.For:
            self.calls_of(stmt, state)
            iterated = self.uses.expression(stmt.iter, state.values)
            paired = [(part, self.uses.expression(source, state.values))
                      for part, source in iterated_elements(stmt.iter, stmt.target) or ()] \
                or [(stmt.target, iterated)]
            phases = phase_values(stmt, self.constants)
            if phases is not None:
                return self.phase_loop(stmt, state, *phases)
            elements = self._switched_models(stmt, state)
            if elements is not None:
                return self.element_loop(stmt, state, *elements)
            evaluation = names_evaluation_data(stmt.iter) or names_evaluation_value(stmt.iter, self.constants)
        head = state.copy()
        exit_states: list[State] = [state.copy()]
        self.evaluation_loops += evaluation
        parts = self._submodule_loop(stmt)
        self.parts.update(parts)
        layer = self._layer_loop(stmt, state) if type(stmt) is cst.For else None
        generators = self._resumed_generators(stmt) if type(stmt) is cst.For else ()
        try:
            for _ in range(4):
                breaks: list[State] = []
                continues: list[State] = []
                self.loop_exits.append((breaks, continues, stmt))
                body_state = head.copy()
                for call in generators:  # (resumed for each pass: its body runs on in the loop's state)
                    self.call(call, body_state)
                if type(stmt) is cst.For:
                    for element, origins in ((e, origins) for part, origins in paired for e in flatten(part)):
                        key = dotted(element)
                        if key is not None:
                            self.forget(state=body_state, key=key)
                            if origins:
                                body_state.values[key] = origins
                    if layer is not None:
                        body_state.aliases[layer[0]] = layer[1]
                else:
                    self.calls_of(stmt, body_state)
                    self.uses.expression(stmt.test, body_state.values)
                end = self.block(stmt.body, body_state)
                self.loop_exits.pop()
                exit_states.extend(breaks)
                new_head = head
                for s in (end, *continues):
                    new_head = join(new_head, s)
                if new_head == head:
                    break
                head = new_head
        finally:
            self.evaluation_loops -= evaluation
            for name in parts:
                self.parts.pop(name, None)
        result = None
        for s in (head, *exit_states):
            result = join(result, s)
        if stmt.orelse is not None and result is not None:
            result = self.block(stmt.orelse.body, result)
        return result

    def _resumed_generators(self, stmt: cst.For) -> list[cst.Call]:
        """`for epoch, loss in enumerate(self._epochs(batches)):` over a generator of this file: each pass resumes
        it, so what the loop body did (a validation's `eval()`) reaches its next training steps."""
        out = []
        for call in self.flow.collector.calls_by_owner.get(stmt, ()):
            callee = self.flow.callee_of(call)
            if callee is not None and any(type(node) is cst.Yield for node in iter_nodes(callee.node.body)):
                out.append(call)
        return out

    def on_the_last_pass(self, stmt: cst.If, then: State | None) -> State | None:
        """The state after the body of an `if` that only the loop's last pass runs leaves the loop (a break):
        None comes round again (see last_pass_only)."""
        if then is None or not self.last_pass_only(stmt):
            return then
        self.loop_exits[-1][0].append(then)
        return None

    def last_pass_only(self, stmt: cst.If) -> bool:
        """`if i == len(steps) - 1:` (or `i + 1 == len(loader)`, `epoch == n_epochs - 1` in `for epoch in
        range(n_epochs)`), the last statement of `for i, batch in ...`:
        its body runs on the loop's last pass, after which the loop does not come round again. (The end of the
        epoch, where a notebook validates inside its batch loop and the epoch loop calls `model.train()`.)"""
        loop = self.loop_exits[-1][2] if self.loop_exits else None
        if type(loop) is not cst.For or not loop.body.body or loop.body.body[-1] is not stmt:
            return False
        target = loop.target.elements[0].value if type(loop.target) is cst.Tuple and loop.target.elements \
            else loop.target
        iterated = loop.iter  # (`for epoch in range(n_epochs)`: its last value is `n_epochs - 1`)
        stop = iterated.args[min(len(iterated.args), 2) - 1].value if type(iterated) is cst.Call \
            and dotted(iterated.func) == "range" and 1 <= len(iterated.args) <= 2 else None
        return type(target) is cst.Name and last_index_test(stmt.test, target.value, stop)

    def _layer_loop(self, stmt: cst.For, state: State) -> tuple[str, str] | None:
        """`for conv in self.convs:` / `for i, conv in enumerate(self.convs):` (or `reversed(...)`) over an
        `nn.ModuleList` the class builds, or over a list of modules built here (`members = [Member(), Member()]`):
        (the loop variable, the element it stands for, `self.convs[]`), so that `conv(x)` runs a part of the model.
        (Not a list a caller passes, which may hold callbacks or batches.)"""
        iterated, target = stmt.iter, stmt.target
        if type(iterated) is cst.Call and dotted(iterated.func) == "enumerate" and len(iterated.args) == 1 \
                and type(target) is cst.Tuple and len(target.elements) == 2:
            iterated, target = iterated.args[0].value, target.elements[1].value
        if type(iterated) is cst.Call and dotted(iterated.func) == "reversed" and len(iterated.args) == 1:
            iterated = iterated.args[0].value  # (`for flow in reversed(self.flows):` an inverse pass, the same parts)
        container = value_key(iterated) if type(iterated) in (cst.Name, cst.Attribute) else None
        if container is None or type(target) is not cst.Name \
                or not (self.flow.modules.is_module_name(container, self.out.function)
                        or f"{state.canonical(container)}[]" in state.models):
            return None
        return target.value, f"{state.canonical(container)}[]"

    @staticmethod
    def _submodule_loop(stmt) -> dict[str, str]:
        """`for m in net.modules():` / `for name, m in net.named_children():`: the loop variable -> `net`."""
        if type(stmt) is not cst.For or type(stmt.iter) is not cst.Call \
                or type(stmt.iter.func) is not cst.Attribute or stmt.iter.func.attr.value not in _SUBMODULE_LISTS:
            return {}
        owner = value_key(stmt.iter.func.value)
        target = stmt.target
        if type(target) is cst.Tuple and len(target.elements) == 2:  # (name, module)
            target = target.elements[1].value
        return {target.value: owner} if owner and type(target) is cst.Name else {}

    def phase_loop(self, stmt: cst.For, state: State, name: str, values: tuple) -> State | None:
        """`for phase in ("train", "val"):`: the body once per phase, in order, with `phase` known."""
        outer_tag = self.tag

        def enter(value, body_state: State) -> None:
            self.constants[name] = value
            self.tag = self.uses.tag = (*outer_tag, (name, value))
            self.forget(body_state, name)

        try:
            result = self._in_order(stmt, state, values, enter)
        finally:
            self.tag = self.uses.tag = outer_tag
            self.constants.pop(name, None)
        if stmt.orelse is not None and result is not None:
            result = self.block(stmt.orelse.body, result)
        return result

    def _in_order(self, stmt: cst.For, state: State, values, enter) -> State | None:
        """The body once per value, in order, `enter(value, state)` preparing each pass; breaks leave."""
        exits: list[State] = []
        current: State | None = state
        for value in values:
            if current is None:
                break
            breaks: list[State] = []
            continues: list[State] = []
            self.loop_exits.append((breaks, continues, None))  # (each pass run apart: no last pass to tell)
            body_state = current.copy()
            enter(value, body_state)
            end = self.block(stmt.body, body_state)
            self.loop_exits.pop()
            exits.extend(breaks)
            current = None
            for s in (end, *continues):
                current = join(current, s)
        for s in exits:
            current = join(current, s)
        return current

    def _switched_models(self, stmt: cst.For, state: State) -> tuple[str, list[str], bool] | None:
        """(loop variable, the models it takes in order, over a parameter?) when the body switches the
        loop variable's mode and it runs over a literal list of models or over a parameter."""
        target = stmt.target
        if stmt.orelse is not None or type(target) is not cst.Name or not _switches(stmt.body, target.value):
            return None
        return self._models_taken(target.value, stmt.iter, state)

    def comprehension_switch(self, value: cst.BaseExpression, state: State) -> bool:
        """`[m.eval() for m in (encoder, head)]`, a comprehension written for its calls: run as the loop it
        stands for (see element_loop). False when `value` is no such comprehension."""
        if type(value) not in (cst.ListComp, cst.GeneratorExp, cst.SetComp) or value.for_in.inner_for_in is not None \
                or value.for_in.ifs or type(value.for_in.target) is not cst.Name:
            return False
        name, call = value.for_in.target.value, value.elt
        if type(call) is not cst.Call or type(call.func) is not cst.Attribute \
                or call.func.attr.value not in ("train", "eval") or dotted(call.func.value) != name:
            return False
        taken = self._models_taken(name, value.for_in.iter, state)
        if taken is None:
            return False
        before = state.copy()
        for key in taken[1]:
            self.forget(state, name)
            state.aliases[name] = key
            self.call(call, state)
        self.forget(state, name)
        if taken[2]:  # (over a parameter: the list may be empty)
            element = taken[1][0]
            for key, fact in state.models.items():
                if key == element or key.startswith(element + "."):
                    state.models[key] = fact.join(before.fact(key))
        return True

    def _models_taken(self, name: str, iterated: cst.BaseExpression, state: State):
        """(name, the models it takes in order, over a parameter?) for a loop variable running over a literal
        list of models, a parameter, or a container of the object's."""
        if type(iterated) in (cst.List, cst.Tuple):
            keys = []
            for element in iterated.elements:
                if type(element) is cst.StarredElement:
                    return None
                if type(element.value) is cst.Name and element.value.value == "None":
                    continue
                key = value_key(element.value)
                if key is None:
                    return None
                keys.append(state.canonical(key))
            return (name, keys, False) if keys else None
        if type(iterated) is cst.Call and type(iterated.func) is cst.Attribute and iterated.func.attr.value == "values" \
                and not iterated.args:
            iterated = iterated.func.value  # (`for m in models.values():` over a dict of models)
        if type(iterated) is cst.Name and iterated.value in self.params and iterated.value not in ("self", "cls"):
            return name, [f"{iterated.value}[]"], True
        container = value_key(iterated) if type(iterated) is cst.Attribute else None
        if container is not None and container.count(".") == 1 and key_root(container) in ("self", "cls") \
                and self.out.function is not None and self.out.function.cls is not None:
            # `for m in self.models.values(): m.eval()`, a trainer's `set_eval()`: the container as a whole
            # is switched, every model it holds (`self.models["encoder"]`) with it.
            return name, [state.canonical(container)], False
        return None

    def element_loop(self, stmt: cst.For, state: State, name: str, keys: list[str], each: bool) -> State | None:
        """The body once per model, in order, the loop variable another name of it. Over a parameter
        (`each`), one run for every element: the elements' modes after it hold whether the list has one
        element or many, and vacuously for none; what else the body changes may not have happened."""
        def enter(key: str, body_state: State) -> None:
            self.forget(body_state, name)
            body_state.aliases[name] = key

        self.constants[name] = MODEL_ELEMENT  # (`if m is None: continue` skips no model)
        try:
            result = self._in_order(stmt, state, keys, enter)
        finally:
            self.constants.pop(name, None)
        if each and result is not None:
            element = keys[0]
            none_run = state.copy()
            for key, fact in result.models.items():
                if key == element or key.startswith(element + "."):
                    none_run.models[key] = fact
            result = join(result, none_run)
        return result


def _switches(body: cst.BaseSuite, name: str) -> bool:
    """Does the body call `name.train(...)` or `name.eval()`?"""
    return any(type(node) is cst.Call and type(node.func) is cst.Attribute
               and node.func.attr.value in ("train", "eval") and type(node.func.value) is cst.Name
               and node.func.value.value == name for node in iter_nodes(body))


def last_index_test(test: cst.BaseExpression, index: str, stop: cst.BaseExpression | None = None) -> bool:
    """`i == len(x) - 1`, `i + 1 == len(x)` (either side), `i >= len(x) - 1`: is `index` at its last value?
    With `stop`, the end of the `range(...)` the index runs over: `epoch == n_epochs - 1` too."""
    if type(test) is not cst.Comparison or len(test.comparisons) != 1 \
            or type(test.comparisons[0].operator) not in (cst.Equal, cst.GreaterThanEqual):
        return False
    left, right = test.left, test.comparisons[0].comparator
    return _index_plus(left, index, 0) and _length_plus(right, -1, stop) or _index_plus(left, index, 1) \
        and _length_plus(right, 0, stop) or (type(test.comparisons[0].operator) is cst.Equal and (
            _index_plus(right, index, 0) and _length_plus(left, -1, stop) or _index_plus(right, index, 1)
            and _length_plus(left, 0, stop)))


def _index_plus(expr: cst.BaseExpression, index: str, offset: int) -> bool:
    if offset == 0:
        return type(expr) is cst.Name and expr.value == index
    return type(expr) is cst.BinaryOperation and type(expr.operator) is cst.Add and _index_plus(expr.left, index, 0) \
        and type(expr.right) is cst.Integer and int(expr.right.value) == offset


def _length_plus(expr: cst.BaseExpression, offset: int, stop: cst.BaseExpression | None = None) -> bool:
    if offset == -1:
        return type(expr) is cst.BinaryOperation and type(expr.operator) is cst.Subtract \
            and _length_plus(expr.left, 0, stop) and type(expr.right) is cst.Integer and expr.right.value == "1"
    return (type(expr) is cst.Call and type(expr.func) is cst.Name and expr.func.value == "len"
            and len(expr.args) == 1) or (stop is not None and expr.deep_equals(stop))


def container_of_every_entry(flow, call: cst.Call, entry: cst.BaseExpression) -> str | None:
    """`nets[k]`, where `k` runs over `nets` (or `nets.keys()`) in a loop or a comprehension around the call:
    the container, every entry of which the call reaches."""
    if type(entry) is not cst.Subscript or len(entry.slice) != 1 \
            or type(entry.slice[0].slice) is not cst.Index or type(entry.slice[0].slice.value) is not cst.Name:
        return None
    container, index = dotted(entry.value), entry.slice[0].slice.value.value
    site = flow.site_of_call.get(call)
    if container is None or site is None:
        return None
    loops = [(guard.target, guard.iter) for guard in site.site.guards if type(guard) is cst.For]
    loops += [(clause.target, clause.iter) for node in iter_nodes(site.site.stmt) if type(node) in COMPREHENSIONS
              for clause in comp_for_clauses(node.for_in)]
    for target, iterated in loops:
        if type(target) is cst.Name and target.value == index and (dotted(iterated) == container or (
                type(iterated) is cst.Call and type(iterated.func) is cst.Attribute
                and iterated.func.attr.value == "keys" and dotted(iterated.func.value) == container)):
            return container
    return None
