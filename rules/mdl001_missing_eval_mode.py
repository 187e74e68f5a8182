from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.forward_modes import effective_grad, effective_mode
from modelint.facts.evaluation import (evaluation_context, forward_switches_to_eval,
                                       forward_trains_itself, named_model, fed_by_a_model_in_eval_mode,
                                       returned_to_callers)
from modelint.facts.hidden_backward import trained_through_a_kept_loss
from modelint.facts.modules_run import is_module
from modelint.facts.parts_in_eval import fresh_dependence
from modelint.facts.asked_layers import runs_no_mode_layer
from modelint.facts.smoke_tests import dummy_input, initialises_lazy_modules, recomputes_norm_statistics, smoke_test
from modelint.facts.batches import over_batches
from modelint.facts.gates import switched_to_training_without_grad, toggled_for_one_forward
from modelint.facts.loop_bindings import comprehensions_around
from modelint.facts.monte_carlo import repeated_sample, variance_of_repeated_copies
from modelint.facts.training_pass import fitted_input, objective_on_the_training_batch, training_batch_statistic
from modelint.facts.lattice import ENTRY_MODE, is_train_site
from modelint.facts.mode_handling import (class_sets_own_mode, classes_self_may_be, minds_modes, optional_or_callable,
                                          states_mode_contract)
from modelint.facts import torch_api as api
from modelint.facts.modules import Dependence
from modelint.facts.naming import names_evaluation_data
from modelint.facts.names import dotted
from modelint.facts.scopes import loops_around
from modelint.facts.summaries import qualname
from modelint.facts.walk import iter_nodes
from modelint.rule import NodeEdit, NodeFix, Report, Rule, evidence, helper_report, wrapped_forward_notes


