"""Is a forward an evaluation? The judgement MDL001 and MDL002 share.

A forward is for evaluation when its output is not used for training (it reaches no
backward) and one of these holds, strongest first:
- autograd is off for it on every path (here, in the helper that runs it, or in every
  caller this file shows): "under no_grad";
- it loops over validation/test data;
- its output only feeds predictions and metrics (`.item()`, `argmax`, numpy...);
- it is dropped, logged or returned by a function named for evaluation (`predict`,
  `validate`) that trains nothing: the names break the tie data flow left.
"""

from __future__ import annotations


import libcst as cst

from modelint.facts.forward_modes import effective_mode
from modelint.facts.lattice import GradFact
from modelint.facts import torch_api as api
from modelint.facts.modules import RETURNS_SELF, Dependence, unwrap_chain
from modelint.facts.names import dotted, literal_value, value_key
from modelint.facts.naming import is_evaluation_name
from modelint.facts.phases import describe_value
from modelint.facts.reaching_calls import forward_site
from modelint.facts.regions import switches_itself
from modelint.facts.walk import iter_nodes


def named_model(facts, forward) -> str:
    """The model as a reader names it: `model` for its part `model.blocks[]` that `model.embed(x)`, a method of
    the model's own class in this file, runs; `self.model` for `self._model` read through a property; else the
    forward's key."""
    func = forward.call.func
    owner = forward.function.owner_class if forward.function is not None else None
    if owner is not None:
        aliases = facts.flow.objects.aliases_seen_by(owner)
        for written in (value_key(func), value_key(func.value) if type(func) is cst.Attribute else None):
            if written is not None and aliases.get(written) == forward.key:
                return written  # (`self.model(x)`, `self.model.inference(x)`)
    if forward.via is None or forward.callee is None or type(func) is not cst.Attribute \
            or forward.callee.path != facts.flow.path:
        return forward.key
    method = facts.flow.local_functions.get(forward.callee.qualname)
    receiver = value_key(func.value)
    # (the method called by name on the model: not a part's forward, `model.decoder(x)`; nor a method the
    # model's class calls on itself, `self.decode(x)`, where the part says more than `self`)
    if method is None or method.cls is None or method.name != func.attr.value or receiver in (None, "self") \
            or not facts.is_module_class(method.cls) or not forward.key.startswith((receiver + ".", receiver + "[")):
        return forward.key
    return receiver


def shown_attribute(facts, function, key: str) -> str:
    """`self.model` for `self._model` (or its part `self._model.encoder`) in a method of a class that reads it
    through a property (modelint.facts.accessors): the name its code writes."""
    owner = function.owner_class if function is not None else None
    if owner is None or not key.startswith("self."):
        return key
    for name in facts.flow.class_and_bases(owner.name):
        info = facts.flow.modules.classes.get(name)
        for alias, target in facts.flow.property_aliases.get(info, {}).items():
            if key == target or key.startswith(target + "."):
                return alias + key[len(target):]
    return key


def evaluation_context(facts, forward, grad: GradFact) -> str | None:
    """Why this forward is an evaluation, in a few words; None when it is not one (or we cannot tell)."""
    if facts.flow.phase_never_picked(forward.function, forward.phase, forward_site(facts, forward)):
        return None  # a pass of the function that no call here asks for
    why = _evaluation_context(facts, forward, grad)
    if why is not None and forward.phase:
        name, value = forward.phase[-1]
        why += f" (when `{name}` is {describe_value(value)})"
    return why


