"""The small lattices the mode flow joins at branches and loop heads.

- `ModeFact`: what may be true of one model's train/eval mode here, over all paths,
  and where the value came from (its dependence on mode, whether it is surely an
  nn.Module).
- `GradFact`: whether autograd may be on here.

Sites are the nodes (or `RemoteSite`s in other functions and files) that put a
model in a mode or switched autograd off: they are the evidence a finding shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import libcst as cst

from modelint.facts.modules import Dependence
from modelint.facts.names import literal_value
from modelint.summary import RemoteSite


@dataclass(frozen=True)
class ModeFact:
    """What may be true of one model's mode here, over all paths."""

    train_sites: frozenset = frozenset()  # constructions and train() calls that may reach here
    eval_sites: frozenset = frozenset()  # eval()/train(False) calls (or RemoteSites) that may reach here
    entry: bool = False  # the mode it had when the function was entered may reach here unchanged
    havoc: bool = False  # a call we cannot see into may have changed it
    dependence: Dependence = Dependence.UNKNOWN
    certain: bool = True  # known to be an nn.Module (not merely a capitalised call)
    origin: str | None = None  # the imported class it was built from, when this file cannot see it
    parameterless: bool = False  # a torch.nn loss, activation, padding...: calling it is no model's forward

    def join(self, other: "ModeFact") -> "ModeFact":
        if self == other or other is NO_MODULE:
            return self
        if self is NO_MODULE:
            return other
        return ModeFact(
            self.train_sites | other.train_sites,
            self.eval_sites | other.eval_sites,
            self.entry or other.entry,
            self.havoc or other.havoc,
            max(self.dependence, other.dependence),
            # What the caller passed is the same object on every path: what one path proved it is
            # (trained from data, switched) holds on the path that left it alone.
            self.certain if other == ENTRY_MODE else other.certain if self == ENTRY_MODE else self.certain and other.certain,
            self.origin if self.origin == other.origin else None,
            self.parameterless and other.parameterless,
        )

    @property
    def unknown(self) -> bool:
        return self.entry or self.havoc

    @property
    def undecided(self) -> bool:
        """The mode it came in (or a call we cannot see into left) may reach here, and no eval() does: what
        the function goes on to do with it (train it) says which mode the author means."""
        return self.unknown and not self.eval_sites

    @property
    def definitely_train(self) -> bool:
        return bool(self.train_sites) and not self.eval_sites and not self.unknown

    @property
    def definitely_eval(self) -> bool:
        return bool(self.eval_sites) and not self.train_sites and not self.unknown

    @property
    def exit_effect(self) -> str | None:
        """Net effect of a function on this model, seen from its caller (None: unchanged)."""
        if self.havoc:
            return "unknown"
        if self.train_sites and self.eval_sites:
            return "unknown"
        if self.eval_sites:
            return "may-eval" if self.entry else "eval"
        if self.train_sites:
            return "may-train" if self.entry else "train"
        return None

    def switched(self, mode: str, site) -> "ModeFact":
        """The same value after `site` put it in `mode` ("train" | "eval") on this path."""
        sites = frozenset({site})
        if mode == "eval":
            return replace(self, train_sites=frozenset(), eval_sites=sites, entry=False, havoc=False)
        return replace(self, train_sites=sites, eval_sites=frozenset(), entry=False, havoc=False)


ENTRY_MODE = ModeFact(entry=True, certain=False)  # what the caller passed: not even known to be a module
# A name bound to None or another literal on this path: no module, nothing to join (`best = None` before
# the loop that keeps the best model).
NO_MODULE = ModeFact(dependence=Dependence.INDEPENDENT, certain=False)
HAVOC_MODE = ModeFact(havoc=True, certain=False)


@dataclass(frozen=True)
class GradFact:
    free_sites: frozenset = frozenset()  # with-blocks/decorators/statements that disabled autograd
    may_enabled: bool = False
    unknown: bool = False  # function entry: the caller's grad mode

    def join(self, other: "GradFact") -> "GradFact":
        if self == other:
            return self
        return GradFact(self.free_sites | other.free_sites, self.may_enabled or other.may_enabled,
                        self.unknown or other.unknown)

    @property
    def definitely_free(self) -> bool:
        return bool(self.free_sites) and not self.may_enabled and not self.unknown

    def at_entry(self, entry: "GradFact") -> "GradFact":
        """This fact with the caller's part (`unknown`) replaced by what the callers are known to do."""
        if not self.unknown:
            return self
        return GradFact(self.free_sites | entry.free_sites, self.may_enabled or entry.may_enabled, entry.unknown)


GRAD_ENABLED = GradFact(may_enabled=True)
GRAD_UNKNOWN = GradFact(unknown=True)


def mode_of_call(call: cst.Call) -> str | None:
    """"train" / "eval" for `.train()`, `.train(True/False)`, `.eval()`; None when unknowable
    (`eval(x)` raises, `train(flag)` follows a value we do not know)."""
    method = call.func.attr.value if type(call.func) is cst.Attribute else None
    if method == "eval":
        return None if call.args else "eval"
    if method == "train":
        given = mode_argument(call)
        if given is None:
            # (an override's own flags only, `net.train(freeze_bn=True)`, is training mode on a model: see
            # CallEffects.set_mode; `trainer.train(model_path=p)` of a trainer object is no mode switch)
            return None if call.args else "train"
        mode = literal_value(given)
        if mode is True:
            return "train"
        if mode is False:
            return "eval"
    return None


def mode_argument(call: cst.Call) -> cst.BaseExpression | None:
    """The value a `train(...)` call passes for `mode`: its first positional argument or `mode=`."""
    for arg in call.args:
        if (arg.keyword is None and not arg.star) or (arg.keyword is not None and arg.keyword.value == "mode"):
            return arg.value
    return None


def is_train_site(site) -> bool:
    """Was this mode set by an explicit `train()` (not by building the model)?"""
    if isinstance(site, RemoteSite):
        return site.kind == "train"
    return type(site) is cst.Call and type(site.func) is cst.Attribute and site.func.attr.value == "train"


def first_site(sites: frozenset):
    """One site to show: a remote one first (it names another file), else any local one."""
    for site in sites:
        if isinstance(site, RemoteSite):
            return site
    for site in sites:
        return site
    return None


def join_all(facts) -> ModeFact | None:
    """The join of the facts (a container's elements, the loaders of a registry at one position); None when one
    of them is None (a mode we do not know)."""
    if not facts or any(fact is None for fact in facts):
        return None
    joined = facts[0]
    for fact in facts[1:]:
        joined = joined.join(fact)
    return joined
