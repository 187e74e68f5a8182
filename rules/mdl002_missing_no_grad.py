from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import libcst as cst


from modelint.facts import FileFacts
from modelint.facts import torch_api as api
from modelint.facts.forward_modes import effective_grad, effective_mode
from modelint.facts.evaluation import (forward_trains_itself, left_to_subclasses,
                                       loaded_to_predict, named_model, result_back_propagated, returned_to_callers)
from modelint.facts.reaching_calls import forward_site
from modelint.facts.hidden_backward import trained_through_a_kept_loss
from modelint.facts.modules_run import bound_to_plain_object, handed_plain_objects, is_module
from modelint.facts.smoke_tests import dummy_input, initialises_lazy_modules, smoke_test
from modelint.facts.freezing import frozen_attributes, frozen_by_every_caller, frozen_where_bound, frozen_whole
from modelint.facts.uses import DETACH, ESCAPE, GIVEN_BACK, HANDED, RETURN, STORE, TRAIN
from modelint.facts.base_shapes import called_by_a_base_forward
from modelint.facts.batches import destructured_batch, over_batches
from modelint.facts.branches import tested_for_none
from modelint.facts.lattice import is_train_site
from modelint.facts.mode_handling import optional_or_callable
from modelint.facts.names import dotted, key_root, literal_value
from modelint.facts.walk import iter_nodes
from modelint.facts.input_gradients import imported_builders, model_class_unseen, needs_input_gradients
from modelint.facts.grad_free_models import built_with_grad_free_forward
from modelint.facts.regions import explicitly_grad_enabled, grad_effect
from modelint.facts.returned_closures import own_returns
from modelint.facts.scopes import loops_around
from modelint.facts.unseen_callers import callers_decide, function_callers_unseen, method_callers_unseen
from modelint.textutil import code_of
from modelint.rule import NodeEdit, NodeFix, Report, Rule, evidence, helper_report, wrapped_forward_notes


