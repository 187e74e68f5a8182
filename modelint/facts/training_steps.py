"""Training steps: what `loss.backward()`, `optimizer.step()` and calls that run an update do to the
abstract state.

- a `TrainingStep` records every model's mode (and the grad mode) where the step runs;
- the forwards whose graphs a backward reaches are the models it trains; a model whose mode
  we do not know, trained here, is in training mode from here on (training it in eval mode
  would be the bug, so that is what the author means);
- a call we cannot see into, handed an optimizer and a loss with its graph
  (`take_optimisation_step(optimizer, net, loss)`), runs an update, unless the project
  index says that function trains nothing (`save_checkpoint(epoch, model, optimizer, loss, path)`).

Mixed into the interpreter's call effects (modelint.facts.calls).
"""

from __future__ import annotations

from dataclasses import replace

import libcst as cst

from modelint.facts.uses import DETACHED, FED, GRAPH, NONE, OPAQUE, TRAIN, graph_handed_to_update
from modelint.facts.lattice import ENTRY_MODE
from modelint.facts.names import key_prefixes, value_key
from modelint.facts.records import TrainingStep, is_the_loss
from modelint.facts.state import State
from modelint.summary import FunctionSummary


class TrainingSteps:
    """Mixed into CallEffects: `self.flow`, `self.out`, `self.uses`, `self.tag`, `self.follows`,
    `self._module_receiver`."""

    def _updates_with(self, call: cst.Call, state: State) -> bool:
        """Does the call run an update step on what it is handed: an optimizer and a value that carries a
        forward's graph (the loss itself when a model comes with them: `save_checkpoint(model, optimizer,
        metrics)` saves, `take_optimisation_step(optimizer, net, loss)` steps)?"""
        if not self._hands_an_optimizer(call) or self._yields_the_loss(call):
            return False
        origins = [origin for arg in call.args for origin in self.uses.expression(arg.value, state.values)]
        if not graph_handed_to_update(origins, self._hands_a_model(call, state)):
            return False
        qualified = self.flow.imports.qualify(call.func)
        if qualified is None or self.flow.imports.is_torch_name(qualified):
            return True
        index = self.flow.index
        if index is None:
            self.flow.unresolved.add(qualified)  # (another file of the project may say what it does)
            return True
        # A function of another file of the run that trains nothing (`util.save_checkpoint(epoch, model,
        # optimizer, loss, path)` saving state dicts): no update step.
        return not index.names_function(qualified, self.flow.path) \
            or bool((summary := index.resolve(qualified, self.flow.path)) is not None and summary.trains)

    def _yields_the_loss(self, call: cst.Call) -> bool:
        """`with amp.scale_loss(loss, optimizer) as scaled_loss:`: no update itself; its body back-propagates."""
        site = self.flow.site_of_call.get(call)
        stmt = site.site.stmt if site is not None else None
        return type(stmt) is cst.With and any(item.item is call and item.asname is not None for item in stmt.items)

    def loss_yielded(self, item: cst.BaseExpression, state: State):
        """`with amp.scale_loss(loss, optimizer) as scaled_loss:`: a context manager handed the loss and the
        optimizer yields that loss (scaled) to back-propagate; what it carries, for the `as` name."""
        if type(item) is not cst.Call or update_call(self.flow, self.out.function, item) is None:
            return NONE
        return frozenset().union(*(self.uses.expression(arg.value, state.values) for arg in item.args))

    def _hands_a_model(self, call: cst.Call, state: State | None) -> bool:
        return hands_a_model(self.flow, self.out.function, call, state)

    def _hands_an_optimizer(self, call: cst.Call) -> bool:
        return hands_an_optimizer(self.flow, call)

    def step(self, call: cst.Call, kind: str, state: State, receiver: str | None, via=None,
             callee: FunctionSummary | None = None, trained_key: str | None = None,
             backpropagated: list | None = None) -> None:
        table = self.out.helper_steps if via is not None else self.out.steps
        slot = (call, via) if via is not None else call
        seen = table.get(slot)
        region = state.grad_free_values.get(receiver) if receiver is not None and kind == "backward" else None
        if seen is None:
            table[slot] = TrainingStep(call, kind, dict(state.models), state.grad, self.out.function,
                                       receiver, region, via=via, callee=callee, trained_key=trained_key,
                                       aliases=dict(state.aliases))
        else:
            for key in seen.models.keys() | state.models.keys():
                seen.models[key] = seen.models.get(key, state.fact(key)).join(state.fact(key))
            seen.grad = seen.grad.join(state.grad)
            seen.aliases = {name: key for name, key in seen.aliases.items() if state.aliases.get(name) == key}
            if region is None:
                seen.grad_free_region = None
        if self.tag:
            table[slot].phases.add(self.tag[0][1])
        if kind == "backward" and via is None:
            reached = self._reaching(call, state, backpropagated)
            if backpropagated is not None:  # (`optimizer.backward_and_step(loss)`, a wrapper's method: the loss trains)
                self.uses.use(reached, TRAIN)
                self.uses.use(reached, GRAPH, level=OPAQUE)
            table[slot].reached.update(forward.key for token, level in reached if level != DETACHED
                                       and (forward := self.out.forwards.get(token)) is not None)
            # (a helper handed the loss, `self.backward(loss)`, steps the optimizer itself: its summary trains)
            self._trained_here(call, state, reached, stepped=backpropagated is not None)

    def _reaching(self, call: cst.Call, state: State, backpropagated: list | None = None):
        """The origins of what `loss.backward()` (or `backward(loss)`, or a helper handed `backpropagated`)
        back-propagates."""
        if backpropagated is not None:
            reached = NONE
            for value in backpropagated:
                reached = reached | self.uses.expression(value, state.values)
            return reached
        func = call.func
        reached = self.uses.expression(func.value, state.values) if type(func) is cst.Attribute else NONE
        for arg in call.args:
            reached = reached | self.uses.expression(arg.value, state.values)
        return reached

    def _trained_here(self, call: cst.Call, state: State, reached, stepped: bool = False) -> None:
        """A model whose mode we do not know, trained here (its output reaches this backward with its graph,
        and the function steps an optimizer), is in training mode from here on: training it in eval mode
        would be the bug, so that is what the author means. The backward stands as the site; summaries do
        not hand it to callers as an effect (nothing was switched)."""
        if not stepped and not self.flow.steps_optimizer(self.out.function):
            return
        optimized = self.flow.optimized_here(self.out.function)
        for token, level in reached:
            forward = self.out.forwards.get(token)
            if forward is None or level == DETACHED or forward.grad_free:
                continue
            key = forward.key
            if optimized is not None and not optimized & key_prefixes(key):
                continue  # the optimizers built here step something else (an explainer's masks, a probe)
            fact = state.fact(key)
            if fact.undecided:
                # Trained from data (its input is no other forward's output, as a loss's is): it has weights,
                # a module whatever built it (see ModeFlow.trained_models); a loss function is no proof.
                # (Also a model built here on one path and loaded whole on another, `torch.load` keeping the
                # mode it was saved in: the training here says which.)
                fed = FED in self.uses.uses.get(token, ())
                if fed and fact == ENTRY_MODE and (not self.flow.modules.is_module_name(key, self.out.function)
                                                   or is_the_loss(self.uses, token)):
                    # `self.loss_fn(pred, y)`, a callable handed in, fed the model's output: a loss (annotated
                    # `crit: nn.Module` too, when it compares the output with data and feeds no other forward:
                    # `crit(net(x), y)`, not a decoder fed its encoder's output beside the target tokens)
                    continue
                certain = not fed or (fact != ENTRY_MODE and fact.certain)
                state.put(key, replace(fact, certain=certain).switched("train", call))
                self.flow.assumed_sites.add(call)
        for key in _innermost(optimized or ()):
            # `Adam(self.parameters())` here, the loss from a callable we cannot see into (`loss_fn(*batch)`):
            # the optimizer shows what is trained (a module's parameters, not tensors named one by one).
            if state.fact(key).undecided and self.follows(key, state) and self._module_receiver(state, key):
                state.put(key, replace(state.fact(key), certain=True).switched("train", call))
                self.flow.assumed_sites.add(call)


