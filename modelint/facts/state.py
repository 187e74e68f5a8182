"""The abstract state at one point of a function: a value per name, joined at branches.

- `models`: model expression (`model`, `self.net.encoder`) -> its `ModeFact`.
- `grad`: the `GradFact` here.
- `aliases`: `m = model` makes `m` another name of `model`; `scorer = Scorer(lm)` makes
  `scorer.lm` one (Bindings._alias_held_arguments).
- `either`: `net = ema if use_ema else model` makes `net` a name of one of them: switching `net`
  may switch either (`evaluate(net)` calling `net.eval()` leaves `model` in eval mode on some path).
- `grad_free_values`: names bound under no_grad on every path (MDL007), with the region.
- `values`: names whose value may derive from forward outputs (modelint.facts.intent).
- `saved`: `was_training = model.training` keeps `model`'s mode in a name, for the
  `model.train(was_training)` that restores it.
- `unbound`: local names no assignment has reached yet on this path. A path on which
  `model` is still unbound adds nothing to the join (`if name == "gin": model = GIN()`
  without an `else`, then `return model`: the other path raises NameError).

Keys are dotted texts. Putting `self.net` in a mode reaches `self.net.encoder` too, and
a parent whose child was switched alone is in no single mode any more.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import libcst as cst

from modelint.facts.lattice import ENTRY_MODE, HAVOC_MODE, GradFact, ModeFact


def through_aliases(aliases: dict[str, str], key: str) -> str:
    """`key` under the name it is another name of (`m.encoder` with `m = model` -> `model.encoder`)."""
    head, dot, rest = key.partition(".")
    if head == "self" and rest:  # `self.mnetwork`, another name of `self.network` (ObjectModes.attribute_aliases)
        attribute, dot, rest = rest.partition(".")
        head = f"self.{attribute}"
    target = aliases.get(head)
    if target is None and rest:
        # `scorer._model`, another name of the module its creator handed in (Bindings._alias_held_arguments)
        attribute, dot, rest = rest.partition(".")
        target = aliases.get(f"{head}.{attribute}")
    return f"{target}{dot}{rest}" if target else key


@dataclass
class State:
    models: dict[str, ModeFact]
    grad: GradFact
    aliases: dict[str, str] = field(default_factory=dict)
    grad_free_values: dict[str, cst.CSTNode] = field(default_factory=dict)
    values: dict[str, frozenset] = field(default_factory=dict)
    saved: dict[str, tuple[str, ModeFact]] = field(default_factory=dict)  # name -> (model, its mode then)
    unbound: frozenset[str] = frozenset()
    either: dict[str, frozenset[str]] = field(default_factory=dict)  # name -> the models it may be

    def copy(self) -> "State":
        return State(dict(self.models), self.grad, dict(self.aliases), dict(self.grad_free_values), dict(self.values),
                     dict(self.saved), self.unbound, dict(self.either))

    def canonical(self, key: str, wrapped: bool = False) -> str:
        """The key the state follows for `key`: through aliases (`self.mnetwork`, `scorer._model`), and with
        `wrapped`, through a DataParallel / DDP wrapper: `model.module` of a followed `model` is its only
        child, in its mode, run and switched as `model` is."""
        key = self._canonical(key)
        parent, dot, name = key.rpartition(".")
        if wrapped and dot and name == "module" and parent not in ("self", "cls") and self.tracks(parent):
            return parent
        return key

    def _canonical(self, key: str) -> str:
        return through_aliases(self.aliases, key)

    def fact(self, key: str) -> ModeFact:
        """The key's mode; a submodule not followed on its own is in its closest followed parent's mode
        (`model.eval()` then `model.encoder(x)`)."""
        found = self.models.get(key)
        if found is not None:
            return found
        found = followed_parent(self.models, key)
        if found is not None:
            return replace(found, parameterless=False) if found.parameterless else found
        return ENTRY_MODE

    def tracks(self, key: str) -> bool:
        """Is `key`, or something inside it, a model this state follows?"""
        return any(known == key or known.startswith(key + ".") for known in self.models)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, State) and self.models == other.models and self.grad == other.grad
                and self.aliases == other.aliases and self.grad_free_values == other.grad_free_values
                and self.values == other.values and self.saved == other.saved and self.unbound == other.unbound
                and self.either == other.either)

    # -- updates ------------------------------------------------------------------
    def forget(self, key: str) -> None:
        """`key` is rebound to something we do not follow."""
        if key in self.unbound:
            self.unbound = self.unbound - {key}
        for known in [k for k in self.models if k == key or k.startswith(key + ".")]:
            del self.models[known]
        for alias in [a for a in self.aliases if a == key or a.startswith(key + ".")]:
            del self.aliases[alias]
        self.grad_free_values.pop(key, None)
        self.values.pop(key, None)
        self.saved.pop(key, None)
        for alias in [a for a, target in self.aliases.items() if target == key]:
            del self.aliases[alias]
        for name in [n for n, targets in self.either.items() if n == key or key in targets]:
            del self.either[name]

    def put(self, key: str, updated: ModeFact) -> None:
        """`key` is in the mode `updated` says; so are its children; its parents are mixed."""
        if key in self.unbound:
            self.unbound = self.unbound - {key}
        # (its parts: what it holds, under its own name or another, `wrapper.draft` for `draft`)
        held = [target for alias, target in self.aliases.items() if alias.startswith(key + ".") and target != key]
        for known in list(self.models):
            if known.startswith((key + ".", key + "[")) or known in held:  # (`self.nets["policy"]` too)
                self.models[known] = replace(self.models[known], train_sites=updated.train_sites,
                                             eval_sites=updated.eval_sites, entry=False, havoc=updated.havoc)
        for part in held:
            if part not in self.models:  # (a global part not met yet here: `pair.train()` before `head_a(x)`)
                self.models[part] = ModeFact(updated.train_sites, updated.eval_sites, havoc=updated.havoc,
                                             certain=False)
        self.models[key] = updated
        for target in self.either.get(key, ()):  # (one of them is switched: each may be)
            for known in [k for k in self.models if k == target or k.startswith((target + ".", target + "["))]:
                self.models[known] = self.models[known].join(updated)
            if target not in self.models:
                self.models[target] = ENTRY_MODE.join(updated)
        # (and a model holding it as a part: `eagle.draft_model`, another name of `draft_model` switched here)
        for parent in (*_parents(key), *self._holders(key)):
            if parent in self.models and not _same_single_mode(self.models[parent], updated):
                self.models[parent] = replace(self.models[parent], havoc=True)

    def havoc(self, key: str, part: bool = False) -> None:
        """A call we cannot see into may have changed `key`'s mode; where `key` is a module's part (`part`), its
        parents are in no single mode any more either."""
        found = False
        for known in list(self.models):
            if known == key or known.startswith((key + ".", key + "[")):
                self.models[known] = replace(self.models[known], havoc=True)
                found = found or known == key
        if not found:
            self.models[key] = HAVOC_MODE
        for parent in (*(_parents(key) if part else ()), *self._holders(key)):
            if parent in self.models:
                self.models[parent] = replace(self.models[parent], havoc=True)

    def _holders(self, key: str) -> list[str]:
        """The models holding `key` as a part under another name (`wrapper.draft` for `draft`)."""
        return [alias.rsplit(".", 1)[0] for alias, target in self.aliases.items() if target == key and "." in alias]


def followed_parent(models: dict, key: str):
    """The fact of `key`'s closest parent `models` follows (`model` for `model.encoder`, `self.nets` for
    `self.nets['policy']`), or None."""
    while True:
        if key.endswith("]") and "[" in key:
            key = key[:key.rindex("[")]
        elif "." in key:
            key = key.rsplit(".", 1)[0]
        else:
            return None
        found = models.get(key)
        if found is not None:
            return found


def _parents(key: str):
    """"model" and "model.encoder" for "model.encoder.head"."""
    parts = key.split(".")
    return (".".join(parts[:i]) for i in range(1, len(parts)))


def _same_single_mode(parent: ModeFact, part: ModeFact) -> bool:
    """A part put in the mode its whole is surely in already (`model.net.train()` on a model in training
    mode): the whole is still in that one mode."""
    return (parent.definitely_train and part.definitely_train) or (parent.definitely_eval and part.definitely_eval)


def join(a: State | None, b: State | None) -> State | None:
    if a is None:
        return b.copy() if b is not None else None
    if b is None:
        return a.copy()
    # (In a fixed order, not a set's: what reads these dicts in order must not depend on the hash seed.)
    models = {key: _join_fact(a, b, key) for key in (*a.models, *(k for k in b.models if k not in a.models))}
    aliases = {k: v for k, v in a.aliases.items() if b.aliases.get(k) == v}
    tainted = {k: v for k, v in a.grad_free_values.items() if k in b.grad_free_values}
    values = dict(a.values)
    for key, origins in b.values.items():
        values[key] = values[key] | origins if key in values else origins
    saved = {}
    for name, (key, fact) in a.saved.items():
        other = b.saved.get(name)
        if other is not None and other[0] == key:
            saved[name] = (key, fact.join(other[1]))
    either = {name: targets | b.either[name] for name, targets in a.either.items() if name in b.either}
    return State(models, a.grad.join(b.grad), aliases, tainted, values, saved, a.unbound & b.unbound, either)


def _join_fact(a: State, b: State, key: str) -> ModeFact:
    """A name still unbound on one path has no mode there: the other path's mode is the name's."""
    if key not in b.models and key in b.unbound:
        return a.fact(key)
    if key not in a.models and key in a.unbound:
        return b.fact(key)
    return a.fact(key).join(b.fact(key))
