"""What the mode flow observes, for rules to read: forwards, training steps, per function.

A `Forward` is a forward pass of one model at one call: the mode and grad mode there
(joined over all paths), and what its output is for. When a helper runs the forward
on a model the caller passes, the record sits in the caller with `via` (the helper's
`ForwardUse`): the caller's mode is what counts. A helper whose output is returned
(`via.intent == "returned"`) makes the call itself a forward of the caller's model,
whose intent the caller's data flow decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from modelint.facts.scopes import FunctionInfo
from modelint.facts.uses import intent_of
from modelint.facts.lattice import GradFact, ModeFact
from modelint.facts.state import through_aliases
from modelint.summary import ForwardUse, FunctionSummary, StepUse


@dataclass
class Forward:
    call: cst.Call  # the forward call, or the call of the helper that runs it
    key: str  # the model, as the caller names it
    mode: ModeFact
    grad: GradFact  # at the call, in the caller
    function: FunctionInfo | None
    in_evaluation_loop: bool
    method: str | None = None  # a method wrapping the forward (`predict_step`), None for `model(x)`/`.forward`
    via: ForwardUse | None = None
    callee: FunctionSummary | None = None
    uses: set[str] = field(default_factory=set)  # what the caller does with the output (modelint.facts.intent)
    fed: bool = False  # its input is another forward's output (a loss, a head): that forward's graph goes on
    # ... and every such forward runs a part of the same object (`self.fc3(self.vdb.get_mean(x))`): one chain
    fed_by_its_own_object: bool = False
    after_forward: bool = False  # its input derives from another forward's output, even cut from its graph
    token: object = None  # what the output's origins name: the call, or (call, phase) in a phase loop
    phase: tuple = ()  # ((variable, value),) inside a phase loop
    shown_by_detach: bool = False  # nothing else shows the callee is a model: kept only if its output is detached
    # For a helper's forward whose result the helper gives back: what the caller does with the call's value.
    caller_uses: set[str] = field(default_factory=set)

    @property
    def intent(self) -> str:
        if self.via is not None and self.via.intent != "returned":
            if "train" in self.caller_uses:
                return "training"  # a result the helper gives back feeds the caller's loss (a TD target)
            return self.via.intent
        return intent_of(self.uses)

    @property
    def kept_on_an_object(self) -> bool:
        """Its output only kept on an object (`storage.values[step] = value`, `self.phi = ...`), outside any loop
        over held-out data: what it is for is up to the code that reads it there."""
        return self.via is None and "store" in self.uses and self.intent == "unknown" and not self.in_evaluation_loop

    @property
    def trains_model(self) -> bool:
        """Its output reaches a backward pass with its graph: the model itself is being trained
        (not a teacher or a target network whose output is only a target)."""
        if self.via is not None and self.via.intent != "returned":
            return self.via.intent == "training"
        return "graph" in self.uses and not self.grad_free

    @property
    def grad_free(self) -> bool:
        """Autograd is off for this forward on every path (here, or inside the helper that runs it)."""
        return self.grad.definitely_free or (self.via is not None and self.via.grad == "free")


@dataclass
class TrainingStep:
    """`loss.backward()` / `optimizer.step()` with every tracked model's mode there."""

    call: cst.Call  # the step, or the call of the helper that runs it
    kind: str  # "backward" | "step"
    models: dict[str, ModeFact]
    grad: GradFact
    function: FunctionInfo | None
    receiver: str | None = None
    grad_free_region: cst.CSTNode | None = None  # the loss was computed in this no_grad region
    via: StepUse | None = None  # a helper's step on a model the caller passes
    trained_key: str | None = None  # with `via`: the caller's model that step trains
    callee: FunctionSummary | None = None  # the helper that runs it (handed the caller's model or its loss)
    reached: set[str] = field(default_factory=set)  # models whose output this backward back-propagates
    phases: set = field(default_factory=set)  # the values of the function's phase parameter it runs in
    aliases: dict[str, str] = field(default_factory=dict)  # other names of models there (`model = self.model`)

    def named_as_followed(self, keys) -> set[str]:
        """`keys` under the names `models` follows them by (`model.parameters()` with `model = self.model`
        is `self.model`'s)."""
        return {through_aliases(self.aliases, key) for key in keys}


