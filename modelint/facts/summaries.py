"""A function's summary, from its flow: what callers need to know about it.

- effects: the mode it leaves on the models it is given (`evaluate(model)` leaves
  `model` in eval mode);
- forwards: the forward passes it runs on those models with the caller's mode, and
  what each is for (evaluation, training, or returned to the caller);
- steps: the training steps it runs on them (MDL003 judges them with the caller's mode);
- returns: the module it returns, and in which mode (a factory);
- trains: whether it runs a training step, itself or through a helper;
- context_mode, context_grad, context_switches: a `@contextmanager` that switches its arguments
  (or its object's models) to eval mode and back, or runs its body under no_grad; the same read at the
  `__init__` of a context manager written as a class (modelint.facts.mode_contexts).

`export` turns a summary into its picklable form for other files: nodes become call
ordinals, positioned only if a finding shows them.
"""

from __future__ import annotations

from dataclasses import replace

import libcst as cst

from modelint.facts.freezing import parameters_frozen_whole
from modelint.facts.gates import runs_only_in_training
from modelint.facts.smoke_tests import tends_norm_statistics
from modelint.facts.lattice import ENTRY_MODE, first_site
from modelint.facts.mode_contexts import class_context_effects, context_effects
from modelint.facts.modules import Dependence
from modelint.facts.names import key_root, same_or_nested, value_key
from modelint.facts.naming import is_evaluation_name
from modelint.facts.optimizers import MADE_TENSORS, stepped_parts_in_training
from modelint.facts.phases import phase_default
from modelint.facts.regions import explicitly_grad_enabled
from modelint.facts.reaching_calls import reach_of
from modelint.facts.records import is_the_loss
from modelint.facts.uses import DETACH, HANDED_BACK, evaluated
from modelint.facts.walk import iter_nodes
from modelint.summary import ForwardUse, FunctionSummary, ReturnFact, StepUse


def qualname(function) -> str:
    """`evaluate`, `Trainer.validate`; `train_batch@1` for a definition a later one of the name replaces."""
    base = f"{function.cls.name}.{function.name}" if function.cls is not None else function.name
    return f"{base}@{function.definition}" if function.definition else base