class MissingNoGrad(Rule):
    """
    ## What it does
    Finds a forward pass for evaluation that runs with autograd on. A forward is an
    evaluation when its output only feeds predictions and metrics (`.item()`,
    `argmax`, `softmax`, numpy, comparisons) and never a backward pass, or when the
    model was put in eval mode and the output is dropped, logged or returned. Autograd
    is on unless a `torch.no_grad()` / `torch.inference_mode()` region or decorator
    covers the forward, here or in every caller this project shows; a helper's forward
    is judged with its caller's mode and grad mode. Reported once per model and block.
    Saliency maps and adversarial examples (`requires_grad_()`, `torch.autograd.grad`)
    are left alone, and so are Lightning's `validation_step`-style hooks.

    ## Why is this bad?
    `model.eval()` does not disable autograd. Every forward pass still records the
    graph and keeps every intermediate activation alive until the output is freed:
    evaluation uses several times the memory and runs slower, and large batches run
    out of memory for no reason.

    ## Example
    ```python
    model.eval()
    for x, y in test_loader:
        correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Use instead
    ```python
    model.eval()
    with torch.no_grad():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Fix safety
    Unsafe: code that needs gradients of the outputs (saliency maps, adversarial
    examples) must keep autograd on.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.no_grad.html
    - https://pytorch.org/docs/stable/generated/torch.autograd.grad_mode.inference_mode.html
    """

    code = "MDL002"
    name = "missing-no-grad"
    severity = "warning"
    summary = "Evaluation forward in eval mode builds an autograd graph nobody uses."
    fix_safety = "unsafe"
    fixtures = "MDL002_missing_no_grad"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        found = list(self._reports(facts))
        anchors = {report.node for _path, report in found}
        for path, report in found:
            # A helper's forward reported for a caller whose call of it (or a call on the way) is itself
            # reported: the same missing no_grad, already shown at that call.
            if not any(node in anchors and node is not report.node for node in path):
                yield report

    def _reports(self, facts: FileFacts) -> Iterator[Report]:
        for flow in facts.flow.flows:
            function = flow.function
            if facts.is_test_function(function) or facts.flow.is_framework_hook(function):
                continue
            attacks = function is not None and facts.uses_input_gradients(function)
            reported: list = []  # (the call shown, its report, the calls it goes through), in order
            for forward in flow.all_forwards():
                if function is None and facts.uses_input_gradients(None, forward.call):
                    continue
                if attacks and not _prediction_beside_gradients(function, forward):
                    continue  # saliency, adversarial examples: the outputs' gradients are the point
                report = self._judge(facts, forward)
                if report is None:
                    continue
                if model_class_unseen(facts, forward):
                    report = replace(report, model_class_unseen=True)
                report = replace(report, built_by=imported_builders(facts, forward))
                follows = _follows_a_reported_forward(facts, forward, [node for node, _, _ in reported])
                if follows is None:
                    path = (forward.call, *forward.via.chain) if forward.via is not None else ()
                    reported.append((_reported_node(facts, forward), report, path))
                    continue
                # The same fix covers it: one finding, which shows it too (so does a label there).
                i, how = follows
                earlier, first, path = reported[i]
                again = (_reported_node(facts, forward), f"`{forward.key}` runs {how}, in the same block")
                reported[i] = (earlier, replace(first, notes=(*first.notes, again)), path)
            for _node, report, path in reported:
                yield path, report

    def _judge(self, facts: FileFacts, forward) -> Report | None:
        mode = effective_mode(facts, forward)
        if mode.parameterless or not (is_module(facts, forward, mode) or _fed_batches(facts, forward)) \
                or (handed_plain_objects(facts, forward.function, forward.key) if forward.via is None
                    else bound_to_plain_object(facts, forward.function, forward.key)) \
                or (forward.via is None and returned_to_callers(facts, forward)):
            return None  # (a loss, an activation, a padding layer: no weights, no graph worth a finding)
        site = facts.call_sites.get(forward.call) if forward.via is None else None
        if site is not None and explicitly_grad_enabled(facts.imports, site.site):
            return None  # `with torch.enable_grad():` around it, inside a validation's no_grad: on purpose
        if facts.flow.phase_never_picked(forward.function, forward.phase, forward_site(facts, forward)):
            return None  # a pass of the function that no call here asks for (or none of its calls runs this line)
        if left_to_subclasses(facts, forward) or initialises_lazy_modules(facts, forward):
            return None  # `self.predict_proba(X)` left abstract: a subclass may well run it under no_grad
        if built_with_grad_free_forward(facts, forward, in_eval=mode.definitely_eval):
            return None  # its class's own `forward` is decorated `@torch.no_grad()`: no graph is recorded
        if needs_input_gradients(facts, forward):
            return None  # its `forward` differentiates with respect to its inputs (forces): no_grad would break it
        if forward_trains_itself(facts, forward):
            return None  # its `forward` runs a training step (test-time adaptation): no_grad would break it
        if trained_through_a_kept_loss(facts, forward):
            return None  # `net(x, y)`, then `net.loss.backward()`: the loss it kept on the module is trained
        if forward.via is None and _gradients_cleared_first(facts, forward):
            return None  # `model.zero_grad()`, then the forward: its gradients are wanted (Grad-CAM, saliency)
        grad = effective_grad(facts, forward)
        if forward.via is not None and forward.via.grad == "some":
            return None  # the helper runs it under a conditional no_grad (`set_grad_enabled(flag)`)
        if forward.grad_free or grad.free_sites:  # grad-free on every path, or on some (a conditional no_grad)
            if forward.grad_free or forward.grad.free_sites or facts.flow.caller_with_autograd(
                    forward.function, forward.phase, forward_site(facts, forward)) is None:
                return None  # (unless only some callers run it under no_grad, and another surely does not)
        if grad.unknown and not grad.may_enabled:
            return None  # only callers we cannot see run it (a private hook of a base class elsewhere)
        site = facts.call_sites.get(forward.call)
        if site is None or _inside_enable_grad(facts, site):
            return None
        intent = forward.intent
        function = forward.function
        # Put in eval mode on some path here and never in training mode: the author means to evaluate.
        eval_mode = bool(mode.eval_sites) and not mode.train_sites
        if intent in ("training", "unknown", "shape", "built") \
                and not _kept_after_switching_to_eval(facts, forward, mode):
            return None
        if _part_of_a_modules_forward(facts, forward, mode) or _library_generate(facts, forward):
            return None
        if intent == "evaluation" or (forward.via is not None and forward.via.intent == "evaluation"):
            pass
        elif intent == "returned" and result_back_propagated(facts, function):
            return None  # a loss its callers back-propagate (a target network's values in a TD loss): training
        elif intent == "returned":
            # Handed to the caller: evaluation if the model was put in eval mode, or if the function is
            # named for it and turned the output into predictions first (`softmax`, `argmax`).
            if _left_to_whoever_gets_it(facts, function):
                return None  # (`model_fn` of `get_model_fn(model)`: whoever gets it decides, none of them here)
            if not (eval_mode or ("eval" in forward.uses and facts.is_evaluation_function(function))
                    or _wrapper_evaluates_it_elsewhere(facts, forward) or loaded_to_predict(facts, forward)):
                return None
        elif _run_for_side_effects(facts, forward, mode) or _detached_at_once(facts, forward):
            pass
        elif not eval_mode:
            return None  # printed, logged or handed on: an evaluation if the model is in eval mode
        if smoke_test(facts, forward, mode):
            return None  # a network just built, run once on made-up input: a shape check, not an evaluation
        if _part_of(forward.key, frozen_whole(facts, forward.function)) \
                or _part_of(forward.key, frozen_where_bound(facts, function, forward.key)) or (
                function is not None and forward.key in frozen_attributes(facts, function.cls)) \
                or frozen_by_every_caller(facts, function, forward.key) or _frozen_in_the_callee(facts, forward):
            return None  # every parameter frozen here first (or by the object's constructor): no graph of its own
        key = named_model(facts, forward)
        via = forward.via
        if forward.uses == {"discard"} and not eval_mode:
            message = (f"`{key}` runs with autograd on and its output is dropped: the graph and every activation "
                       f"are recorded for nothing; run it under `with torch.no_grad():`")
        else:
            through = f" (through `{forward.callee.shown_name}()`)" if via is not None and forward.callee is not None \
                and via.intent == "returned" else ""
            message = (f"`{key}`{through} runs for evaluation with autograd on: the graph and every activation are "
                       f"kept for a backward pass that never comes; wrap the evaluation in `with torch.no_grad():`")
        if via is None and _volatile_input(facts, forward):
            message += " (`Variable(..., volatile=True)` has been ignored since PyTorch 0.4)"
        proof = evidence(mode.eval_sites, f"`{key}` is put in eval mode here")
        if via is not None and (via.intent != "returned" or (via.context or "").startswith("for predictions")):
            # (a helper that turns the output into metrics itself, whatever it returns: reported there)
            caller = f"{function.name}()" if function is not None else "the module-level script"
            note = f"{caller} calls `{forward.callee.shown_name}()` here with autograd on"
            # (a guess about the grad mode `caller` is called in, which a caller in another file may settle)
            return replace(helper_report(facts, forward, message, note, proof),
                           unless_called=callers_decide(facts, forward),
                           method_callers_unseen=method_callers_unseen(facts, forward))
        fix = None
        torch_name = next((k for k, v in facts.imports.bindings.items() if v == "torch"), None)
        if via is None and function is not None and torch_name and facts.is_evaluation_function(function) \
                and function.outer is None:
            fix = NodeFix(f"Decorate `{function.name}` with `@{torch_name}.no_grad()`",
                          (NodeEdit(function.node, f"@{torch_name}.no_grad()", "line_before"),),
                          applicability="unsafe")
        notes, related = wrapped_forward_notes(facts, forward, proof["notes"], proof["related"])
        if via is None and grad.free_sites:  # some callers run it under no_grad: the one that does not
            caller, call = facts.flow.caller_with_autograd(function, forward.phase, forward_site(facts, forward))
            name = f"{caller.name}()" if caller is not None else "the module-level script"
            notes = ((call, f"{name} calls `{function.name}()` here with autograd on"), *notes)
        return Report(forward.call, message, stmt=site.site.stmt, fix=fix, notes=notes, related=related,
                      unless_called=callers_decide(facts, forward),
                      method_callers_unseen=method_callers_unseen(facts, forward),
                      function_callers_unseen=function_callers_unseen(facts, forward))


