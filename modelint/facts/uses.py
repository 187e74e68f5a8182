"""The words for what a forward's output is used for, and how directly a value carries an output.

The interpreter (modelint.facts.intent) records these words per forward; `intent_of` turns a forward's
words into one intent ("training", "evaluation", "returned", ...), which rules and summaries read.
"""

from __future__ import annotations

from modelint.facts.names import dotted

TRAIN, EVAL, RETURN, STORE, ESCAPE, WEAK, DISCARD = "train", "eval", "return", "store", "escape", "weak", "discard"
HANDED = "handed"
SAMPLED = "sampled"
CHECKED = "checked"  # reaches an `assert`: the code tests the module (a self-test, a unit test)
# compared (`dist <= cutoff`, `out == y`): an evaluation, unless the output also goes back to the caller with its
# graph, where the comparison may only build a mask for a loss (`torch.where(dist <= cutoff, err, 0)`)
COMPARED = "compared"
HOOKED = "hooked"  # handed to an object built holding the model (a Grad-CAM extractor): it may back-propagate
GRAPH = "graph"  # with TRAIN: the output reached the backward still attached (the model is being trained)
DETACH = "detach"  # cut from its graph on purpose (`.detach()`, `.data`) while it still carried it
FED = "fed"  # not a use of the output: its input is another forward's output (a loss, a head, a second stage)
AFTER = "after"  # not a use: its input derives from another forward's output, even detached (`loss(pred.cpu(), y)`)
FEEDS = "feeds"  # not a use either: its output is, as it is, another forward's input (preprocessing, a first stage)
META = "meta"  # only its shape, dtype or length was read: mode cannot change those
BUILT = "built"  # a module's own methods were called on it (`load_state_dict`, `eval()`): the call built a module
GIVEN_BACK = "given-back"  # something cut from it (its argmax, its indices) is returned: the caller gets a result
# (of a function's parameter only) returned still carrying its graph: what the caller handed goes on in the result
HANDED_BACK = "handed-back"


# Origins: a frozenset of (forward call, level). Level says how directly the value carries the output:
DIRECT, OPAQUE, DETACHED = 2, 1, 0  # the output or tensor ops on it; through a call we cannot see; no graph
Origins = frozenset
NONE: Origins = frozenset()


def is_parameter(origin) -> bool:
    """An origin that is a function's parameter (`("param", name)`), not a forward's output."""
    return isinstance(origin, tuple) and origin[0] == "param"


def detached(origins: Origins) -> Origins:
    return frozenset((call, DETACHED) for call, _level in origins)


def opaque(origins: Origins) -> Origins:
    return frozenset((call, min(level, OPAQUE)) for call, level in origins)


def intent_of(uses: set[str]) -> str:
    """One word for what a forward's output is for (see the module docstring)."""
    if BUILT in uses:
        return "built"  # (`agent = Model(envs)` for a parameter annotated as a module: a class, called)
    if TRAIN in uses:
        return "training"
    if HOOKED in uses:
        return "unknown"  # handed to something that may back-propagate through it, whatever else it is for
    if RETURN in uses:
        return "returned"
    if STORE in uses or SAMPLED in uses:
        return "unknown"
    if META in uses and uses <= {META, DISCARD, DETACH}:
        return "shape"  # a shape probe (`self.net(dummy).shape[1]`): no evaluation
    if CHECKED in uses:
        return "shape"  # asserted on (`assert run1 != run2`): a self-test of the module, no evaluation
    if ESCAPE in uses or (HANDED in uses and not evaluated(uses)):
        return "escaped"  # handed to a call we cannot see into: it may keep it for training
    if evaluated(uses):
        return "evaluation"
    return "inference"  # dropped, printed or logged only (or never used)


def evaluated(uses) -> bool:
    """Turned into a prediction or a metric, or compared."""
    return EVAL in uses or COMPARED in uses


def graph_handed_to_update(origins, with_a_model: bool) -> bool:
    """Does a call handed an optimizer get a forward's graph to step on: any value carrying one, or, when a
    model comes with it (`take_optimisation_step(optimizer, net, loss)` but also `save_checkpoint(model,
    optimizer, metrics)`), the output itself or tensor operations on it, not a value through a call."""
    needed = DIRECT if with_a_model else OPAQUE
    return any(level >= needed and not is_parameter(origin) for origin, level in origins)


def held_on(receiver, values: dict[str, Origins]) -> Origins:
    """The outputs stored on a local object's attributes (`storage.ret[i] = ret`: "storage.ret")."""
    key = dotted(receiver)
    if key is None or "." in key or key in ("self", "cls") or not values:
        return NONE  # (`self`'s attributes are the object's state: its methods' summaries say what they use)
    prefix = key + "."
    held = [origins for name, origins in values.items() if name.startswith(prefix)]
    return frozenset().union(*held) if held else NONE