class MissingEvalMode(Rule):
    """
    ## What it does
    Finds evaluation and inference that runs a model still in training mode: it was
    built, loaded by a factory, copied, trained or put in `train()` on every path,
    and nothing set `eval()` since. A forward is an evaluation when its output never
    reaches a backward pass and it runs under `torch.no_grad()` /
    `torch.inference_mode()`, over validation/test data (a phase loop's "val" pass
    included), or only feeds predictions and metrics. The mode follows calls: a
    helper that evaluates the model it is given is reported with its caller, and a
    trainer's methods see what its other methods leave. A generator's fakes for the
    discriminator, a teacher's targets and other outputs that feed a training loss
    are not evaluations.

    Three cases are reported without seeing the training that precedes them, because
    the code leaves nobody else to set the mode:
    - a helper that runs a model it is given over each batch of a dataset (`for x, y
      in loader`, or `b[0]`/`b[1]` of each item) for predictions or metrics, sets no
      mode at all, says nothing of it in its docstring, and has no caller in the
      checked files (when another checked file calls it, that caller is judged
      instead and this finding is dropped);
    - a module's own public method (`predict()`) that turns `self(...)` into
      predictions with autograd on, in a class with Dropout or BatchNorm of its own
      whose methods never call `self.eval()`: a module is built in training mode and
      stays there after training;
    - an inference wrapper (a `Predictor`: no module, never trains) that stores the
      module its creator hands it (`self.model = model`) and evaluates it, when none
      of its methods sets that model's mode and the file does not build the wrapper
      itself; if another of its methods evaluates the model after `eval()`, any
      forward of it elsewhere in the class counts as an evaluation.

    ## Why is this bad?
    In training mode Dropout zeroes random activations and BatchNorm normalises with
    the batch's own statistics and overwrites its running statistics. Metrics come
    out noisy and too low, predictions change from one run to the next, and every
    evaluation batch silently corrupts the BatchNorm statistics the model will use
    later. `torch.no_grad()` does not change this: it only switches off autograd.

    ## Example
    ```python
    model.train()
    for x, y in train_loader:
        ...
    with torch.no_grad():
        for x, y in val_loader:
            logits = model(x)
    ```

    ## Use instead
    ```python
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            logits = model(x)
    model.train()
    ```

    ## Fix safety
    Unsafe: inserting `model.eval()` is right for evaluation, but code that
    deliberately samples in training mode (MC dropout) must keep it.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval
    - https://pytorch.org/docs/stable/notes/autograd.html#locally-disable-grad-doc
    """

    code = "MDL001"
    name = "missing-eval-mode"
    severity = "error"
    summary = "Evaluation runs a model that is still in training mode (Dropout/BatchNorm active)."
    fix_safety = "unsafe"
    fixtures = "MDL001_missing_eval_mode"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for flow in facts.flow.flows:
            function = flow.function
            if facts.is_test_function(function) or facts.flow.is_framework_hook(function):
                continue
            trains_here = facts.flow.function_trains(function)
            for forward in flow.all_forwards():
                if recomputes_norm_statistics(facts, forward):
                    continue  # precise BN: a pass for the running statistics the function reads or resets
                if runs_no_mode_layer(facts, forward):
                    continue  # `model(x)` leaving off `is_training`, under which alone its Dropout runs
                report = (self._judge(facts, forward, trains_here) or self._idle_restore(facts, flow, forward)
                          or self._unseen_callers(facts, forward, trains_here)
                          or self._own_evaluation(facts, forward)
                          or self._handed_to_a_wrapper(facts, forward))
                if report is not None:
                    yield _with_creators(facts, forward, report)

    def _unseen_callers(self, facts: FileFacts, forward, trains_here: bool) -> Report | None:
        """A helper that evaluates a model its caller passes, batch after batch, sets no mode at all, and
        has no caller in sight: it runs in whatever mode its caller left, and the fix commits of real
        projects put `model.eval()` in such helpers. Each batch drawn from data and fed to the parameter
        is what shows it is a model (a callback or a transform gets another forward's output). When
        another file of the run calls the helper, the runner drops this guess: that caller is judged."""
        function = forward.function
        mode = forward.mode
        if function is None or forward.via is not None or trains_here or mode != ENTRY_MODE:
            return None
        head = forward.key.split(".")[0]
        if head not in function.param_set or head in ("self", "cls") or facts.flow.has_callers(function) \
                or facts.flow.syntactic_callers(function) or optional_or_callable(facts, function, head):
            return None  # (a caller in a branch that never runs, `if run_scores:` with `run_scores = False`, too)
        if forward.intent == "unknown" and forward.kept_on_an_object:
            return None  # (kept on an object, `self.bank[idx] = model(x)`: for a loss that reads it, maybe training)
        # From data flow only: the names of the function or of the data are no evidence here.
        if effective_grad(facts, forward).definitely_free:
            context = "under no_grad"
        elif forward.intent == "evaluation":
            context = "for predictions and metrics"
        else:
            return None
        if not over_batches(facts, forward, batch_only=True) or minds_modes(function):
            return None
        key = forward.key
        site = facts.call_sites.get(forward.call)
        return Report(
            forward.call,
            f"`{key}` is evaluated {context} in `{function.name}()`, which never sets its mode, and no caller of "
            f"`{function.name}()` can be seen: it runs in whatever mode the caller left, training mode after a "
            f"training step: {_CONSEQUENCE}; call `{key}.eval()` before evaluating",
            stmt=site.site.stmt if site else None,
            fix=_insert_eval(facts, forward, site, False) if site else None,
            unless_called=qualname(function),
        )

    def _own_evaluation(self, facts: FileFacts, forward) -> Report | None:
        """A module's own public inference method (`predict`, `embed`) that evaluates `self` when no method
        of its class ever calls `self.eval()`: a module is built in training mode, and nothing between
        its construction or its training and this call switches it."""
        function = forward.function
        if function is None or function.cls is None or forward.key != "self" or forward.mode != ENTRY_MODE:
            return None
        if function.name.startswith("_") or function.name in ("forward", "__call__") \
                or not facts.is_module_class(function.cls) or facts.flow.has_callers(function) \
                or minds_modes(function) or class_sets_own_mode(facts, function.cls):
            return None
        # (`self` in a base class's method is also each subclass here that inherits it: the layers are theirs)
        holder = facts.call_sites.get(forward.call)
        methods = {function.name} | ({holder.site.function.name} if holder and holder.site.function else set())
        if repeated_sample(facts, forward) or not any(
                (facts.modules.class_dependence(owner) is Dependence.DEPENDENT
                 and facts.modules.kinds.holds_library_mode_layers(owner)
                 or facts.modules.built_with_mode_layers(owner)) and not class_sets_own_mode(facts, owner)
                for owner in classes_self_may_be(facts, function.cls, methods)):
            # It needs a Dropout or BatchNorm of its own (not only a layer of the file choosing by `self.training`
            # what to do, as a NoisyNet's exploration noise), and no Monte Carlo sampling (one input again).
            return None
        grad = effective_grad(facts, forward)
        context = evaluation_context(facts, forward, grad)
        if context is None or not context.startswith("for predictions") or forward.grad_free:
            # A method its author put under no_grad (`@torch.no_grad() def generate`) was written for
            # inference, and libraries leave the mode to the caller there (`from_pretrained` gives eval);
            # not a plain `nn.Module` of this file turning its output into predictions (`argmax`) there.
            if context is None or forward.intent != "evaluation" or not _plain_torch_module(facts, function.cls):
                return None
            context = "for predictions"
        cls = function.cls.name
        message = (f"`self` is evaluated {context} in `{cls}.{function.name}()`, and no method of `{cls}` calls "
                   f"`self.eval()`: a `{cls}` runs here in training mode after it is built or trained: "
                   f"{_CONSEQUENCE}; call `self.eval()` at the start of `{function.name}()`")
        if forward.via is None:
            site = facts.call_sites.get(forward.call)
            return Report(forward.call, message, stmt=site.site.stmt if site else None,
                          method_callers_switch=function.name)
        report = helper_report(facts, forward, message, f"`{function.name}()` reaches the forward pass here",
                               {"notes": (), "related": ()})
        return replace(report, method_callers_switch=function.name) if report is not None else None

    def _handed_to_a_wrapper(self, facts: FileFacts, forward) -> Report | None:
        """An inference wrapper (a predictor, an evaluator: no module, never trains) stores the model its
        creator hands it and evaluates it, and no method of the class ever sets its mode: it runs in
        whatever mode the creator left, training mode right after training. The fix commits of real
        projects put `self.model.eval()` in the wrapper."""
        function = forward.function
        via = forward.via  # (a helper of the class that runs the model and returns the output: the same)
        if function is None or (via is not None and via.intent != "returned") or forward.fed \
                or forward.mode != ENTRY_MODE or function.name in ("__init__", "forward"):
            return None
        stored_in = facts.flow.objects.handed_in(function, forward.key)
        if stored_in is None or effective_mode(facts, forward) != ENTRY_MODE or minds_modes(function) \
                or not is_module(facts, forward, forward.mode) \
                or states_mode_contract(function.cls.node) or minds_modes(stored_in):
            return None  # (a wrapper documented to take a model already in eval mode leaves it to its creator)
        key = forward.key
        cls = function.cls.name
        site = facts.call_sites.get(forward.call)
        grad = effective_grad(facts, forward)
        sibling = facts.flow.objects.evaluated_in_eval_mode(function, key)
        if sibling is not None and forward.method is None and forward.intent in ("evaluation", "returned"):
            # (whatever it hands back: the class's author evaluates this model, in eval mode, elsewhere)
            method, switch = sibling
            message = (f"`{key}` runs in `{cls}.{function.name}()` in whatever mode `{cls}`'s creator left it, "
                       f"while `{method}()` puts it in eval mode first: after training, {_CONSEQUENCE}; call "
                       f"`{key}.eval()` here too (saving and restoring its mode as `{method}()` does)")
            switched = ((switch, f"`{method}()` puts `{key}` in eval mode here"),)
            notes, related = wrapped_forward_notes(facts, forward, switched, ())
            return Report(forward.call, message, stmt=site.site.stmt if site else None, notes=notes,
                          related=related, fix=_insert_eval(facts, forward, site, False) if site else None)
        if facts.flow.objects.ever_switched_to_eval(function.cls, key):
            # (`predict_all()` puts it in eval mode, then calls this method for each batch: the class minds the
            # mode, and which of its methods its users call first is not in view)
            return None
        if grad.definitely_free:
            context = "under no_grad"
        elif forward.intent == "evaluation" and forward.method is None:
            context = "for predictions and metrics"  # (turned into predictions: tensors, so a model's)
        else:
            return None
        notes, related = wrapped_forward_notes(facts, forward, (), ())
        return Report(
            forward.call,
            f"`{key}` is evaluated {context} in `{cls}.{function.name}()`, and no method of `{cls}` sets the mode "
            f"of the model handed to `{stored_in.name}()`: it runs in whatever mode its creator left, training mode "
            f"right after training: {_CONSEQUENCE}; call `{key}.eval()` where `{cls}` stores it or before "
            f"evaluating",
            stmt=site.site.stmt if site else None, notes=notes, related=related,
            fix=_insert_eval(facts, forward, site, False) if site else None,
        )

    def _idle_restore(self, facts: FileFacts, flow, forward) -> Report | None:
        """`was_training = m.training`, an evaluation of `m`, `m.train(was_training)`, and no `m.eval()`
        in between: the mode is saved and restored around an evaluation that never switches it."""
        restore = flow.idle_restores.get(forward.key)
        mode = forward.mode
        if restore is None or forward.via is not None or mode.train_sites or mode.eval_sites or mode.havoc:
            return None
        grad = effective_grad(facts, forward)
        context = evaluation_context(facts, forward, grad)
        if context is None and not grad.definitely_free:
            return None
        key = forward.key
        site = facts.call_sites.get(forward.call)
        return Report(
            forward.call,
            f"`{key}` is evaluated {context or 'under no_grad'} in whatever mode it was left in: its mode is saved "
            f"and restored around this call, but `{key}.eval()` is never called in between: {_CONSEQUENCE} when "
            f"it is in training mode; call `{key}.eval()` before evaluating",
            stmt=site.site.stmt if site else None,
            notes=((restore, f"`{key}`'s saved mode is restored here, unchanged"),),
        )

    def _judge(self, facts: FileFacts, forward, trains_here: bool) -> Report | None:
        mode = effective_mode(facts, forward)
        if not mode.definitely_train or not mode.dependence.may_depend or not is_module(facts, forward, mode):
            return None
        if mode.parameterless:
            return None  # a lone Dropout, no weights: applied as it is for its randomness (a random mask)
        if _as_built_with_pretrained_parts(facts, mode):
            return None  # a new wrapper's Hugging Face backbone is still in the eval mode `from_pretrained` left
        if facts.flow.objects.attribute_dependence(forward.function, forward.key) is Dependence.INDEPENDENT:
            return None  # every model the class puts there has no Dropout or BatchNorm
        if _sets_its_own_mode_only(facts, forward) and not over_batches(facts, forward):
            # A NoisyNet agent acting on a state: its layers' training-mode noise is its exploration, written for
            # that; only a pass over a dataset's batches is surely an evaluation.
            return None
        grad = effective_grad(facts, forward)
        context = evaluation_context(facts, forward, grad)
        if context is None or (forward.via is None and returned_to_callers(facts, forward)) \
                or initialises_lazy_modules(facts, forward) or fed_by_a_model_in_eval_mode(facts, forward) \
                or forward_switches_to_eval(facts, forward) or forward_trains_itself(facts, forward) \
                or trained_through_a_kept_loss(facts, forward):
            return None  # (a `forward` that back-propagates its own loss is a training step, in training mode)
        if (not trains_here or _switched_after_training(facts, forward)) \
                and any(is_train_site(site) for site in forward.mode.train_sites) and repeated_sample(facts, forward):
            return None  # train() set on the way here on purpose, to sample (MC dropout)
        if toggled_for_one_forward(facts, forward):
            return None  # `model.train()`, the forward, `model.eval()`: training mode for this forward alone
        if switched_to_training_without_grad(facts, forward):
            return None  # `model.train()` under no_grad, then the evaluation: training mode asked for it
        if variance_of_repeated_copies(facts, forward):
            return None  # Monte Carlo dropout in one batched pass: copies of one input, the spread of the outputs
        if trains_here and forward.uses <= {"discard"} and _switched_after_training(facts, forward):
            # `model.train()` after the last step, then forwards whose outputs nothing reads: run for what they
            # do to BatchNorm's running statistics (recomputed for averaged weights after SWA)
            return None
        if not trains_here and forward.via is None and forward.uses == {"discard"} \
                and any(is_train_site(site) for site in forward.mode.train_sites):
            # The same with no training here: `model.train()`, then a forward whose output nothing reads, for
            # what it does to the layers (a data-dependent initialisation: Glow's ActNorm; BatchNorm statistics)
            return None
        if mode.train_sites <= facts.flow.assumed_sites and (not context.startswith(("under", "over")) or facts.flow.
                                                             objects.trained_against_the_constructor(
                                                                 mode.train_sites, forward.key, facts.call_sites)):
            # In training mode only because it was trained above: needs no_grad or test data too; and not when
            # the object's constructor put it in eval mode and nothing switches it back (that training is the bug)
            return None
        if _every_caller_switched_it(facts, forward):
            return None
        if not trains_here and smoke_test(facts, forward, mode):
            return None
        if forward.via is None and forward.uses <= {"discard"} and dummy_input(facts, forward):
            return None  # a made-up tensor, its output dropped: a warm-up (ZeRO-3 materialising its shards)
        if _initialisation_pass(facts, forward, mode):
            return None  # a model just built, run once, its output bound and never read: a data-aware init pass
        if _mode_chosen_by_caller(forward, mode) and (not trains_here or forward.function.takes_input_gradients):
            return None  # (an attack's backward computes input gradients: no training either)
        if trains_here and (fitted_input(facts, forward) or training_batch_statistic(facts, forward, context)
                            or objective_on_the_training_batch(facts, forward, context)):
            return None
        key = named_model(facts, forward)
        proof = evidence(mode.train_sites, f"`{key}` is in training mode from here")
        via = forward.via
        # A helper returning its output computes it under its own no_grad: an evaluation helper, reported
        # at its forward like the others; otherwise the caller's use of the value decided, at the call.
        if via is None or (via.intent == "returned" and via.grad != "free"):
            site = facts.call_sites.get(forward.call)
            notes, related = wrapped_forward_notes(facts, forward, proof["notes"], proof["related"])
            helper = f" (through `{forward.callee.shown_name}()`)" if via is not None else ""
            return Report(
                forward.call,
                f"`{key}` is evaluated {context}{helper} while still in training mode: {_CONSEQUENCE}; "
                f"call `{key}.eval()` before evaluating",
                stmt=site.site.stmt if site else None,
                fix=_insert_eval(facts, forward, site, trains_here) if site and via is None else None,
                notes=notes, related=related, method_callers_switch=_switchable_by_users(facts, forward),
            )
        caller = f"{forward.function.name}()" if forward.function is not None else "the module-level script"
        callee = forward.callee.shown_name
        shown = "" if context.startswith("in ") else f" {context}"
        message = (f"`{via.param}` is evaluated{shown} in `{callee}()`, but {caller} passes `{key}` in training "
                   f"mode: {_CONSEQUENCE}; call `{key}.eval()` before `{callee}(...)` or `{via.param}.eval()` "
                   f"inside it")
        caller_note = f"{caller} calls `{callee}()` with `{key}` in training mode"
        return helper_report(facts, forward, message, caller_note, proof)