def summarise(flow, function_flow, globals_: frozenset[str], closures=()) -> FunctionSummary:
    """`closures`: flows of functions defined inside it, which run on its models (a callback handed to a
    profiler, a `closure` for `optimizer.step`): their forwards of its parameters are its own."""
    function = function_flow.function
    params = function.params
    heads = set(params) | globals_
    summary = FunctionSummary(qualname(function), flow.path, params, is_method=function.cls is not None,
                              trains=function_flow.trains and not _input_gradients_only(function_flow))
    summary.globals = sorted(globals_)

    def caller_owned(key: str) -> bool:
        # A parameter, an attribute or element of one (`self.model`, `args.net`, `args["net"]`) or a global model;
        # not a parameter bound to another value on some path (`model = copy.deepcopy(model)`).
        return key_root(key) in heads and key != "cls" and key_root(key) not in function_flow.rebound_params

    summary.effects, summary.effect_sites = _effects(flow, function_flow.exit_state, caller_owned)
    if function_flow.phase_param is not None and function_flow.phase_param not in globals_:
        summary.phase_param = function_flow.phase_param
        summary.phase_default = phase_default(function, function_flow.phase_param)
        summary.phase_effects = {value: _effects(flow, state, caller_owned)
                                 for value, state in function_flow.phase_exits.items()}
    # (not a callable handed in that is only ever fed another forward's output: `self.loss_fn(pred, y)`, a loss)
    def handed_loss(forward, trained: bool = False) -> bool:
        """`self.loss_fn(pred, y)`: a callable handed in, called on a forward's output and something else (the
        targets), not a method of a model (`model.module.mask_net(features)`, a head run on its features). With
        `trained` (among the forwards a backward reaches), also one annotated `crit: nn.Module` that scores an
        output against data and whose output is the loss itself: a decoder fed its encoder's output beside the
        target tokens feeds the loss, and is a model."""
        return forward.fed and forward.mode == ENTRY_MODE and forward.via is None and len(forward.call.args) >= 2 \
            and value_key(forward.call.func) == forward.key and (
                not flow.modules.is_module_name(forward.key, function)
                or (trained and is_the_loss(function_flow, forward.token)))  # (its output is the loss itself)

    # (`Adam([image])` alone stepped here: the backward optimises an input, a deep-inversion image; no model trains)
    training = [forward for forward in function_flow.training_forwards() if not handed_loss(forward, trained=True)] \
        if flow.stepped_owners(function) != {MADE_TENSORS} else []
    trained = {forward.key for forward in training}

    def trained_in_pass(forward) -> set[str]:  # (a phase's pass trains only what that pass trains)
        return {f.key for f in training if not forward.phase or not f.phase or f.phase == forward.phase}

    trains_keys: set[str] = set()  # models the caller passes, trained here in whatever mode the caller left
    closure_forwards = [f for closure in closures for f in closure.all_forwards()
                        if key_root(f.key) in function.param_set]

    def from_caller(mode) -> bool:  # the mode the caller passes (or only our "trained here" guess of it)
        return mode == ENTRY_MODE or (bool(mode.train_sites) and mode.train_sites <= flow.assumed_sites
                                      and not mode.eval_sites and not mode.havoc)

    def weights_rank(forward) -> int:
        """0: a model with weights (put in a mode, here or by a method of the object, or its output detached:
        it recorded a graph); 2: surely none (a transform pipeline); 1: unknown. (What the file's text shows:
        the other methods' summaries may not be finished yet.)"""
        mode = forward.mode
        if mode.parameterless or mode.dependence is Dependence.INDEPENDENT:
            return 2
        if (mode.certain and not mode.entry) or "detach" in forward.uses:
            return 0
        return 0 if function.cls is not None and flow.objects.ever_switched_to_eval(function.cls, forward.key) else 1

    # (models first: a call's value is the first output the function returns, `self.model(images)` rather than
    # the `self.transform(data)` that prepared its input)
    forwards = sorted((*function_flow.all_forwards(), *closure_forwards), key=weights_rank)
    for forward in forwards:
        if not caller_owned(forward.key) or handed_loss(forward):
            continue  # (a loss: the forward that fed it is the one its callers judge)
        if not from_caller(forward.mode):
            use = _grad_only_use(flow, function, forward)
            if use is not None:
                summary.forwards.append(use)
            continue
        if forward.key in trained:
            trains_keys.add(forward.key)
        intent = forward.intent
        if forward.function is not None and forward.function.takes_input_gradients:
            intent = "training"  # its outputs' gradients are the point (a Jacobian, saliency): never an evaluation
        use = _forward_use(flow, function, forward, intent, _trained_with(forward.key, trained_in_pass(forward)))
        if use is not None:
            summary.forwards.append(use)
    steps = [s for s in function_flow.steps.values() if s.kind == "backward"] or list(function_flow.steps.values())
    for key in sorted(trains_keys):
        # (a step under `if model.training:` never trains the caller's model in eval mode)
        # (and one whose loss reaches it, where that is known: `loss.backward()` on `model(x)`'s loss is no step of
        # `helper.model`, which `helper.step(x, y)` trains on its own)
        step = next((s for s in steps if not _only_in_training(flow, s.call, key)
                     and (not s.reached or any(same_or_nested(key, r) for r in s.reached))
                     and not stepped_parts_in_training(key, flow.stepped_owners(function), s)), None)
        if step is not None:
            # (one use per phase it runs in, when not in all: `mode` "train" or "train+log", not "eval")
            every = function_flow.phase_param is None or len(step.phases) in (0, len(function_flow.phase_exits))
            for phase_value in [None] if every else sorted(step.phases, key=repr):
                summary.steps.append(StepUse(key, flow.path, node=step.call, phase_value=phase_value))
    for step in function_flow.helper_steps.values():
        key = step.trained_key
        if key and caller_owned(key) and step.models.get(key, ENTRY_MODE) == ENTRY_MODE:
            # (a helper's step in one value of the phase parameter this function hands it: in that value here)
            handed = function_flow.phase_param is not None and not function_flow.phase_exits
            for phase_value in sorted(step.phases, key=repr) if handed and step.phases else [None]:
                summary.steps.append(StepUse(key, step.via.path, step.via.call, node=step.via.node,
                                             phase_value=phase_value))
    returned = function_flow.returned
    if function_flow.returned_param:
        summary.returns = ReturnFact(None, 1, False, param=function_flow.returned_param)
    elif returned is not None:
        summary.returns = _return_fact(returned)
    items = function_flow.returned_items
    if items and any(item is not None for item in items):
        summary.returns_items = tuple(ReturnFact(None, 1, False, param=item) if isinstance(item, str)
                                      else _return_fact(item) if item is not None else None for item in items)
    entries = function_flow.returned_entries
    if entries:
        summary.returns_entries = {key: found for key, held in entries.items()
                                   if held is not None and (found := _return_fact(held)) is not None}
    summary.context_mode, summary.context_grad, summary.context_switches = context_effects(flow, function)
    if function.name == "__init__":
        summary.context_mode, summary.context_grad, summary.context_flag_default = \
            class_context_effects(flow, function)
    summary.backprops = [p for p in params if "train" in function_flow.uses.get(("param", p), ())]
    summary.backprops_cut = [p for p in summary.backprops if "graph" not in function_flow.uses.get(("param", p), ())]
    summary.evaluates = [p for p in params if _only_evaluated(function_flow.uses.get(("param", p), ()))]
    if function_flow.follows_parameters and not _yields(function):
        # (cut on purpose somewhere, `.detach()`: a value seen only through a name that aliases it, `feats =
        # vout.features`, is not followed to the return, so a parameter merely not seen handed back is no cut)
        summary.cuts = [p for p in params if p not in function.receivers
                        and _cut(function_flow.uses.get(("param", p), ()))]
    summary.hands_on = sorted(flow.handed_on(function))
    summary.transforms = sorted(flow.handed_to_functions(function))
    if summary.phase_param is not None and not function_flow.phase_exits:
        # A phase parameter only handed on to a helper: the values its forwards and steps run in, with the
        # function's effects whatever the value (what the helper does for each is its callers' to read).
        values = {use.phase_value for use in (*summary.forwards, *summary.steps)} - {None}
        summary.phase_effects = {value: (summary.effects, summary.effect_sites) for value in values}
    return summary