@dataclass
class FunctionFlow:
    function: FunctionInfo | None
    forwards: dict[object, Forward] = field(default_factory=dict)  # by token: the call, or (call, phase)
    helper_forwards: dict[tuple, Forward] = field(default_factory=dict)  # (call, ForwardUse) -> Forward
    steps: dict[cst.Call, TrainingStep] = field(default_factory=dict)
    helper_steps: dict[tuple, TrainingStep] = field(default_factory=dict)
    passed_modes: dict[cst.Call, ModeFact] = field(default_factory=dict)  # a helper's forward -> callers' mode
    uses: dict[cst.Call, set[str]] = field(default_factory=dict)
    exit_state: object = None
    phase_param: str | None = None  # a parameter that picks training or evaluation (modelint.facts.phases)
    phase_exits: dict = field(default_factory=dict)  # each value of it -> the exit state then
    returned: ModeFact | None = None  # the module it returns (a factory), joined over its returns
    # A tuple it returns (`return model, optimizer`): the module at each position (None: none known; a parameter's
    # name: that parameter handed back as it came), joined over its returns; "" once two returns disagree in
    # length or one returns something else.
    returned_items: list | str | None = None
    # A dict it returns with literal keys (`return {"embeddings": emb, "vocab": vocab}`): the module under each
    # key, joined over its returns (a key some return lacks is dropped); "" once a return hands back anything else.
    returned_entries: dict | str | None = None
    # The parameter every return hands back untouched (`return model` after `model.load_state_dict(...)`);
    # "" once a return hands back anything else.
    returned_param: str | None = None
    trains: bool = False  # it has a training step, itself or through a helper it calls
    backward_in_helpers: bool = False  # a helper it calls trains (runs the backward its `optimizer.step()` uses)
    feeds_into: dict = field(default_factory=dict)  # forward token -> the forwards its output is the input of
    compares: set = field(default_factory=set)  # tokens of forwards scoring another's output against data (a loss)
    # `model.train(was_training)` restoring a mode saved here with no switch in between: model -> the call
    idle_restores: dict[str, cst.Call] = field(default_factory=dict)
    # Parameters bound to another value on some path (`model = copy.deepcopy(model)`): not the caller's from there.
    rebound_params: set[str] = field(default_factory=set)
    follows_parameters: bool = False  # its parameters' values are origins too (see ModeFlow)

    # An optimizer steps in a caller or another method of the same object, and this function computes no
    # gradient for its own sake: its backward is a training step (a micro-batch of gradient accumulation).
    stepped_elsewhere: bool = False

    def trained_keys(self) -> set[str]:
        """Models this function trains: their outputs reach a backward with the graph, and an optimizer
        steps here or for it (a backward alone may be for input gradients: Grad-CAM, saliency)."""
        return {forward.key for forward in self.training_forwards()}

    def training_forwards(self) -> list:
        """The forwards whose outputs reach a backward with the graph, when an optimizer steps here or
        for it."""
        # (a helper handed the loss, `self.backward(loss)`, that steps the optimizer itself counts)
        if not self.stepped_elsewhere and not any(step.kind == "step" or (step.callee is not None and step.callee.trains)
                                                  for step in self.steps.values()):
            return []
        return [forward for forward in self.all_forwards() if forward.trains_model]

    def first_stages(self, forwards) -> set:
        """Tokens of the forwards whose output is the input of another of these forwards (one with
        weights): `data = transform(data)` before `model(data.x)`. Not a model whose output a criterion
        scores against the batch (`self.crit(self.model(x), y)`, both handed to a trainer's constructor)."""
        models = {forward.token for forward in forwards
                  if not forward.mode.parameterless and forward.token not in self.compares}
        return {forward.token for forward in forwards
                if self.feeds_into.get(forward.token, set()) & (models - {forward.token})}

    def all_forwards(self):
        yield from self.forwards.values()
        yield from self.helper_forwards.values()


def is_the_loss(facts, token) -> bool:
    """Does the forward `token` score another forward's output against data and feed no other forward (`crit(net(x),
    y)`, not a decoder fed its encoder's output beside the target tokens)? `facts`: a FunctionFlow, or the intent
    facts it takes its `compares` and `feeds_into` from."""
    return token in facts.compares and not facts.feeds_into.get(token)