def _kept_after_switching_to_eval(facts: FileFacts, forward, mode) -> bool:
    """`self.netG.eval(); self.fake_H = self.netG(self.var_L)`: an output only kept on an object, by a
    function that put the model in eval mode itself for it (a wrapper's `test()`): an evaluation, whose
    graph the attribute keeps alive."""
    if forward.intent != "unknown" or forward.via is not None or "store" not in forward.uses \
            or not forward.uses <= {"store", "eval", "weak", "detach", "given-back"} or mode.train_sites:
        return False
    return any((site := facts.call_sites.get(node)) is not None and site.site.function is forward.function
               for node in mode.eval_sites if type(node) is cst.Call)


def _fed_batches(facts: FileFacts, forward) -> bool:
    """A parameter run on each batch a loop draws from a dataset, its output made into predictions:
    a model, as MDL001 judges it (an optional hook or a `Callable` is not)."""
    function = forward.function
    head = key_root(forward.key)
    return function is not None and forward.via is None and forward.method is None and not forward.after_forward \
        and forward.intent == "evaluation" and head in function.param_set and head not in ("self", "cls") \
        and not optional_or_callable(facts, function, head) and over_batches(facts, forward, batch_only=True)


def _wrapper_evaluates_it_elsewhere(facts: FileFacts, forward) -> bool:
    """An inference wrapper (no module, never trains) holding the model it was handed, whose other method
    evaluates that model in eval mode: what this method hands back is an inference result too."""
    objects = facts.flow.objects
    return forward.via is None and forward.method is None \
        and objects.handed_in(forward.function, forward.key) is not None \
        and objects.evaluated_in_eval_mode(forward.function, forward.key) is not None