def _switchable_by_users(facts: FileFacts, forward) -> str | None:
    """A public method evaluating a model its object holds (`self.model`), in the mode the object was built in
    (nothing here calls the method, and it switches nothing itself): the object's users may put that model in
    eval mode first (`learner.model.eval()`, then `learner.infer(faces)`). "infer:model" for
    Report.method_callers_switch: the runner drops the report when other files do so at every call."""
    function = forward.function
    if function is None or function.cls is None or forward.via is not None or not forward.key.startswith("self.") \
            or function.name.startswith("_") or facts.flow.has_callers(function):
        return None
    for site in forward.mode.train_sites:
        where = facts.call_sites.get(site) if type(site) is cst.Call else None
        if where is not None and where.site.function is function:
            return None  # (it puts the model in training mode itself)
    return f"{function.name}:{forward.key.removeprefix('self.')}"


def _initialisation_pass(facts: FileFacts, forward, mode) -> bool:
    """`with torch.no_grad(): res = model(x_train[:1000])`, once, on a model just built (no `train()` or `eval()`
    since), its output bound and never read: run for what it does to the layers (NODE's data-aware init, lazy
    shapes), not an evaluation. (Not over batches: a loop or a comprehension computes something to keep.)"""
    if forward.uses or forward.via is not None or not mode.train_sites or mode.eval_sites \
            or any(is_train_site(site) for site in mode.train_sites):
        return False
    site = facts.call_sites.get(forward.call)
    if site is None or loops_around(site):
        return False
    return not comprehensions_around(site, forward.call)


