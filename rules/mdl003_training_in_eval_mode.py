from __future__ import annotations

from dataclasses import replace

import os
from typing import Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.facts.evaluation import shown_attribute
from modelint.facts.gates import runs_only_in_training
from modelint.facts.modules import Dependence
from modelint.facts.optimized_scopes import optimized_in_scope
from modelint.facts.optimizers import MADE_TENSORS, stepped_parts_in_training
from modelint.facts.lattice import is_train_site
from modelint.facts.names import (NOT_LITERAL, dotted, key_prefixes, literal_value, same_or_nested,
                                  value_key)
from modelint.facts.walk import iter_nodes
from modelint.facts.phase_callers import eval_branch_not_taken, mode_picked_by_callers
from modelint.facts.phases import step_phase
from modelint.facts.scopes import loops_around
from modelint.summary import RemoteSite
from modelint.rule import NodeEdit, NodeFix, Report, Rule, evidence, helper_report
from modelint.textutil import code_of


class TrainingInEvalMode(Rule):
    """
    ## What it does
    Finds a training step (`loss.backward()`, or `optimizer.step()` where there is no
    backward) that may run while the model being trained is in eval mode: `eval()`
    was set earlier on some path — directly, or inside a helper such as
    `evaluate(model)` or a mid-epoch validation — and nothing called `train()` in
    between. A backward whose optimizer steps elsewhere (gradient accumulation)
    counts; one right after the function's own `eval()` with no optimizer step
    (Fisher information, importance scores), or one whose optimizer updates only
    tensors the code made (an adversarial mask, a style-transfer image), trains no
    model and is left alone.

    ## Why is this bad?
    After `eval()`, Dropout is off and BatchNorm normalises with frozen running
    statistics and stops updating them. Training goes on without an error but
    without regularisation and with stale statistics: validation loss diverges from
    training loss, and results depend on how often validation ran.

    ## Example
    ```python
    for step, (x, y) in enumerate(loader):
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        if step % 500 == 0:
            evaluate(model, val_loader)  # calls model.eval() and returns
    ```

    ## Use instead
    ```python
        if step % 500 == 0:
            evaluate(model, val_loader)
            model.train()
    ```

    ## Fix safety
    Unsafe: `model.train()` after the call is right unless parts of the model are
    kept in eval mode on purpose (frozen BatchNorm), which a person must check.

    ## References
    - https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.train
    """

    code = "MDL003"
    name = "training-in-eval-mode"
    severity = "error"
    summary = "A training step runs after eval() with no train() in between on some path."
    fix_safety = "unsafe"
    fixtures = "MDL003_training_in_eval_mode"

    def check(self, facts: FileFacts) -> Iterator[Report]:
        for flow in facts.flow.flows:
            optimized, complete = optimized_in_scope(facts, flow.function)
            if facts.is_test_function(flow.function):
                continue  # a unit test switching modes on purpose (gradients of BatchNorm in eval mode)
            if facts.uses_input_gradients(flow.function) and not any(s.kind == "step" for s in flow.steps.values()):
                continue  # gradients of the inputs (saliency, a gradient check): nothing is trained
            fed = flow.trained_keys()
            stepped = facts.flow.stepped_owners(flow.function)
            if stepped is not None:
                # The optimizers this function steps say whose parameters it trains (linear evaluation steps
                # the head's optimizer only, over a backbone kept in eval mode): the others are not trained.
                # (a model fed to the loss trains when the stepped parts are in it or it is in one of them)
                fed = {key for key in fed if any(same_or_nested(key, part) for part in stepped)}
                trained = stepped | fed
            elif complete and optimized:
                # Every optimizer here says whose parameters it steps: a network whose output only feeds the
                # loss (a frozen VGG for a perceptual loss, a teacher) is not trained, whatever its mode.
                fed = {key for key in fed if key_prefixes(key) & optimized}
                trained = optimized | fed
            else:
                trained = optimized | fed
            steps = [s for s in flow.steps.values() if s.kind == "backward"]
            if not steps and not flow.backward_in_helpers:
                # (the step stands for the backward only where none runs: the mode matters to the forward
                # passes of the backward, which a helper runs and is judged at, not to `optimizer.step()`)
                steps = list(flow.steps.values())
            for step in steps:
                # (the optimizers' owners under the names the step follows its models by: `model = self.model`
                # then `SGD(model.parameters())` trains `self.model`)
                trained_here, optimized_here = step.named_as_followed(trained), step.named_as_followed(optimized)
                stepped_here = step.named_as_followed(stepped) if stepped is not None else None
                # (the models this backward trains first: whose outputs reach it)
                for key, fact in sorted(step.models.items(), key=lambda item: (item[0] not in step.reached, item[0])):
                    site = facts.call_sites.get(step.call)
                    if not self._trained_in_eval(key, fact, step.models, trained_here) \
                            or facts.flow.objects.attribute_dependence(flow.function, key) is Dependence.INDEPENDENT \
                            or _frozen_features_protocol(facts, key, fact, step) or _other_model_trained(key, step) \
                            or _part_frozen_after_train(facts, fact, step) or _toggled_around_step(facts, key, fact, step) \
                            or (not any(same_or_nested(key, part) for part in (stepped_here or set()) | optimized_here)
                                and _frozen_beside_the_trained(facts, key, fact, step)) \
                            or _gradients_measured_in_eval(facts, flow, fact, step) \
                            or facts.flow.stepped_only_where_not_evaluated(flow.function, key, fact.eval_sites) \
                            or _not_stepped_by_this_backward(facts, flow, key, step) \
                            or _no_update_follows(facts, flow, step) \
                            or mode_picked_by_callers(facts.flow, flow, fact.eval_sites) \
                            or _forwards_ran_in_training_mode(flow, key, step) \
                            or stepped_parts_in_training(key, stepped_here, step) \
                            or eval_branch_not_taken(facts.flow, flow, fact.eval_sites, step.phases) \
                            or (site is not None and runs_only_in_training(site.site, key, step.call)):
                        continue
                    shown = shown_attribute(facts, flow.function, key)
                    yield Report(step.call, _message(shown, fact), stmt=site.site.stmt if site else None,
                                 fix=_train_at_loop_top(site, shown),
                                 held_from_creators=facts.flow.objects.creators_argument(flow.function, key),
                                 **evidence(fact.eval_sites, f"`{key}` is put in eval mode here"))
                    break
                else:
                    report = self._left_by_another_method(facts, flow, step, trained_here)
                    if report is not None:
                        yield report
            for step in flow.helper_steps.values():
                key = step.trained_key
                fact = step.models.get(key)
                # The helper's forward reaches its backward with the graph: `key` is trained there, unless the
                # file freezes its parameters (a teacher whose targets feed the student's loss).
                if fact is None or not self._trained_in_eval(key, fact, step.models, trained | {key}) \
                        or key in facts.frozen_models:
                    continue
                if complete and optimized and not key_prefixes(key) & optimized and not _part_of(step, key, optimized) \
                        and (optimized == {MADE_TENSORS} or _hands_an_optimizer_by_name(facts, step.call)
                             or _steps_the_globals(facts, step.call)):
                    # `train(loader, gen, vgg, opt_g)` with `opt_g = Adam(gen.parameters())`: the helper steps the
                    # generator; `vgg`, in eval mode on purpose, only computes a perceptual loss. (Or every optimizer
                    # here steps plain tensors, `Adam([image])`: style transfer trains no model at all.)
                    continue
                caller = f"{step.function.name}()" if step.function is not None else "the module-level script"
                note = f"{caller} calls `{step.callee.shown_name}()` here with `{key}` possibly in eval mode"
                proof = evidence(fact.eval_sites, f"`{key}` is put in eval mode here")
                report = helper_report(facts, step, _message(key, fact), note, proof)
                if report is not None and report.elsewhere is None:
                    report = replace(report, held_from_creators=facts.flow.objects.creators_argument(flow.function, key))
                if report is not None:
                    yield report

    @staticmethod
    def _left_by_another_method(facts: FileFacts, flow, step, trained: set[str]) -> Report | None:
        """A public training method of an object that never calls `train()` on its model, while another
        public method may leave it in eval mode: `predict()` then `fit()` trains in eval mode."""
        # (a model of unknown mode is taken to train from the step on: the optimizer step after the backward
        # holds it when the backward itself does not yet)
        candidates = dict(step.models)
        for other in flow.steps.values():
            for key, fact in other.models.items():
                candidates.setdefault(key, fact)
        for key, fact in sorted(candidates.items()):
            if fact.eval_sites or fact.havoc or not fact.train_sites <= facts.flow.assumed_sites \
                    or key not in trained or not key.startswith("self.") or _other_model_trained(key, step) \
                    or key in facts.frozen_models \
                    or Dependence.INDEPENDENT in (fact.dependence,
                                                  facts.flow.objects.attribute_dependence(flow.function, key)):
                continue  # (only "trained here, so in train mode": no train() call of its own; and by this step)
            where = facts.call_sites.get(step.call)
            if where is not None and runs_only_in_training(where.site, key, step.call):
                continue  # `if self.model.training: loss.backward()`: never in eval mode
            from_callers = facts.flow.mode_from_callers(flow.function, key,
                                                        step_phase(facts.flow, flow.function, step.phases))
            if from_callers is not None and from_callers.definitely_train:
                continue  # (the callers of this pass put it in training mode first: `fit()` calls `run(b, opt)`)
            left = facts.flow.objects.left_in_eval(flow.function, key)
            if left is None:
                continue
            method, site = left
            if _reference_kept_in_eval(facts, flow, key, site):
                continue
            users = facts.flow.objects.users_elsewhere(flow.function, key)
            key = shown_attribute(facts, flow.function, key)
            leaver = "the constructor leaves it" if method == "__init__" else f"`{method}()` may leave it"
            message = (f"`{key}` may be in eval mode here: {leaver} in eval mode, and "
                       f"`{flow.function.name}()` never calls `{key}.train()` before training: training runs with "
                       f"Dropout off and BatchNorm statistics frozen; call `{key}.train()` before the training loop")
            return Report(step.call, message, stmt=where.site.stmt if where else None, users_elsewhere=users,
                          **evidence(frozenset({site}), f"`{method}()` puts `{key}` in eval mode here"))
        return None

    @staticmethod
    def _trained_in_eval(key: str, fact, models: dict, trained: set[str]) -> bool:
        if not fact.eval_sites or fact.havoc or _parent_reported(key, models):
            return False
        if fact.dependence is Dependence.INDEPENDENT:
            return False  # no Dropout or BatchNorm at any depth: the mode changes nothing (RULES §3)
        # A model kept in eval on purpose (a teacher, a frozen encoder) is not trained here: trained
        # models are optimized, put in train() explicitly, or feed the backward with their graph.
        return key in trained or any(is_train_site(s) for s in fact.train_sites)