def _volatile_input(facts: FileFacts, forward) -> bool:
    """An input made by `Variable(x, volatile=True)`, here or through a name assigned in the same function:
    the pre-0.4 way to switch autograd off, which torch now ignores with a warning."""
    def volatile(node) -> bool:
        return type(node) is cst.Call and facts.imports.qualify(node.func) in api.VARIABLE_CLASSES and any(
            arg.keyword is not None and arg.keyword.value == "volatile" and literal_value(arg.value) is True
            for arg in node.args)

    names = set()
    for arg in forward.call.args:
        for node in iter_nodes(arg.value):
            if volatile(node):
                return True
            if type(node) is cst.Name:
                names.add(node.value)
    if any(key in names and site.function is forward.function and any(map(volatile, iter_nodes(value)))
           for key, value, site in facts.collector.call_assigns):
        return True
    # `data, target = Variable(data, volatile=True), Variable(target)`: an unpacking in the same function
    scope = forward.function.node if forward.function is not None else facts.module
    return any(type(node) is cst.Assign and any(
        type(n) is cst.Name and n.value in names for t in node.targets for n in iter_nodes(t.target))
        and any(map(volatile, iter_nodes(node.value))) for node in iter_nodes(scope))


def _called_by_its_own_class(facts: FileFacts, function) -> bool:
    """Called here by a method of its class (a base or a subclass of it included): a step of the module's
    own computation. Callers elsewhere (`acc = model.predict(x)` in a script) use the module instead."""
    flow = facts.flow
    family = flow.class_family(function.cls.name)
    for caller in flow.syntactic_callers(function):
        while caller is not None and caller.cls is None:
            caller = caller.outer
        if caller is not None and caller is not function and caller.cls.name in family:
            return True
    return False


