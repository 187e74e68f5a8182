"""What a call does to the abstract state.

- `model.eval()` / `model.train(flag)` (also at the end of a chain, `model.to(d).eval()`):
  the model's mode.
- `model(x)`, `model.forward(x)`, a method that wraps the forward
  (`model.predict_step(x)`, `model.generate(...)`): a `Forward`, with the mode and grad
  mode here.
- `loss.backward()`, `optimizer.step()`: a `TrainingStep` with every model's mode here (see
  modelint.facts.training_steps).
- a call of a function whose summary is known (this file, or another through the
  project index): see modelint.facts.summary_effects.
- `with eval_mode(model):` — a context manager of the project that puts its arguments in
  eval mode and restores them on exit (its summary says so).
- any other call that receives a model may change its mode if it is a helper of the project the
  flow interprets, or its name says it evaluates, trains or sets a mode: the mode becomes unknown;
  objects built holding a model, and other files' callables handed one: modelint.facts.handed_models.
Which names are models at all is modelint.facts.followed's question.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.applied import NEUTRAL_BUILTINS, applies_a_mode_neutral_function
from modelint.facts.uses import DETACHED
from modelint.facts.phases import decide
from modelint.facts.targets import interpreted_names
from modelint.facts.lattice import GradFact, ModeFact, mode_argument, mode_of_call
from modelint.facts.loops import container_of_every_entry
from modelint.facts.names import dotted, literal_value, tokens, value_key
from modelint.facts.modules import Dependence, unwrap_chain
from modelint.facts.naming import EVAL_WORDS, TRAIN_WORDS, names_evaluation_data
from modelint.facts.provenance import receiver_key
from modelint.facts.records import Forward
from modelint.facts.returns import ReturnedValues
from modelint.facts.regions import constructor_turns_grad_off
from modelint.facts.followed import FollowedNames
from modelint.facts.handed_models import INLINE_OBJECT, HandedModels, handed_known_model
from modelint.facts.mode_contexts import ModeContexts
from modelint.facts.state import State
from modelint.facts.value_calls import BACKWARD_METHODS
from modelint.facts.summary_effects import SummaryEffects
from modelint.facts.training_steps import TrainingSteps
from modelint.summary import FunctionSummary

_NEUTRAL_METHODS = frozenset({"append", "extend", "format", "info", "debug", "warning", "log", "add_graph",
                              "watch", "update", "write", "add_scalar"})
# Words of helpers that switch a mode: `set_mode`, `freeze_bn`, `enable_dropout`, `toggle_grad`.
# Words that, with a phase's name, make a method name a switch: `val_start`, `set_train`, `eval_mode`.
_SWITCH_WORDS = frozenset({"start", "begin", "mode", "set", "switch", "to", "enter", "enable"})
_MODE_WORDS = frozenset({"mode", "freeze", "unfreeze", "bn", "batchnorm", "dropout", "toggle", "requires"})


class CallEffects(FollowedNames, SummaryEffects, ModeContexts, TrainingSteps, HandedModels, ReturnedValues):
    def __init__(self, flow, out, params: set[str]) -> None:
        self.flow = flow
        self.out = out
        self.params = params
        self.evaluation_loops = 0
        self.tag: tuple = ()  # inside a phase loop: ((variable, value),), so each phase has its own forwards

    # -- calls ------------------------------------------------------------------
    def calls_of(self, owner: cst.CSTNode, state: State) -> None:
        """Apply the calls made by a small statement or a compound statement's header, in order (those of
        `[m.eval() for m in nets]` as the loop it stands for)."""
        if type(owner) in (cst.Expr, cst.Assign) and self.comprehension_switch(owner.value, state):
            return
        for call in self.flow.collector.calls_by_owner.get(owner, ()):
            self.call(call, state)

    def _method_of_inline_object(self, func: cst.Attribute):
        """The summary of `method` in `Cls(...).method()`, `Cls` a class another file of the project defines."""
        qualified = self.flow.imports.qualify(func.value.func)
        if qualified is None or self.flow.imports.is_torch_name(qualified) \
                or not qualified.rpartition(".")[2][:1].isupper():
            return None
        self.flow.last_unresolved = None
        summary = self.flow.resolve_method_of(qualified, func.attr.value)
        if summary is None:
            # (`eu.EvalUtility(x, model).results()` after `import eval_utils as eu`: no import names the class,
            # so only this question tells the second phase to look at it)
            self.flow.ask_the_index_later()
        return summary

    def call(self, call: cst.Call, state: State) -> None:
        flow = self.flow
        func = call.func
        local = flow.local_callee(call, self.out.function)
        if local is not None:
            flow.record_call_site(local, call, self.out.function, state)
        for override in flow.overriders(call, self.out.function):  # a template method calling its hook
            if override != local:
                flow.record_call_site(override, call, self.out.function, state)
        if local is None and call.args:
            self._record_handed_models(call, state)
        built = flow.modules.classes.get(func.value) if type(func) is cst.Name else None
        switched_off = constructor_turns_grad_off(flow, built) if built is not None else None
        if switched_off is not None:  # `Inferer(path)` whose `__init__` calls `torch.set_grad_enabled(False)`
            state.grad = GradFact(free_sites=frozenset({switched_off}))
        if built is not None and func.value not in flow.imports.bindings:
            self.constructor_effects(call, built, state)
            self.record_handed_to_constructor(call, built, state)
        key = value_key(func)
        if type(func) is cst.Name and local is None:
            key = self.bound_forward(func.value) or key  # `forward = self.net.forward`, then `forward(x)`
        if key is None and type(func) is cst.Call:
            moved, chain = unwrap_chain(func)
            key = value_key(moved) if chain else None  # `model.to(device)(x)`: the model itself, moved
        elif len(call.args) > 1 and call.args[0].keyword is None \
                and flow.imports.qualify(func) in api.MODULE_RUNNERS:
            key = value_key(call.args[0].value)  # `data_parallel(netG, noise, gpus)`: netG's forward
        steps = local is None and self._updates_with(call, state)
        if steps:
            # `loss_scaler(loss, optimizer, parameters=model.parameters())`: no model takes an optimizer;
            # whatever gets one runs the update (backward and step) on what it is given with it.
            self.step(call, "backward", state, None)
        elif key is not None and not (local is not None and type(func) in (cst.Name, cst.Attribute)
                                      and local.endswith(".__call__") and not key.endswith(".__call__")):
            # (`teacher(x)` on an object of a plain class of this file runs its `__call__`, whose summary says)
            canonical = state.canonical(key, wrapped=True)
            if self._is_model(state, canonical):
                # An object of a class we cannot see, handed a model this function switches or trains
                # (`inferer(inputs=x, diffusion_model=unet)`): a runner of that model, which is what runs.
                handed = handed_known_model(call, canonical, state) \
                    if state.fact(canonical).dependence is Dependence.UNKNOWN \
                    and not self._own_parameter(canonical) else None
                self.forward(call, handed or canonical, state)
            elif call.args and self._inherited_attribute(canonical) and not self._made_from_nothing(call):
                self.forward(call, canonical, state, shown_by_detach=True)
        if type(func) is cst.Attribute:
            method = func.attr.value
            receiver = value_key(func.value)
            if receiver is None and method in ("eval", "train"):
                receiver = receiver_key(func.value, flow.imports)  # `model.to(device).eval()`
            if receiver is not None:
                receiver = state.canonical(receiver, wrapped=True)
                callee = flow.local_functions.get(local) if local is not None else None
                # (`trainer.train(loader)`: a method of a class of this file that is no module, whose summary says)
                plain = callee is not None and callee.cls is not None and not flow.is_module_class(callee.cls)
                if local is None and set(tokens(method)) & EVAL_WORDS \
                        and not self._plain_class_setting_no_mode(self._imported_class_of(receiver)):
                    # `trainer = Trainer(model, ...)`, then `trainer.evaluate()`: an object of a class we cannot
                    # see, built holding the model, evaluates it, and may leave it in eval mode (HF's Trainer
                    # does). (Its `train()` is left alone: a model trained by it is in training mode after.)
                    for held in self._handed_to_builder_of(receiver, state):
                        self.havoc(state, held)
                if method in ("eval", "train"):
                    # `models = Models({"G": G})`, then `models.eval()`: an object holding models switches them
                    for held in self._handed_to_builder_of(receiver, state):
                        self.set_mode(state, held, call)
                if method in ("eval", "train") and not plain:
                    # (`[nets[k].eval() for k in nets]`: every entry of `nets`, as `nets.eval()` switches them)
                    receiver = container_of_every_entry(flow, call, func.value) or receiver
                    owner = self.parts.get(receiver)
                    if owner is not None:  # some submodules of `owner` switched (BatchNorms only, say)
                        self.havoc(state, state.canonical(owner))
                        return
                    self.set_mode(state, receiver, call)
                    if (whole := self.whole_switched_through(state, receiver)) is not None:
                        self.set_mode(state, whole, call)  # (`ranker.model.eval()`: the one part whose mode matters)
                    return
                if method == "load_state_dict":
                    self._loaded_after_building(state, receiver)
                if method == "forward":  # an explicit forward pass, whatever the receiver turns out to be
                    # (not a compiled extension's `forward()` function, nor the method of a model written by hand
                    # on plain tensors, run through its summary)
                    if receiver not in flow.imports.modules and not (plain and _hand_written_on_plain_tensors(
                            callee.cls, flow.collector.classes)) and not self._another_frameworks(receiver) \
                            and not self._plain_class_setting_no_mode(self._imported_class_of(receiver)) \
                            and not (receiver in flow.modules.classes and not state.tracks(receiver)
                                     and not flow.is_module_class(flow.modules.classes[receiver])):
                        # (not `grid.forward()` of a plain class of another file building anchors either; nor
                        # `Engine.forward(model, batch)`, a plain class's function called through the class)
                        self.forward(call, receiver, state)
                elif (method == "backward" and local is None) or (method == "step" and (
                        flow.is_optimizer(receiver) or (local is None and flow.handed_one_optimizer(call)))):
                    # (`self.grad_scaler.step(self.optimizer)`: a loss scaler of a class we cannot see steps it)
                    # (a method of this file named `backward`, `self.backward(loss)`: its summary says what it runs)
                    self.step(call, "backward" if method == "backward" else "step", state, receiver)
                elif (method == "apply" and not applies_a_mode_neutral_function(flow, call, self.out.function)) \
                        or (method in flow.mode_setting_methods and state.tracks(receiver)):
                    self.havoc(state, receiver)
                elif local is None and not call.args and _names_a_mode_switch(method) and self.follows(receiver, state):
                    self.havoc(state, receiver)  # `model.val_start()` of a wrapper we cannot see into
                elif local is None and ((wraps_forward(method) and (self._module_receiver(state, receiver) or (
                        receiver in self.params and receiver not in ("self", "cls")
                        and method.startswith(("forward", "encode_")))))
                        or self._own_inference_method(call, state, receiver, method)) \
                        and not self._summarised_elsewhere(call, state, receiver):
                    # (a parameter's `model.encode_image(x)`: what its callers hand it decides)
                    self.forward(call, receiver, state, method=method)
                elif call.args and getattr(flow.local_functions.get(local or ""), "is_abstract", False) \
                        and self._module_receiver(state, receiver) and not flow.overriders(call, self.out.function):
                    # `self.predict_proba(X)` left to subclasses of a module: they run its layers on X. (Not when
                    # the subclasses are in sight: what they write is what runs, `a + b / T` or a forward.)
                    self.forward(call, receiver, state, method=method)
            elif method == "backward":  # `scaler.scale(loss).backward()`
                self.step(call, "backward", state, None)
        qualified = flow.imports.qualify(func)
        if qualified in api.BACKWARD_FUNCTIONS:
            self.step(call, "backward", state, None)
        if qualified in api.MODE_NEUTRAL_FUNCTIONS or (type(func) is cst.Name and func.value in NEUTRAL_BUILTINS):
            return
        if type(func) is cst.Attribute and func.attr.value in _NEUTRAL_METHODS | api.MODE_PRESERVING_METHODS and local \
                is None and not self._summarised_elsewhere(call, state, value_key(func.value) or "", effects=False):
            return  # (unless a class of another file defines it: `synth.generate(x)` runs that method's summary)
        flow.last_unresolved = None
        summary, self_receiver = flow.resolve(call, self.out.function)
        if summary is None and type(func) is cst.Attribute and (receiver := value_key(func.value)) is not None:
            receiver = state.canonical(receiver)
            origin = self._object_origin(state, receiver)
            if origin:  # (`local = LocalUpdate(args)`, a plain class of another file: `local.inference(model=m)`)
                summary, self_receiver = flow.resolve_method_of(origin, func.attr.value), receiver
                if summary is None:
                    flow.ask_the_index_later()  # (what the method does to its object)
            elif not state.tracks(receiver) or state.fact(receiver).origin is None:
                summary = self._method_of_alike_classes(receiver, func.attr.value)
                self_receiver = receiver if summary is not None else self_receiver
            if summary is None and not origin:
                # `model.predict(x)` on a parameter: the class other files' calls hand it, when they agree
                handed = flow.class_handed_to(self.out.function, receiver, func.attr.value)
                if handed is not None:
                    summary, self_receiver = flow.resolve_method_of(handed[0], func.attr.value, handed[1]), receiver
        elif summary is None and type(func) is cst.Name and local is None and key is not None:  # `agent(obs)`
            summary, self_receiver = self._called_object(key, state)
        inline = None
        built_here = summary is not None and type(func) is cst.Attribute and type(func.value) is cst.Call \
            and flow.constructed_inline(func.value) is not None
        if built_here or (summary is None and type(func) is cst.Attribute and type(func.value) is cst.Call
                          and (summary := self._method_of_inline_object(func)) is not None):
            # `Evaluator(self.model, loader).get_scores()`: an object built right there, holding what it is
            # handed; its method's effects on `self.model` are on the model handed in
            inline = self_receiver = INLINE_OBJECT
            self._alias_held_arguments(inline, func.value, state)
        if summary is not None:
            self.apply_summary(summary, call, state, self_receiver)
            if inline is not None:
                state.forget(inline)
            return
        may_switch = self._may_switch_mode(call)
        for arg in call.args:
            arg_key = value_key(arg.value)
            if arg_key is not None:
                arg_key = state.canonical(arg_key)
                if state.tracks(arg_key) or (arg_key in self.params and not self._receiver(arg_key)):
                    if may_switch and not self._fit_keeps_training(call, state, arg_key):
                        self.havoc(state, arg_key)
                    if flow.last_unresolved is not None:
                        # Another file's helper may know what it does to this model.
                        flow.unresolved.add(flow.last_unresolved)
                elif flow.last_unresolved is not None and (self.held_by_param(arg_key) or self._plain_receiver(arg_key)):
                    # (`gather(trainer.model, ...)`: the caller's model; `refresh_labels(self)`: what the trainer holds)
                    flow.unresolved.add(flow.last_unresolved)
        if flow.last_unresolved is not None and any(
                level != DETACHED for arg in call.args for _token, level in self.uses.expression(arg.value, state.values)):
            flow.unresolved.add(flow.last_unresolved)  # (or whether it back-propagates the loss it is handed)

    def _may_switch_mode(self, call: cst.Call) -> bool:
        """May a call we cannot see into change the mode of a model it is given?

        A helper of this project (imported relatively, or defined here without a summary) may;
        so may one whose name says it evaluates, trains or sets a mode (`evaluate(model, loader)`,
        `trainer.fit(model)`, `set_bn_eval(model)`). Saving, logging, counting parameters,
        profiling and wrapping (`save_checkpoint(model)`, `summary(model)`, `wandb.watch(model)`)
        leave it as it is: assuming otherwise would forget every mode the code set.
        """
        func = call.func
        name = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else None
        if name is None:
            return True
        qualified = self.flow.imports.qualify(func) or ""
        if type(func) is cst.Name and name[:1].isupper() and self._plain_class_setting_no_mode(qualified):
            return False  # `Predictor(model)`, a plain class of another file whose methods set no mode
        if qualified.startswith(".") or (type(func) is cst.Name and name in interpreted_names(self.flow)):
            return True  # (one of this file the flow does not interpret touches no mode: `to_labels(y, m)`)
        if name in BACKWARD_METHODS or (name.startswith("optimizer_") and self._hands_an_optimizer(call)):
            return False  # the update itself (`strategy.backward(loss, model, optimizer)`): no mode switch
        words = set(tokens(name))
        return bool(words & (EVAL_WORDS | TRAIN_WORDS | _MODE_WORDS))

    # -- mode -------------------------------------------------------------------
    def set_mode(self, state: State, key: str, call: cst.Call) -> None:
        mode = mode_of_call(call)
        if mode is None and type(call.func) is cst.Attribute and call.func.attr.value == "train":
            given = mode_argument(call)  # `model.train(mode=is_train)` in a phase; `self.G.train(finetune=True)`,
            decided = decide(given, self.constants) if given is not None else (  # an override's own flag only
                True if self._is_model(state, key) and not any(arg.star for arg in call.args) else None)
            mode = None if decided is None else "train" if decided else "eval"
        if mode is None:
            restored = self._restored_mode(state, key, call)
            if restored is None:
                self.havoc(state, key)
                return
            if state.fact(key) == restored:  # saved, then restored, never switched in between
                self.out.idle_restores[key] = call
            elif self.out.idle_restores.get(key) is call:
                del self.out.idle_restores[key]  # (a later pass over a loop switched it after all)
            state.put(key, restored)
            return
        current = state.models.get(key)
        state.put(key, (current if current is not None else ModeFact()).switched(mode, call))

    def havoc(self, state: State, key: str, part: bool = False) -> None:
        state.havoc(key, part)

    @staticmethod
    def _restored_mode(state: State, key: str, call: cst.Call) -> ModeFact | None:
        """`model.train(was_training)` after `was_training = model.training`: the mode it had then."""
        if len(call.args) != 1 or type(call.args[0].value) is not cst.Name:
            return None
        saved = state.saved.get(call.args[0].value.value)
        return saved[1] if saved is not None and saved[0] == key else None

    def _own_parameter(self, key: str) -> bool:
        """Is `key` (or what it is part of) one of the function's own parameters, `self` or `cls`?"""
        function = self.out.function
        head = key.split(".")[0]
        return head in ("self", "cls") or (function is not None and head in function.param_set)

    # -- forwards and training steps ---------------------------------------------
    def forward(self, call: cst.Call, key: str, state: State, method: str | None = None, via=None,
                callee: FunctionSummary | None = None, helper: bool = False, shown_by_detach: bool = False,
                fact=None, phase: tuple | None = None) -> None:
        if ("." in key and key.rsplit(".", 1)[1] in api.MODE_PRESERVING_METHODS) \
                or (fact is None and key in state.unbound and key not in state.models):
            return  # (`pp = model.parameters`, a bound method; or None on this path: `head(x) if head else x`)
        table = self.out.helper_forwards if helper else self.out.forwards
        token = (call, self.tag) if self.tag else call  # what the output's origins name
        slot = (token, via) if helper else token
        seen = table.get(slot)
        fact = (key == "self" and self.parts_run_by_forward(state, method) or state.fact(key)) if fact is None else fact
        # A helper evaluating what the caller hands it, handed held-out data (`self.score(dev_loader)`).
        in_loop = self.evaluation_loops > 0 or (via is not None and _passes_evaluation_data(call))
        if seen is None:
            table[slot] = Forward(call, key, fact, state.grad, self.out.function, in_loop, method=method, via=via,
                                  callee=callee, token=token, phase=self.tag if phase is None else phase,
                                  shown_by_detach=shown_by_detach)
        else:
            seen.mode = seen.mode.join(fact)
            seen.grad = seen.grad.join(state.grad)
            seen.in_evaluation_loop = seen.in_evaluation_loop or in_loop