def _evaluation_context(facts, forward, grad: GradFact) -> str | None:
    intent = forward.intent
    if intent in ("training", "shape", "built") or forward_trains_itself(facts, forward):
        return None
    via = forward.via
    if via is not None and via.intent != "returned":
        if via.grad == "free":
            return via.context or "under no_grad"
        if via.context is not None:
            if forward.in_evaluation_loop and not via.context.startswith(("under", "over")):
                return "over validation/test data"  # (the caller's loop, or the data it hands the helper)
            return via.context
        if grad.definitely_free and via.grad == "entry":
            return "under the caller's no_grad"
        return None
    if via is not None and (via.context or "").startswith(("for predictions", "over ")):
        # The helper made predictions or metrics of it (over held-out data) and returns them.
        return "over validation/test data" if forward.in_evaluation_loop else via.context
    if forward.method is not None and intent in ("unknown", "escaped", "returned"):
        return None  # a method named like a forward (`forward_parameters`) whose output we lose: no evidence
    if forward.kept_on_an_object:
        # Its output kept on an object under no_grad (a rollout's values, a replay target): what it is for is
        # up to the code that reads it. (A helper's metrics kept as the best score so far say evaluation.)
        return None
    if grad.definitely_free or (via is not None and via.grad == "free"):
        return "under no_grad"  # (a helper returning it under no_grad: for training, the caller would say so)
    if intent in ("unknown", "escaped"):
        return None
    if forward.in_evaluation_loop:
        return "over validation/test data"
    if intent == "evaluation":
        return "for predictions and metrics"
    if intent == "returned" and loaded_to_predict(facts, forward):
        return "on the weights it loads"  # `model = Net(); model.load_state_dict(w); return model(x)`
    if intent == "returned" and "eval" not in forward.uses:
        return None  # handed to the caller as it is: a name alone does not make it an evaluation
    if intent == "inference" and "weak" in forward.uses and _runs_loaded_weights(facts, forward):
        return "on the weights it loads"  # an inference script printing what a checkpoint predicts
    function = forward.function
    if function is not None and is_evaluation_name(function.name, facts.path) \
            and not facts.flow.function_trains(function):
        return f"in {function.name}()"
    return None


def class_called(facts, forward) -> str | None:
    """The class whose `forward` a call of the model runs: its origin, or the one class of this file a plain
    name or `self.<attr>` is built from; None for a method's call or when unknown."""
    key, function = forward.key, forward.function
    if forward.method not in (None, "forward"):
        return None
    return forward.mode.origin or (facts.flow.class_of_name(key, function) if "." not in key else None) or (
        facts.flow.held_class(function.cls.name, key[5:]) if function is not None and function.cls is not None
        and key.startswith("self.") and key.count(".") == 1 else None) or (
        # (a parameter every call here hands an object of one class: `train(loader, model, ...)`)
        facts.flow._handed_class(function, key) if function is not None and key in function.param_set else None)


def forward_trains_itself(facts, forward) -> bool:
    """A module whose own `forward` runs a training step (test-time adaptation: Tent back-propagates the
    entropy of its predictions and steps its optimizer on every batch): calling it adapts the model, which
    needs autograd and, for its BatchNorm statistics, training mode."""
    origin = class_called(facts, forward)
    if not origin:
        return False
    summary = facts.flow.summaries.get(f"{origin}.forward") if "." not in origin \
        else facts.flow.resolve_method_of(origin, "forward")
    return summary is not None and summary.trains


def forward_switches_to_eval(facts, forward) -> bool:
    """A module of this file whose own `forward` starts with `self.eval()` (an inference-only wrapper): calling
    it runs in eval mode, whatever mode it was in."""
    origin = class_called(facts, forward)
    info = facts.modules.classes.get(origin) if origin and "." not in origin else None
    method = info.methods.get("forward") if info is not None else None
    body = method.body.body if method is not None and type(method.body) is cst.IndentedBlock else ()
    return any(switches_itself(statement) for statement in body[:3])