def _forwards_ran_in_training_mode(flow, key: str, step) -> bool:
    """A `loss.backward()` of its own after every forward of the model here whose output reaches a backward
    ran with it surely in training mode (`tgn = tgn.train()` at the top of an inner loop, the backward after
    that loop, which may not have run): Dropout and BatchNorm act at the forward, and the mode at the
    backward itself changes nothing. (A helper that steps is judged by what it runs.)"""
    if not (type(step.call.func) is cst.Attribute and step.call.func.attr.value == "backward"):
        return False
    feeding = [forward for forward in flow.all_forwards() if forward.trains_model and forward.key == key]
    return bool(feeding) and all(forward.mode.definitely_train for forward in feeding)


def _not_stepped_by_this_backward(facts: FileFacts, flow, key: str, step) -> bool:
    """The optimizers stepped on this backward's gradients update other models only (`opt_student` in the loop of
    the backward; `opt_teacher` steps in another loop): `key`, put in eval mode in this function, is a frozen
    partner of that phase, not a model this step trains."""
    stepped = facts.flow.stepped_by_this_backward(flow.function, facts.call_sites.get(step.call))
    return stepped is not None and not any(same_or_nested(key, part) or same_or_nested(part, key)
                                           for part in step.named_as_followed(stepped)) \
        and _eval_set_here(facts, step.models[key], flow.function)