def _innermost(keys) -> list[str]:
    """`{"model", "model.encoder"}` (from `model.encoder.parameters()`) -> `["model.encoder"]`."""
    return [key for key in keys if not any(other.startswith(key + ".") for other in keys)]


def update_call(flow, function, call: cst.Call) -> str | None:
    """For the output uses: "optimizer" when a call we cannot see into is handed an optimizer, "optimizer
    and model" when a model comes with it (`take_optimisation_step(optimizer, net, loss)`). (A function of
    the flow and the function analysed, not of an interpreter: the output uses keep it, and an interpreter
    held by what it holds would keep the file's tree alive until the cycle collector runs.)"""
    if call in flow.local_calls or not hands_an_optimizer(flow, call):
        return None
    return "optimizer and model" if hands_a_model(flow, function, call, None) else "optimizer"


def hands_a_model(flow, function, call: cst.Call, state: State | None) -> bool:
    """Is a model among the call's arguments (one the state tracks, or a name the file holds a module in)?"""
    for arg in call.args:
        key = value_key(arg.value)
        if key is not None and ((state is not None and state.tracks(state.canonical(key)))
                                or flow.modules.is_module_name(key, function)):
            return True
    return False


def hands_an_optimizer(flow, call: cst.Call) -> bool:
    """Is an optimizer among the call's arguments (`step_fn(loss, optimizer)`)?"""
    for arg in call.args:
        key = value_key(arg.value)
        if key is not None and flow.is_optimizer(key):
            return True
    return False