def _sets_its_own_mode_only(facts: FileFacts, forward) -> bool:
    """Is the model an object's attribute that only ever holds models whose mode dependence is their own layers
    reading `self.training` (a NoisyNet), here or in the method of this file the forward runs through?"""
    objects = facts.flow.objects
    if objects.attribute_sets_own_mode_only(forward.function, forward.key):
        return True
    # (or a model built from such a class of this file and never switched since: `net = NoisyQNet(n)`)
    sites = forward.mode.train_sites
    own = facts.modules.own_mode_classes()
    if sites and all(type(site) is cst.Call and type(site.func) is cst.Name and site.func.value in own
                     for site in sites):
        return True
    via = forward.via
    callee = facts.flow.local_functions.get(forward.callee.qualname) if via is not None else None
    return callee is not None and objects.attribute_sets_own_mode_only(callee, via.param)


def _with_creators(facts: FileFacts, forward, report: Report) -> Report:
    """The report, marked for the runner when the model is the one the class's creators hand in."""
    if report.elsewhere is not None or report.held_from_creators is not None:
        return report
    held = facts.flow.objects.creators_argument(forward.function, forward.key)
    return replace(report, held_from_creators=held) if held is not None else report


def _insert_eval(facts: FileFacts, forward, site, trains_here: bool) -> NodeFix | None:
    """`model.eval()` above the evaluation region (the loop over validation data, else the
    no_grad block, else the statement itself), and `model.train()` below it when it sits in
    a loop of a function that goes on training."""
    guards = list(site.site.guards)
    region = site.site.stmt
    with_statements = {item: where.stmt for item, where in facts.collector.with_items}
    loops = [g for g in guards if type(g) is cst.For and names_evaluation_data(g.iter)]
    free_blocks = [with_statements[f] for f in forward.grad.free_sites if f in with_statements]
    if loops:
        region = loops[0]
    elif free_blocks and free_blocks[0] in guards:
        region = free_blocks[0]
    if region is None or type(region) in (cst.FunctionDef, cst.ClassDef):
        return None
    enclosing = guards[: guards.index(region)] if region in guards else guards
    key = forward.key
    edits = [NodeEdit(region, f"{key}.eval()", "line_before")]
    if trains_here and any(type(g) in (cst.For, cst.While) for g in enclosing):
        edits.append(NodeEdit(region, f"{key}.train()", "line_after"))
    return NodeFix(f"Call `{key}.eval()` before the evaluation", tuple(edits), applicability="unsafe")