def _reference_kept_in_eval(facts: FileFacts, flow, key: str, site) -> bool:
    """`self.model_old = deepcopy(self.model)` then `self.model_old.eval()` in the method that leaves it in eval
    mode, and a training method that puts its own model in `train()` but never this one: a reference (the
    previous task's model, a teacher) made in eval mode on purpose, not a model a validation forgot to switch
    back (a validation does not bind the model it validates)."""
    where = facts.call_sites.get(site) if type(site) is cst.Call else None
    at = facts.locate(site) if where is not None else None
    if at is None:
        return False
    method = where.site.function
    if not any(assign.site.function is method and dotted(assign.target) == key
               and (made := facts.locate(assign.node)) is not None and made[:2] < at[:2]
               for assign in facts.collector.attribute_assigns):
        return False
    switched = [(call.site.function, dotted(call.node.func.value)) for call in facts.collector.calls
                if type(call.node.func) is cst.Attribute and call.node.func.attr.value == "train"]
    return not any(part is not None and same_or_nested(part, key) for _function, part in switched) \
        and any(function is flow.function and part is not None and not same_or_nested(part, key)
                for function, part in switched)


def _other_model_trained(key: str, step) -> bool:
    """The backward's loss is seen to come from other models only (`model_1`'s, in a notebook that
    trained and evaluated `model_0` above): `key`, part of none of them, is not what this step trains."""
    reached = step.reached
    return bool(reached) and not any(same_or_nested(key, r) for r in reached)