def _names_a_mode_switch(method: str) -> bool:
    """`val_start`, `set_eval`, `train_mode`, `switch_to_eval`: a method named for switching to a phase."""
    words = set(tokens(method))
    return bool(words & (EVAL_WORDS | TRAIN_WORDS)) and bool(words & _SWITCH_WORDS) and not wraps_forward(method)


def _passes_evaluation_data(call: cst.Call) -> bool:
    """A positional argument naming held-out data (`val_loader`, `self.dev_set`, `loaders["test"]`)."""
    return any(arg.keyword is None and not arg.star
               and type(arg.value) in (cst.Name, cst.Attribute, cst.Subscript)
               and names_evaluation_data(arg.value) for arg in call.args)


def _hand_written_on_plain_tensors(cls, classes) -> bool:
    """A class of this file with no base at all whose code asks autograd for nothing (no `requires_grad`,
    `Parameter`, `backward()` or `autograd.grad`): a model written by hand, its gradients derived by hand, with
    no mode and no graph; its `self.forward(x)` is an ordinary method."""
    if any(dotted(base) != "object" for base in cls.bases):
        return False
    # (the methods of the file's other hand-written layers: `layer.backward(g)` over its list of them)
    by_hand = {name for other in classes if not any(dotted(base) != "object" for base in other.bases)
               for name in other.methods}
    for call in cls.calls:
        if type(call.func) is cst.Attribute and call.func.attr.value in cls.methods and dotted(call.func.value) == "self":
            continue  # (its own `self.backward(x, y, probas)`: the gradients derived by hand)
        if type(call.func) is cst.Attribute and call.func.attr.value in by_hand and call.args:
            continue
        name = call.func.attr.value if type(call.func) is cst.Attribute else dotted(call.func) or ""
        if name == "requires_grad_" and call.args and literal_value(call.args[0].value) is False:
            continue  # (`self._lstm.requires_grad_(False)`: a wrapper freezing the module it holds)
        if name in ("backward", "requires_grad_", "grad", "Parameter") or name.endswith(".Parameter") \
                or any(arg.keyword is not None and arg.keyword.value == "requires_grad" for arg in call.args):
            return False
    return True