def _part_of_a_modules_forward(facts: FileFacts, forward, mode) -> bool:
    """A module's own method (or one of a class whose base elsewhere may be a module) computes part of its
    forward (masks, routing, selection), which feeds the caller's graph. Only a method that evaluates
    (named for it, like `predict()`, or calling `self.eval()` itself) and that nothing here calls is an
    evaluation of its own. (Judging the others by what their output feeds found AutoGPTQ-like calibration
    helpers, but also flagged Hugging Face's public `get_codebook_indices()`, which callers in other classes
    run under no_grad: left alone.)"""
    function = forward.function
    if function is not None and function.cls is not None and (
            (function.name == "forward" and facts.may_be_module_class(function.cls))
            or (function.name == "__call__" and facts.is_module_class(function.cls))):
        return True  # a module's own forward (or `__call__` override): its callers decide the grad mode
    if function is not None and function.cls is not None and function.name in ("__call__", "forward") \
            and forward.via is None and forward.intent == "returned" and not _switched_in(facts, function, mode):
        return True  # a callable wrapper's (`normalize_model(net)` handed to an attack): its callers decide too
    if function is not None and function.cls is None and function in facts.maybe_forward_reachable \
            and forward.key.split(".")[0] in function.param_set:
        return True  # a module-level helper of a module's forward, running a submodule that forward hands it
    if function is None or function.cls is None or forward.key.split(".")[0] != "self" \
            or not facts.may_be_module_class(function.cls) or facts.flow.objects.plain_object(function.cls):
        return False  # (a trainer on a base elsewhere, switching the model it holds, has no forward)
    if called_by_a_base_forward(facts.flow, function):
        return True  # `inference_forward()`, which a base of another file's `forward` dispatches to
    if function in facts.maybe_forward_reachable and _only_on_the_inference_branch(facts, function):
        return True  # `if target_ids is None: return self.generate(source_ids)`: the forward's callers decide
    if function in facts.maybe_forward_reachable and GIVEN_BACK in forward.uses:
        return True  # (a metric module's `compute()`, its result handed back to the forward's callers, cut or not)
    if _detached_at_once(facts, forward):
        return False  # cut from its graph before it goes anywhere: no part of a differentiable forward
    if function in facts.maybe_forward_reachable:
        return True
    if _over_batches_it_is_handed(facts, forward):
        return False  # `rank(self, test_loader)`: inference over a dataset handed in, no part of a forward
    switched_here = any(facts.call_sites.get(site) is not None and facts.call_sites[site].site.function is function
                        for site in mode.eval_sites if not mode.train_sites)
    if _called_by_its_own_class(facts, function) and not switched_here:
        return True  # (`predict_proba()` calling `self.eval()` itself is an evaluation, whoever calls it)
    # Turned into predictions or metrics here and nothing of it leaves the method (fitting a calibration,
    # scoring a support set), in a method that trains nothing: no caller's graph can use it. (A method
    # returning its argmax, such as `get_codebook_indices()`, gives a result back: the module's users
    # call it, and they run it under no_grad.)
    consumed_here = forward.via is None and forward.intent == "evaluation" \
        and not forward.uses & {TRAIN, RETURN, STORE, ESCAPE, HANDED, GIVEN_BACK} and not _trains(facts, forward)
    return not (switched_here or facts.is_evaluation_function(function) or consumed_here)


def _only_on_the_inference_branch(facts: FileFacts, function) -> bool:
    """Is every call of the method, in its class, made where a parameter of the caller is None (`if target_ids is
    None: return self.generate(source_ids)`): the branch of the forward that decodes, with no targets to train
    on? (Its outputs may then be cut from their graph: no training path runs it.)"""
    sites = [site for site in facts.collector.calls if facts.flow.callee_of(site.node) is function]
    return bool(sites) and all(
        site.site.function is not None and site.site.function.cls is function.cls and any(
            type(guard) is cst.If and tested_for_none(guard.test) in site.site.function.param_set
            and any(node is site.node for node in iter_nodes(guard.body)) for guard in site.site.guards)
        for site in sites)


def _handed_back_by_its_factory(function) -> bool:
    """Is the function a closure its enclosing function returns (`def get_model_fn(model): def model_fn(x): ...;
    return model_fn`)?"""
    outer = function.outer if function is not None and function.cls is None else None
    return outer is not None and any(type(r.value) is cst.Name and r.value.value == function.name
                                     for r in own_returns(outer.node))


def _left_to_whoever_gets_it(facts: FileFacts, function, depth: int = 0) -> bool:
    """A closure its factory hands back, called here only by closures of the same kind (`score_fn` of
    `get_score_fn(model)` calling `model_fn` of `get_model_fn(model)`), none of which this file calls: whoever
    gets one decides its grad mode (a sampler under no_grad, a likelihood taking input gradients)."""
    if not _handed_back_by_its_factory(function) or depth > 3:
        return False
    callers = facts.flow.syntactic_callers(function)
    return all(caller is not None and _left_to_whoever_gets_it(facts, caller, depth + 1) for caller in callers)


def _switched_in(facts: FileFacts, function, mode) -> bool:
    """Is the model put in eval mode in the function itself (a predictor's `__call__` calling `eval()` first)?"""
    return any((site := facts.call_sites.get(node)) is not None and site.site.function is function
               for node in mode.eval_sites if type(node) is cst.Call)