def _part_frozen_after_train(facts: FileFacts, fact, step) -> bool:
    """`self.train()` and then `self.encoder.eval()` (or `if self.encoder.frozen: self.encoder.eval()`; or the
    whole model, `if args.fixed_network: model.eval()`), both in the training function before the loop of its
    step: a part of the model kept in eval mode on purpose (frozen BatchNorm statistics), not a validation that
    forgot to switch back. The parts of a list of modules are
    its elements: `for m in nets: m.train()`, then `nets[-1].eval()` (a teacher kept in the same list)."""
    if not fact.eval_sites:
        return False
    switches = [(site, _switched_whole(site)) for site in _train_calls_in(facts, step.function)]
    here = facts.locate(step.call)
    stepping = facts.call_sites.get(step.call)
    step_loops = set(loops_around(stepping))
    for site in fact.eval_sites:
        where = facts.call_sites.get(site) if type(site) is cst.Call else None
        if where is None or where.site.function is not step.function or here is None:
            return False
        part = _part_name(site.func.value)
        at = facts.locate(site)
        # (in the loop that trains, only right after the `train()` of the whole in the same block, each pass: `self.
        # train(); self.fn.eval()` at the top of an epoch; not a validation of that part between steps)
        in_step_loop = bool(step_loops & set(where.site.guards))
        if part is None or at is None or at[:2] > here[:2] or not any(
                key is not None and (part == key or part.startswith((key + ".", key + "[].")))
                and facts.locate(train.node)[:2] < at[:2] and _on_the_same_path(facts, train, site)
                and (not in_step_loop or (train.site.guards == where.site.guards and key != part))
                for train, key in switches):
            return False
    return True


def _on_the_same_path(facts: FileFacts, train, site: cst.Call) -> bool:
    """Does the `eval()` at `site` run after the `train()` call on its path: inside every `if` branch the
    `train()` is in (not `if mode == "train": net.train()` beside `elif mode == "val": net.eval()`)?"""
    for guard in train.site.guards:  # (a loop around the `train()` ends before the `eval()` after it)
        branch = guard.body if type(guard) is cst.If else guard if type(guard) is cst.Else else None
        if branch is not None and not any(node is site for node in iter_nodes(branch)):
            return False
    return True