_CONSEQUENCE = "Dropout stays random and BatchNorm uses batch stats and overwrites its running stats"


def _mode_chosen_by_caller(forward, mode) -> bool:
    """In a pass of a function whose parameter picks the mode (`if training: model.train()`, as in an
    exporter's `training=True`), where nothing is trained: training mode is what the caller asked for."""
    function = forward.function
    if function is None or not forward.phase or forward.phase[0][0] not in function.param_set:
        return False
    return bool(mode.train_sites) and all(is_train_site(site) for site in mode.train_sites)


def _switched_after_training(facts: FileFacts, forward) -> bool:
    """Every explicit `train()` reaching the forward comes after the training steps of its function that can
    run before it (a notebook that trains, then switches dropout back on to sample): no step runs between the
    switch and the sampling. (A step further down, in no loop around the forward, runs after it.)"""
    flow = next((f for f in facts.flow.flows if f.function is forward.function), None)
    step_calls = [step.call for step in flow.steps.values()] if flow is not None else []
    # (a helper that trains, `net = fit(net, loader)`: its call stands for its steps)
    step_calls += [site.node for site in facts.collector.calls_made_in(forward.function)
                   if (summary := facts.flow.summaries.get(facts.flow.local_callee(site.node, forward.function) or ""))
                   is not None and summary.trains]
    switches = [facts.locate(site) for site in forward.mode.train_sites if is_train_site(site)]
    here = facts.locate(forward.call)
    site = facts.call_sites.get(forward.call)
    if not step_calls or not switches or None in switches or here is None or site is None:
        return False
    around = loops_around(site)
    located = [(call, facts.locate(call)) for call in step_calls]
    steps = [at for call, at in located
             if not (at is not None and at[:2] > here[:2]
                     and not any(any(node is call for node in iter_nodes(loop)) for loop in around))]
    if not steps or None in steps:
        return not steps  # (every step runs after the sampling)
    last = max(step[2:] for step in steps)
    return all(last < switch[:2] < here[:2] for switch in switches)