def _over_batches_it_is_handed(facts: FileFacts, forward) -> bool:
    """Does the forward run in a loop taking apart each batch of a loader the function is handed (`for us,
    cands in test_loader:`)? A module's forward does not draw batches from a dataset."""
    site = facts.call_sites.get(forward.call)
    function = forward.function
    if site is None or function is None:
        return False
    for loop in site.site.guards:
        if type(loop) is not cst.For or destructured_batch(loop) is None:
            continue
        iterable = loop.iter
        if type(iterable) is cst.Call and dotted(iterable.func) == "enumerate" and iterable.args:
            iterable = iterable.args[0].value
        if type(iterable) is cst.Name and iterable.value in function.param_set:
            return True
    return False


def _detached_at_once(facts: FileFacts, forward) -> bool:
    """Its output is cut from the graph (`.detach()`, `.data`) before it goes anywhere that could still use
    the graph: whoever wrote it knew autograd was recording, and did not want what it recorded. Not a
    loss of another forward's output (that one's graph), nor in a function that trains (there a detached
    output is a target or the next stage's input)."""
    return DETACH in forward.uses and not forward.uses & {TRAIN, RETURN, STORE, ESCAPE, HANDED} \
        and forward.via is None and (not forward.fed or forward.fed_by_its_own_object) and not _trains(facts, forward)


def _run_for_side_effects(facts: FileFacts, forward, mode) -> bool:
    """A model called over and over in a loop, its output dropped (calibration through forward hooks,
    warm-up runs), in code that trains nothing and did not put it in train() for this (BatchNorm
    re-estimation is a kind of training): nobody needs the graph autograd records. A single call on a
    tensor made in place is a trace (hooks, shapes, lazy layers), a method call may be no forward at
    all (`set_chunk_feed_forward`), and a class calling itself is its own business."""
    if forward.uses != {"discard"} or forward.via is not None or forward.method is not None or forward.key == "self":
        return False
    if type(forward.call.func) is cst.Attribute and forward.call.func.attr.value == "forward" \
            and not mode.certain:
        return False  # `backend.forward(arrays)`: an ONNX or TensorRT runner records no graph
    site = facts.call_sites.get(forward.call)
    if not loops_around(site):
        return False
    return not _trains(facts, forward) and not any(is_train_site(s) for s in mode.train_sites) \
        and not dummy_input(facts, forward)


def _trains(facts: FileFacts, forward) -> bool:
    """Does the forward's function train (a hook may keep activations for its backward)?"""
    function = forward.function
    if function is None:
        return any(flow.function is None and flow.trains for flow in facts.flow.flows)
    return facts.flow.function_trains(function)


def _library_generate(facts: FileFacts, forward) -> bool:
    """`model.generate(...)` of a class this file does not define: Hugging Face's `generate()` is
    decorated with `torch.no_grad()` itself (its mode still matters: MDL001 applies)."""
    via = forward.via
    if via is not None and forward.callee is not None and forward.callee.qualname.endswith(".generate"):
        return False  # (the project's own `generate()`, another file's, followed through its summary)
    # (the call here, or the helper's own call of the model, whatever the helper does with the output)
    calls = (forward.call,) if via is None else (forward.call, via.node)
    if not any(type(call) is cst.Call and type(call.func) is cst.Attribute and call.func.attr.value == "generate"
               for call in calls):
        return False
    return not any(function.name == "generate" and function.cls is not None and facts.may_be_module_class(function.cls)
                   for function in facts.collector.functions)  # (a module of this file with its own `generate`)


def _follows_a_reported_forward(facts: FileFacts, forward, reported: list) -> tuple[int, str] | None:
    """The position in `reported` of the call that a second forward of the same model later in the same
    block follows, or that a forward fed by an output follows in the same block or one inside it (the same
    fix covers both): `d(fake)` then `d(real)` in one evaluation step get one finding, not two."""
    node = _reported_node(facts, forward)
    site = facts.call_sites.get(node) if node is not None else None
    if site is None:
        return None
    text = code_of(node.func)
    for i, earlier in enumerate(reported):
        before = facts.call_sites.get(earlier)
        if before is None or before.site.function is not site.site.function or before.site.stmt is site.site.stmt:
            continue
        if code_of(earlier.func) == text and site.site.guards == before.site.guards:
            return i, "again here"
        if _parts_of_one_module(facts, site.site.function, text, code_of(earlier.func)) \
                and site.site.guards == before.site.guards:
            return i, "here, another part of the same model"  # (`self.embed_user(u)`, `self.embed_item(i)`)
        guards = before.site.guards
        if forward.fed and forward.via is None and site.site.guards[:len(guards)] == guards:
            return i, "here on an output computed above"  # (a loss, a head on features: the same no_grad)
    return None