def _frozen_beside_the_trained(facts: FileFacts, key: str, fact, step) -> bool:
    """`self.teacher.eval()` beside `self.student.train()`, in one block of the training function before its
    step: the author sets the pair's modes together, the teacher frozen on purpose (distillation, a fixed
    feature extractor). So is `critic.eval()`, the loop, then `critic.train()` in that block after the step:
    frozen for that loop and restored (an image inverted through it). Asked only where no optimizer in sight is
    seen to step the teacher."""
    here = facts.locate(step.call)
    if not fact.eval_sites or here is None:
        return False
    trains = [(site, dotted(site.node.func.value)) for site in _train_calls_in(facts, step.function)]
    for site in fact.eval_sites:
        where = facts.call_sites.get(site) if type(site) is cst.Call else None
        at = facts.locate(site)
        if where is None or where.site.function is not step.function or at is None or at[:2] > here[:2] \
                or dotted(site.func.value) != key:
            return False
        if not any(train.site.guards == where.site.guards and other is not None and (
                (not same_or_nested(key, other) and not same_or_nested(other, key))
                or (other == key and facts.locate(train.node) is not None and facts.locate(train.node)[:2] > here[:2]))
                for train, other in trains):
            return False
    return True


def _train_calls_in(facts: FileFacts, function) -> list:
    """The call sites of a plain `x.train()` in the function."""
    return [site for site in facts.collector.calls_made_in(function)
            if type(site.node.func) is cst.Attribute and site.node.func.attr.value == "train" and not site.node.args]


def _switched_whole(site) -> str | None:
    """What a `train()` call switches as a whole: its receiver, or for the variable of a loop over a container
    (`for module in module_list: module.train()`) the container's elements, "module_list[]"."""
    receiver = site.node.func.value
    name = dotted(receiver)
    if type(receiver) is cst.Name:
        for guard in reversed(site.site.guards):
            if type(guard) is cst.For and type(guard.target) is cst.Name and guard.target.value == name:
                container = dotted(guard.iter)
                return f"{container}[]" if container is not None else name
    return name


def _part_name(receiver: cst.BaseExpression) -> str | None:
    """The dotted name of a switched part; an element picked by a constant index (`nets[-1]`, `nets["t"]`)
    is a part of the container's elements, "nets[].-1" (so both `nets.train()` and a loop switching each
    element cover it)."""
    if type(receiver) is cst.Subscript and len(receiver.slice) == 1 and type(receiver.slice[0].slice) is cst.Index \
            and literal_value(receiver.slice[0].slice.value) is not NOT_LITERAL:
        container = dotted(receiver.value)
        return f"{container}[].{code_of(receiver.slice[0].slice.value)}" if container is not None else None
    return dotted(receiver)


def _toggled_around_step(facts: FileFacts, key: str, fact, step) -> bool:
    """`disc.eval()`, the generator's loss back-propagated through it, then `disc.train()` for its own update,
    all in one pass of the training loop: the author scopes the critic's eval mode to this part of the step
    (a validation that forgot to switch back has no `train()` right after the step in the same pass)."""
    here = facts.call_sites.get(step.call)
    at = facts.locate(step.call)
    if here is None or at is None or not fact.eval_sites:
        return False
    loops = loops_around(here)
    if not loops:
        return False
    loop = loops[-1]  # (the innermost loop around the step)

    def in_pass(site) -> bool:
        where = facts.call_sites.get(site) if type(site) is cst.Call else None
        return where is not None and where.site.function is step.function and loop in where.site.guards

    for site in fact.eval_sites:
        place = facts.locate(site) if type(site) is cst.Call else None
        if not in_pass(site) or place is None or place[:2] > at[:2] or dotted(site.func.value) != key:
            return False
    return any(type(call.node.func) is cst.Attribute and call.node.func.attr.value == "train" and not call.node.args
               and dotted(call.node.func.value) == key and in_pass(call.node)
               and (after := facts.locate(call.node)) is not None and after[:2] > at[:2]
               for call in facts.collector.calls)


def _gradients_measured_in_eval(facts: FileFacts, flow, fact, step) -> bool:
    """`model.eval()` in this function, then `loss.backward()`, and no optimizer step here: gradients measured
    in eval mode on purpose (Fisher information, importance scores, a sample's gradient for selection),
    nothing trained. A training step that follows elsewhere is another finding."""
    function = step.function
    if function is None or any(s.kind == "step" for s in flow.steps.values()):
        return False
    if any((key := value_key(arg.value)) is not None and facts.flow.is_optimizer(key) for arg in step.call.args):
        return False  # `backward_and_step(loss, optimizer)`: a helper handed the optimizer steps it
    if step.callee is not None and step.callee.trains:
        return False  # `optimizer.backward_and_step(loss)`: the wrapper steps the optimizer it holds
    return _eval_set_here(facts, fact, function)