def _plain_torch_module(facts: FileFacts, cls) -> bool:
    """A class deriving from `torch.nn.Module` itself, maybe through classes of this file: no library
    model base (`PreTrainedModel`) whose loaders hand it over in eval mode."""
    seen: set[str] = set()
    stack = [cls.name]
    while stack:
        info = facts.modules.classes.get(stack.pop())
        if info is None or info.name in seen:
            continue
        seen.add(info.name)
        for base in info.bases:
            local = dotted(base)
            if local in facts.modules.classes:
                stack.append(local)
            elif facts.imports.qualify(base) not in api.NN_MODULE:
                return False
    return bool(seen)


def _every_caller_switched_it(facts: FileFacts, forward) -> bool:
    """`self.net(x)` in `DQN.choose_action`, where every call of it here comes after the caller put that
    attribute of the receiver in eval mode (`self.agent.net.eval()`, then `self.agent.choose_action(s)`)."""
    function, key = forward.function, forward.key
    if function is None or function.cls is None or function.outer is not None or not key.startswith("self.") \
            or forward.via is not None:
        return False
    sites = facts.flow.call_sites.get(f"{function.cls.name}.{function.name}", {})
    if not sites:
        return False
    for call, (_caller, _grad, models) in sites.items():
        receiver = dotted(call.func.value) if type(call.func) is cst.Attribute else None
        fact = models.get(receiver + key[4:]) if receiver is not None and receiver != "self" else None
        if fact is None or not fact.definitely_eval:
            return False
    return True


def _as_built_with_pretrained_parts(facts, mode) -> bool:
    """In training mode only because it was built here (no `train()` since), from a class of this file whose
    layers that depend on the mode are all parts it loads with `from_pretrained` (left in eval mode)."""
    sites = mode.train_sites
    return bool(sites) and all(type(site) is cst.Call and not is_train_site(site)
                               and fresh_dependence(facts.modules, site) is Dependence.INDEPENDENT for site in sites)