def loaded_to_predict(facts, forward) -> bool:
    """A model the function makes itself, with weights (unpickled whole by `torch.jit.load`, built and given
    `load_state_dict()` before the forward, or a library model built with its pretrained weights), trains
    nowhere and keeps to itself, returning only what it outputs: loaded to predict, so what it hands back is a
    prediction. (Its callers cannot train it.)"""
    function, key = forward.function, forward.key
    if function is None or forward.via is not None or "." in key or "[" in key or key in function.param_set \
            or key in facts.flow.free.globals_of(function) or facts.flow.function_trains(function):
        return False
    if any(type(node) is cst.Return and node.value is not None and _hands_back(node.value, key)
           for node in iter_nodes(function.node.body)):
        return False  # (`return model, model(x)`: the caller may go on to train it)
    return (function, key) in facts.flow.free.loaded_modules or _runs_loaded_weights(facts, forward) \
        or _built_pretrained(facts, function, key)


def _hands_back(value: cst.BaseExpression, key: str) -> bool:
    """Does a returned value hold the model `key` itself (`model`, `(model, model(x))`, `model.to(device)`,
    `Predictor(model)`), not only what it outputs (`model(x)`, `model.predict(x)`)?"""
    outputs: set = set()
    for node in iter_nodes(value):
        if type(node) is cst.Call:
            func = node.func
            if type(func) is cst.Name and func.value == key:
                outputs.add(func)
            elif type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == key \
                    and func.attr.value not in RETURNS_SELF:
                outputs.add(func.value)
    return any(type(node) is cst.Name and node.value == key and node not in outputs for node in iter_nodes(value))


def _built_pretrained(facts, function, key: str) -> bool:
    """Every binding of `key` in the function builds a library model with its trained weights
    (`torchvision.models.resnet50(pretrained=True)`, `weights="IMAGENET1K_V2"`, timm's `pretrained=True`)."""
    built = [unwrap_chain(value)[0] for name, value, site in facts.collector.call_assigns
             if name == key and site.function is function]
    return bool(built) and all(
        type(call) is cst.Call and api.builds_library_model(facts.imports.qualify(call.func) or "")
        and any(arg.keyword is not None and arg.keyword.value in ("pretrained", "weights")
                and literal_value(arg.value) not in (False, None) for arg in call.args) for call in built)


def _runs_loaded_weights(facts, forward) -> bool:
    """The function loads the model's weights (`model.load_state_dict(...)`) before the forward, and trains
    nothing. (A load further down, a notebook's checkpoint section, says nothing of a smoke test above it.)"""
    function = forward.function
    if forward.via is not None or facts.flow.function_trains(function) \
            or facts.flow.is_trained_model(function, forward.key):
        return False
    here = facts.locate(forward.call)
    return here is not None and any(
        site.site.function is function and type(site.node.func) is cst.Attribute
        and site.node.func.attr.value == "load_state_dict" and dotted(site.node.func.value) == forward.key
        and (loaded := facts.locate(site.node)) is not None and loaded[:2] < here[:2]
        for site in facts.collector.calls)


def fed_by_a_model_in_eval_mode(facts, forward) -> bool:
    """`loss_fn(model(X), y)` after `model.eval()`: a forward of unknown kind whose input is the output of
    a model the function put in eval mode. A loss or a metric taking the outputs: the author evaluates that
    model, and has no mode to set on this one (a loss annotated `nn.Module` is still a loss)."""
    if forward.mode.dependence is not Dependence.UNKNOWN:
        return False
    node = forward.via.node if forward.via is not None else forward.call  # (a helper's: judged where it runs)
    for flow in facts.flow.flows:
        record = flow.forwards.get(node)
        if record is None or record.via is not None or not record.fed:
            continue
        for token, fed in flow.feeds_into.items():
            feeding = flow.forwards.get(token)
            if record.token in fed and feeding is not None and effective_mode(facts, feeding).definitely_eval:
                return True
    return False


def left_to_subclasses(facts, forward) -> bool:
    """The forward is a call of a method this file leaves abstract (`raise NotImplementedError`): which
    layers run, and under which grad mode, is the subclasses' business."""
    node = forward.via.node if forward.via is not None and forward.via.node is not None else forward.call
    function = facts.flow.callee_of(node)
    return function is not None and function.is_abstract