def _no_update_follows(facts: FileFacts, flow, step) -> bool:
    """The function steps optimizers, but none in a loop around this backward nor after it: the backward
    is for gradients someone reads (Grad-CAM in a notebook that also trains), not for an update."""
    updates = [s for s in flow.steps.values() if s.kind == "step"]
    here = facts.call_sites.get(step.call)
    if not updates or step.kind != "backward" or here is None:
        return False
    at = facts.locate(step.call)
    loops = set(loops_around(here))
    for update in updates:
        where = facts.call_sites.get(update.call)
        if where is None:
            return False
        if loops & set(where.site.guards):
            return False  # an update in the same loop (every k batches, or after the inner loop)
        after = facts.locate(update.call)
        if at is None or after is None or after[:2] > at[:2]:
            return False  # an update later on
    return True


def _frozen_features_protocol(facts: FileFacts, key: str, fact, step) -> bool:
    """Linear probing on frozen features: the file freezes the model's parameters, and the training function
    itself puts it in eval before its loop, so that BatchNorm statistics of the frozen part stay as they are
    while the head trains. (A validation's `eval()` inside the loop, or a helper's, is still reported.)"""
    if key.split(".")[0] not in facts.frozen_models and not any(key.startswith(f + ".") or key == f
                                                                  for f in facts.frozen_models):
        return False
    return _eval_set_here(facts, fact, step.function, set(loops_around(facts.call_sites.get(step.call))))


def _eval_set_here(facts: FileFacts, fact, function, outside: set = frozenset()) -> bool:
    """Is every `eval()` that reaches the step a call in `function` itself, in none of the loops `outside`?"""
    for site in fact.eval_sites:
        where = facts.call_sites.get(site) if type(site) is cst.Call else None
        if where is None or where.site.function is not function or outside & set(where.site.guards):
            return False
    return bool(fact.eval_sites)


def _message(key: str, fact) -> str:
    return (f"`{key}` may still be in eval mode here ({_describe(fact.eval_sites)}, no `{key}.train()` since): "
            f"training runs with Dropout off and BatchNorm statistics frozen; call `{key}.train()` after evaluating")


def _train_at_loop_top(site, key: str) -> NodeFix | None:
    loops = loops_around(site)
    if loops and isinstance(loops[-1].body, cst.IndentedBlock) and loops[-1].body.body:
        return NodeFix(f"Call `{key}.train()` at the start of each training iteration",
                       (NodeEdit(loops[-1].body.body[0], f"{key}.train()", "line_before"),), applicability="unsafe")
    return None


def _parent_reported(key: str, models: dict) -> bool:
    parts = key.split(".")
    return any(models.get(".".join(parts[:i])) is not None and models[".".join(parts[:i])].eval_sites
               for i in range(1, len(parts)))


def _describe(sites) -> str:
    for site in sites:
        if isinstance(site, RemoteSite):
            return f"set by `{site.text}` in {os.path.basename(site.path)}"
    for site in sites:
        return f"set by `{code_of(site)}` earlier"
    return "set earlier"


def _hands_an_optimizer_by_name(facts: FileFacts, call: cst.Call) -> bool:
    """Does the call hand the helper a name bound to an optimizer, or named like one (`train(..., opt_g)`)?
    (What it steps is read from the optimizers this scope builds, `complete` in the caller.)"""
    return any(type(arg.value) is cst.Name and facts.flow.is_optimizer(arg.value.value) for arg in call.args)


def _part_of(step, key: str, owners: set[str]) -> bool:
    """Is `key` held by one of `owners` there (`policy = ActorCritic(actor, critic)`: `policy.actor` is `actor`)?"""
    return any(target == key and key_prefixes(name) & owners for name, target in step.aliases.items())


def _steps_the_globals(facts: FileFacts, call: cst.Call) -> bool:
    """Does the helper called (`train(epoch)`) step only module-level optimizers it reads (`optimizer =
    Adam(student.parameters())` under `__main__`)? (What they step is read from the module level's
    optimizers, `complete` in the caller.)"""
    return facts.flow.steps_module_optimizers(facts.flow.callee_of(call))