def _return_fact(returned) -> ReturnFact | None:
    """What a factory hands back, for its callers: the mode it surely left the module in, and its kind."""
    if not (returned.certain or returned.origin is None):
        return None
    mode = "train" if returned.definitely_train else "eval" if returned.definitely_eval else None
    site = first_site(returned.eval_sites if mode == "eval" else returned.train_sites)
    return ReturnFact(mode, int(returned.dependence), returned.certain, site, parameterless=returned.parameterless)


def _input_gradients_only(function_flow) -> bool:
    """A backward run for the gradients of the inputs (an attack's sign step, a saliency map), or for
    gradients it reads (`self.acts.grad` of a Grad-CAM extractor's hooked layer), with no optimizer stepping
    there: the function trains nothing, and neither does its caller by calling it."""
    function = function_flow.function
    return (function.takes_input_gradients or function.reads_grads) and not function_flow.backward_in_helpers \
        and not any(step.kind == "step" for step in (*function_flow.steps.values(),
                                                     *function_flow.helper_steps.values()))


def _effects(flow, exit_state, caller_owned) -> tuple[dict, dict]:
    """The mode a function leaves on each model its caller owns, and where it set it."""
    effects: dict[str, str] = {}
    sites: dict[str, object] = {}
    if exit_state is None:
        return effects, sites
    for key, fact in exit_state.models.items():
        if not caller_owned(key):
            continue  # the function's own locals
        if fact.train_sites and fact.train_sites <= flow.assumed_sites and not fact.eval_sites:
            continue  # "trained here, so in training mode" is our assumption, not something the code set
        effect = fact.exit_effect
        if effect is None:
            continue
        effects[key] = effect
        site = first_site(fact.eval_sites if "eval" in effect else fact.train_sites)
        if site is not None:
            sites[key] = site
    return effects, sites


def _yields(function) -> bool:
    """A generator hands back what it yields, which the returns do not show."""
    return any(type(node) in (cst.Yield, cst.Await) for node in iter_nodes(function.node.body))


def _cut(uses) -> bool:
    return DETACH in uses and HANDED_BACK not in uses


def _only_evaluated(uses) -> bool:
    """Turned into predictions, metrics, files or prints, and nothing that may keep its graph."""
    return evaluated(uses) and not uses & {"train", "graph", "return", "store", "escape", "handed"}


def _grad_only_use(flow, function, forward) -> ForwardUse | None:
    """A forward of the caller's model that the function puts in eval mode first, with autograd left as
    the caller has it: only the caller's grad mode decides (an `extract_features(model, loader)` that
    calls `model.eval()` itself, called under no_grad in one script and without it in another)."""
    mode = forward.mode
    if not mode.definitely_eval or mode.havoc or forward.intent in ("training", "unknown", "shape", "built"):
        return None
    if forward.function is not None and forward.function.takes_input_gradients:
        return None
    if flow.called_between_training_steps(function):
        return None  # (`fit()` calls it with autograd on: the forward is reported where it runs, not at callers)
    use = _forward_use(flow, function, forward, forward.intent)
    if use is None or use.grad != "entry":
        return None
    return replace(use, eval_site=first_site(mode.eval_sites))


def _evidence(context: str | None) -> bool:
    return context is not None and context.startswith(("for predictions", "under no_grad", "over "))


def _trained_with(key: str, trained) -> bool:
    """Is the model, or a model it is part of or holds, trained in the function?"""
    return any(same_or_nested(key, t) for t in trained)