def returned_to_callers(facts, forward) -> bool:
    """A forward whose output its function returns, and whose callers in this file are judged instead; or
    whose result, cut from the graph, a caller up the chain feeds to its loss (a target network's values
    made into a TD target by helpers: part of training, not an evaluation)."""
    if forward.via is None and "given-back" in forward.uses and forward.call in facts.flow.given_back_for_training:
        return True
    if forward.intent != "returned" or forward.function is None or not forward.mode.entry:
        return False
    # (a model of the caller's: its summary hands them the forward; not one unpickled here, `torch.jit.load`)
    root = forward.key.split(".")[0].split("[")[0]
    if root not in forward.function.param_set and root not in facts.flow.free.globals_of(forward.function):
        return False
    return facts.flow.has_callers(forward.function)


def result_back_propagated(facts, function) -> bool:
    """Does every call of the function in this file bind its result and back-propagate it (`loss =
    agent.compute_loss(batch)`, then `loss.backward()`; `reward, log_prob = play(env)`, then `loss = -log_prob *
    reward` and `loss.backward()`)? What it returns is a loss: its forwards, a target network's among them,
    are part of training."""
    from modelint.facts.summaries import qualname
    from modelint.facts.value_calls import BACKWARD_METHODS

    if function is None:
        return False
    name = qualname(function)
    calls = {call: caller for call, (caller, _grad, _models) in facts.flow.call_sites.get(name, {}).items()}
    if function.cls is not None:
        # (and `agent.compute_loss(...)` on an object this file cannot place: a method of that name)
        calls.update((site.node, site.site.function) for site in facts.collector.calls
                     if type(site.node.func) is cst.Attribute and site.node.func.attr.value == function.name
                     and facts.flow.local_callee(site.node, site.site.function) in (None, name))
    if not calls:
        return False
    for call, caller in calls.items():
        site = facts.call_sites.get(call)
        stmt = site.site.stmt if site is not None else None
        small = stmt.body[0] if type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 else None
        if not (type(small) is cst.Assign and small.value is call and len(small.targets) == 1):
            return False
        names = _derived(caller.node if caller is not None else facts.collector.module_node,
                         {n.value for n in iter_nodes(small.targets[0].target) if type(n) is cst.Name})
        if not any(other.site.function is caller and (
                (type(other.node.func) is cst.Attribute and other.node.func.attr.value in BACKWARD_METHODS
                 and (dotted(other.node.func.value) in names
                      or any(type(arg.value) is cst.Name and arg.value.value in names for arg in other.node.args)))
                or _handed_to_a_backward(facts, other.node, caller, names))
                   for other in facts.collector.calls):
            return False
    return True


def _handed_to_a_backward(facts, call: cst.Call, caller, names: set[str]) -> bool:
    """`agent.update_parameters(reward, log_prob)`, a function whose summary back-propagates what it is handed
    there (`loss = -log_prob * R; loss.backward()`), handed one of `names`."""
    from modelint.facts.summary_effects import bind_arguments

    if not any(type(arg.value) is cst.Name and arg.value.value in names for arg in call.args):
        return False
    summary, _receiver = facts.flow.resolve(call, caller)
    if summary is None or not summary.backprops:
        return False
    bound = bind_arguments(summary.params, summary.is_method, call)
    return any(type(value := bound.get(param)) is cst.Name and value.value in names for param in summary.backprops)


def _derived(scope: cst.CSTNode, names: set[str]) -> set[str]:
    """`names` and the names the scope binds to expressions of them (`loss = -log_prob * reward`), at any remove."""
    assigns = [(target.target.value, node.value) for node in iter_nodes(scope) if type(node) is cst.Assign
               for target in node.targets if type(target.target) is cst.Name]
    found = set(names)
    for _ in range(len(assigns)):
        more = {name for name, value in assigns if name not in found
                and any(type(n) is cst.Name and n.value in found for n in iter_nodes(value))}
        if not more:
            break
        found |= more
    return found