def _parts_of_one_module(facts: FileFacts, function, text: str, other: str) -> bool:
    """`self.embed_user` and `self.embed_item` in a method of a module class: parts of the one model."""
    return function is not None and function.cls is not None and facts.may_be_module_class(function.cls) \
        and text.startswith("self.") and other.startswith("self.")


def _reported_node(facts: FileFacts, forward) -> cst.Call | None:
    """The call a finding about this forward is shown at, when it is in this file."""
    via = forward.via
    if via is None or via.intent == "returned":
        return forward.call
    return via.node if via.path == facts.path else None


def _frozen_in_the_callee(facts: FileFacts, forward) -> bool:
    """A method of this file runs its object's model, which the class's constructor froze whole
    (`teacher(x)` with `EMATeacher.__call__` running `self.teacher`, frozen in `__init__`)."""
    via = forward.via
    if via is None or forward.callee is None or via.path != facts.path or not via.param.startswith("self."):
        return False
    callee = facts.flow.local_functions.get(forward.callee.qualname)
    return callee is not None and callee.cls is not None and via.param in frozen_attributes(facts, callee.cls)


def _inside_enable_grad(facts: FileFacts, site) -> bool:
    for guard in site.site.guards:
        if type(guard) is cst.With and any(grad_effect(facts.imports, i.item) in ("enabled", "unknown")
                                               for i in guard.items):
            return True
    return False


def _part_of(key: str, models: frozenset[str]) -> bool:
    """Is `key` one of `models`, or a part of one (`G.synthesis` of a frozen `G`)?"""
    return key in models or any(key.startswith(model + ".") for model in models)


def _prediction_beside_gradients(function, forward) -> bool:
    """In a function that asks for gradients of its inputs (an attack, a saliency map), a forward whose output
    only becomes predictions and metrics, on none of the tensors it asks gradients of (`model(images)` for
    the clean accuracy beside the attack on `adv_images`): its graph serves nothing."""
    names = function.input_gradient_names
    if not names or forward.via is not None or "eval" not in forward.uses \
            or forward.uses & {"train", "graph", "return", "store", "escape", "handed"}:
        return False
    read = {dotted(node) for arg in forward.call.args for node in iter_nodes(arg.value)
            if type(node) in (cst.Name, cst.Attribute)}
    return not read & names


def _scored_by_a_loss(flow, forward) -> bool:
    """Is the output handed, as it is, to losses scoring it against data (`criterion(outputs, labels)`)?"""
    scored = flow.feeds_into.get(forward.call, ())
    return bool(scored) and all(token in flow.compares for token in scored)


def _gradients_cleared_first(facts, forward) -> bool:
    """The model's own gradients are cleared just before the forward (`model.zero_grad()`, not an optimizer's),
    where nothing steps an optimizer: the output's gradients are wanted, by code we may not see (a CAM
    extractor handed the scores runs the backward). Not where the output is compared with the labels and
    goes nowhere else (`criterion(out, y).item()`, `(out.argmax(-1) == y).sum()`): a metric, whose graph
    nothing takes gradients of."""
    metric_only = bool(forward.uses & {"compared", "eval"}) \
        and not forward.uses & {TRAIN, RETURN, STORE, ESCAPE, HANDED, "graph"}
    if metric_only and "compared" in forward.uses:
        return False
    function = forward.function
    by_model = facts.__dict__.get("_zero_grad_calls")
    if by_model is None:  # (function, model) -> its `model.zero_grad()` calls, once per file
        by_model = facts.__dict__["_zero_grad_calls"] = {}
        for site in facts.collector.calls:
            func = site.node.func
            if type(func) is cst.Attribute and func.attr.value == "zero_grad":
                by_model.setdefault((site.site.function, dotted(func.value)), []).append(site.node)
    cleared = by_model.get((function, forward.key), ())
    flow = next((f for f in facts.flow.flows if f.function is function), None) if cleared else None
    if flow is None or any(step.kind == "step" for step in flow.steps.values()) \
            or (metric_only and _scored_by_a_loss(flow, forward)):
        return False
    here = facts.locate(forward.call)  # (placing nodes costs: only once a `zero_grad()` of that model is there)
    return here is not None and any((at := facts.locate(node)) is not None and at[:2] < here[:2] for node in cleared)