def _forward_use(flow, function, forward, intent: str, trained_here: bool = False) -> ForwardUse | None:
    via = forward.via
    grad = forward.grad
    if via is not None and via.grad == "free":
        grad_word = "free"
    elif grad.definitely_free or (via is None and forward.key in parameters_frozen_whole(flow.collector, function)):
        # (`for p in model.parameters(): p.requires_grad = False`, then `model(x)`: no graph of its own)
        grad_word = "free"
    elif grad.unknown and not grad.may_enabled and not grad.free_sites:
        grad_word = "entry" if via is None or via.grad != "enabled" else "enabled"
    elif (grad.free_sites and not grad.unknown) or (via is not None and via.grad == "some") or (
            via is None and (site := flow.site_of_call.get(forward.call)) is not None
            and explicitly_grad_enabled(flow.imports, site.site)):
        # off on some paths only (`set_grad_enabled(self.model.training)`), or turned on where it runs (`with
        # torch.enable_grad():` inside a validation's no_grad): the author's choice
        grad_word = "some"
    else:
        grad_word = "enabled"
    # What a helper returns after turning the output into predictions, computing it under no_grad or over
    # held-out data stays an evaluation's product up the chain; a name-based reason does not travel.
    context = via.context if via is not None and (via.intent != "returned" or _evidence(via.context)) else None
    if grad_word == "free" and context is not None and not context.startswith(("under", "over")):
        context = "under no_grad"  # (the predictions a helper returns, made here under no_grad: the stronger word)
    if intent == "unknown" and forward.kept_on_an_object:
        return None  # kept on an object: for whoever reads it (see evaluation._evaluation_context)
    if via is None and _only_in_training(flow, forward.call, forward.key):
        return None  # `if model.training: logits = model(x)`: never runs for a caller that evaluates
    if via is None and forward.uses <= {"discard"} and tends_norm_statistics(function):
        return None  # precise BN: run in training mode on purpose, for the running statistics it resets
    if context is None:
        if grad_word == "free":
            context = "under no_grad"
        elif forward.in_evaluation_loop:
            context = "over validation/test data"
        elif trained_here and intent == "evaluation":
            # What a function makes of a model it trains itself, on no held-out data and with autograd on, is
            # part of the fitting (the codes a layer-wise `fit()` hands the next layer): its callers' to use.
            intent = "unknown"
        elif intent == "evaluation" or (intent == "returned" and "eval" in forward.uses and not trained_here):
            context = "for predictions/metrics"
        elif not flow.function_trains(function) and is_evaluation_name(function.name, flow.path) \
                and intent not in ("training", "unknown", "escaped", "shape", "built"):
            context = f"in {function.name}()"
    node = via.node if via is not None else forward.call
    ordinal = via.call if via is not None else -1
    chain = (forward.call, *via.chain) if via is not None and via.path == flow.path else ()
    path = via.path if via is not None else flow.path
    if via is not None and forward.callee is not None and forward.callee.is_method \
            and not forward.callee.qualname.rpartition(".")[2].startswith("_") \
            and (via.path != flow.path or (via.intent == "returned" and key_root(forward.key) != "self"
                                           and _module_method(flow, forward.callee))):
        # `model.predict(x)`, a public method of the model's class in another file (or one of this file handing
        # back what its parts compute, `model.encode(src)` outside the class): the forward is shown here, at the
        # call (where its users put a no_grad), not inside the class (a private `_predict_batch` is the class's
        # own business: shown where it runs)
        path, node, ordinal, chain = flow.path, forward.call, -1, ()
    phase_value = forward.phase[0][1] if forward.phase and forward.phase[0][0] in function.param_set else None
    if via is None:
        given_back = "given-back" in forward.uses
    else:  # (a helper's result this function hands on in turn)
        given_back = via.given_back and bool(forward.caller_uses & {"return", "given-back"})
    site = flow.site_of_call.get(forward.call) if via is None else None
    return ForwardUse(forward.key, path, intent, grad_word, context,
                      ordinal, node=node, method=forward.method is not None or (via is not None and via.method),
                      chain=chain, phase_value=phase_value, given_back=given_back,
                      reached_when=reach_of(function, site.site) if site is not None else None)


def _module_method(flow, callee) -> bool:
    """Is the summarised method one of a module class of this file?"""
    function = flow.local_functions.get(callee.qualname) if callee.path == flow.path else None
    return function is not None and function.cls is not None and flow.is_module_class(function.cls)


def _only_in_training(flow, call, key: str) -> bool:
    site = flow.site_of_call.get(call)
    return site is not None and runs_only_in_training(site.site, key, call)