def wraps_forward(method: str) -> bool:
    """A method of a module, defined where we cannot see, that runs its forward pass: `forward_features`,
    `predict_step`, `evaluation_step`, `generate` (Hugging Face), CLIP's `encode_image`/`encode_text`. (Not a
    bare `encode`: sentence-transformers' sets eval mode and no_grad itself.) Other methods (`get_metrics`,
    `freeze`, `predict` of a scikit-style wrapper that sets its own mode) are left alone, and so are accessors,
    optimisation hooks and updates that only end like one (`get_step`, `optimizer_step`, `train_step`)."""
    if method.startswith(_NOT_FORWARD_PREFIXES) or set(tokens(method)) & _UPDATE_WORDS:
        return False
    return method.startswith(("forward", "encode_")) or method.endswith(("_forward", "_step")) or method == "generate"


_UPDATE_WORDS = frozenset({"train", "training", "fit", "learn", "sgd", "optim", "optimize", "optimizer", "backward"})
_NOT_FORWARD_PREFIXES = ("get_", "set_", "reset_", "is_", "has_", "num_", "increment_", "update_", "optimizer_",
                         "lr_scheduler_", "scheduler_", "on_", "zero_", "log_")


def is_optimizer_step(receiver: str) -> bool:
    last = receiver.rsplit(".", 1)[-1].lower()
    return "optim" in last or last in ("opt", "scaler") or last.endswith("_opt") or last.startswith("opt_")
