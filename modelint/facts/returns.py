"""What a function hands back to its callers, met at each `return` (read by modelint.facts.summaries):

- the module it returns (`return model`, `return Net()`: a factory), joined over its returns;
- a tuple's items (`return model, optimizer`), each position's module, or the parameter a position hands
  back as it came (`return model, msg` after `model.load_state_dict(...)`);
- a dict's entries under literal keys (`return {"embeddings": emb, "vocab": vocab}`);
- the parameter every return hands back untouched.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.lattice import ENTRY_MODE, ModeFact
from modelint.facts.names import literal_value
from modelint.facts.provenance import receiver_key
from modelint.facts.state import State


class ReturnedValues:
    """Mixed into CallEffects: `flow`, `out` come from there."""

    def returned_value(self, value: cst.BaseExpression | None, state: State) -> None:
        """`return model` / `return Net()`: what a factory hands its caller."""
        self._returned_items(value, state)
        self._returned_entries(value, state)
        if value is None:
            return
        key = receiver_key(value, self.flow.imports)
        function = self.out.function
        regrouped = self.flow.provenance.regrouped_parameter(value, state, function)
        passed = regrouped is not None or (function is not None and key in function.param_set
                                           and key not in ("self", "cls") and state.fact(key) == ENTRY_MODE)
        key = regrouped or key
        self.out.returned_param = key if passed and self.out.returned_param in (None, key) else ""
        fact = self._module_value(value, state)
        if fact is None:
            self._ask_about_built(key)
            return
        if fact.origin and not fact.certain and self.flow.index is None:
            self.flow.unresolved.add(fact.origin)  # (`return GIN(...)`: the index may say it is a module)
        self.out.returned = fact if self.out.returned is None else self.out.returned.join(fact)

    def _returned_items(self, value: cst.BaseExpression | None, state: State) -> None:
        """`return model, optimizer`: the module each position holds, joined with the other returns."""
        if self.out.returned_items == "":
            return
        if type(value) not in (cst.Tuple, cst.List) or any(type(e) is cst.StarredElement for e in value.elements):
            self.out.returned_items = ""
            return
        items = [self._handed_back_parameter(element.value, state) or self._module_value(element.value, state)
                 for element in value.elements]
        seen = self.out.returned_items
        if seen is None:
            self.out.returned_items = items
        elif len(seen) != len(items):
            self.out.returned_items = ""
        else:
            self.out.returned_items = [_join_item(a, b) for a, b in zip(seen, items)]

    def _returned_entries(self, value: cst.BaseExpression | None, state: State) -> None:
        """`return {"embeddings": emb, "vocab": vocab}`: the module under each literal key."""
        if self.out.returned_entries == "":
            return
        keys = [literal_value(e.key) if type(e) is cst.DictElement else None
                for e in (value.elements if type(value) is cst.Dict else ())]
        if type(value) is not cst.Dict or not keys or not all(isinstance(key, str) for key in keys):
            self.out.returned_entries = ""
            return
        entries = {key: self._module_value(element.value, state) for key, element in zip(keys, value.elements)}
        seen = self.out.returned_entries
        self.out.returned_entries = entries if seen is None else {
            key: _join_item(held, entries[key]) for key, held in seen.items() if key in entries}

    def _handed_back_parameter(self, value: cst.BaseExpression, state: State) -> str | None:
        """`return model, msg` after `model.load_state_dict(...)`: the parameter handed back as it came."""
        function = self.out.function
        key = value.value if type(value) is cst.Name else None
        if function is None or key not in function.param_set or key in ("self", "cls") \
                or state.fact(state.canonical(key)) != ENTRY_MODE:
            return None
        return key

    def _module_value(self, value: cst.BaseExpression, state: State) -> ModeFact | None:
        """The module an expression is here (a model it tracks, or one built right there), if any."""
        key = receiver_key(value, self.flow.imports)
        if key is not None and state.tracks(state.canonical(key)):
            return state.fact(state.canonical(key))
        return self.flow.provenance.built_here(value, state, self.out.function)

    def _ask_about_built(self, key: str | None) -> None:
        """`model = GIN(...)` of another file, not followed here, then `return model`: first pass only, the
        index is asked about that class, so that this factory's callers learn what it returns."""
        if key is None or self.flow.index is not None:
            return
        for name, call, site in self.flow.collector.call_assigns:
            built = self.flow.modules.construction(call) if name == key and site.function is self.out.function else None
            if built is not None and built.origin:
                self.flow.unresolved.add(built.origin)


def _join_item(a, b):
    """Two returns' items at one position: the module both hold (joined), or the parameter both hand back."""
    if isinstance(a, str) or isinstance(b, str):
        return a if a == b else None
    return a.join(b) if a is not None and b is not None else None
