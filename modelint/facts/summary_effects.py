"""What a call of a function whose summary is known does where it is called.

The callee's summary speaks of its parameters (`model`, `args[]`, `self.net`); at the call
they are bound to the caller's keys (`evaluate(self.model, loader)`: `model` is
`self.model`), and then, in the caller's state:
- each forward the callee runs on a parameter is a forward of the caller's model, judged
  with the caller's mode and grad mode (or, when the callee returns the output, the
  call's value is that output);
- each training step on a parameter is a training step of the caller's model;
- each mode the callee leaves on a parameter (`eval`, `train`, `may-train`, unknown) is
  the caller's model's mode after the call.
"""

from __future__ import annotations

from dataclasses import replace

import libcst as cst

from modelint.facts.uses import DETACHED
from modelint.facts.lattice import join_all, ENTRY_MODE, ModeFact
from modelint.facts.walk import iter_nodes
from modelint.facts.modules import Dependence
from modelint.facts.names import key_root, unwrapped_key, value_key
from modelint.facts.phases import argument_phase
from modelint.facts.reaching_calls import call_runs
from modelint.facts.state import State
from modelint.summary import FunctionSummary
from modelint.textutil import code_of


class SummaryEffects:
    """Mixed into the interpreter's call effects: `self.flow`, `self.out`, `self.tag`, `self.forward`,
    `self.step`, `self.havoc`."""

    def _phase_handed_on(self, summary: FunctionSummary, arguments: dict) -> str | None:
        """`run_phase(phase, loader, model)` in `def one_epoch(phase, ...)`: the parameter of this function the
        call hands on as the helper's phase parameter, which makes it this function's phase parameter too."""
        passed = arguments.get(summary.phase_param) if summary.phase_param is not None else None
        function = self.out.function
        if type(passed) is not cst.Name or function is None or passed.value not in function.param_set:
            return None
        if self.out.phase_param is None:
            self.out.phase_param = passed.value
        return passed.value if self.out.phase_param == passed.value else None

    def apply_summary(self, summary: FunctionSummary, call: cst.Call, state: State, self_receiver: str | None) -> None:
        arguments = arguments_of(summary, call)
        bound, inline = self._bind_arguments(summary, arguments, state, self_receiver)
        if summary.trains:
            self.out.trains = self.out.backward_in_helpers = True
        phase = _phase_passed(summary, arguments, self.out.function, self.constants)
        through = self._phase_handed_on(summary, arguments) if phase is None else None
        for use in summary.forwards:
            if phase is not None and use.phase_value is not None and use.phase_value != phase:
                continue  # run only for the other value of the helper's phase parameter
            if use.reached_when is not None and not call_runs(use.reached_when, summary.params, summary.is_method,
                                                              call, self.out.function):
                continue  # under an `if` on the helper's parameters that this call's arguments decide against
            # (handed this function's own phase parameter: run when it has that value, here as there)
            passes = ((through, use.phase_value),) if through is not None and use.phase_value is not None else None
            key = _rebind(use.param, bound, state)
            if key is None or (use.eval_site is not None and use.node is not None):
                continue  # (a helper of this file that sets eval() itself is judged with its callers' grad)
            if "." not in key and self.flow.names_a_transform(key, self.out.function):
                continue  # `render(encode, model, x)` with `encode = positional_encoding`: a function, no model
            # (a helper that switches the model to eval itself runs it in eval mode, whatever the caller's)
            fact = state.fact(key)
            if use.eval_site is not None:  # (and it is a module: the helper called `eval()` on it)
                fact = replace(fact.switched("eval", use.eval_site), certain=True)
            if use.node is not None:  # same file: what the helper's forward receives (runtime verify reads it)
                known = self.out.passed_modes.get(use.node)
                self.out.passed_modes[use.node] = fact if known is None else known.join(fact)
            if use.intent == "returned":
                # (the call's value is that output; met again on a loop's later pass: the modes join)
                slot = (call, self.tag) if self.tag else call
                recorded = self.out.forwards.get(slot)
                if recorded is not None and recorded.via is not None and recorded.key != key \
                        and fact.certain and not fact.entry and not fact.parameterless \
                        and (recorded.mode.entry or not recorded.mode.certain):
                    # (`answer(model, texts, tokenizer)` handing back what both ran: the call's value is the model's
                    # output rather than the tokenizer's, a value we know nothing of)
                    del self.out.forwards[slot]
                    recorded = None
                if recorded is None or recorded.via is not None:
                    if self_receiver is not None and use.param.startswith("self."):
                        use, key, fact = self._strongest_part(summary, phase, bound, state) or (use, key, fact)
                    self.forward(call, key, state, via=use, callee=summary, fact=fact, phase=passes)
            else:
                self.forward(call, key, state, via=use, callee=summary, helper=True, fact=fact, phase=passes)
                if use.given_back:
                    self.uses.given_back.add((call, self.tag) if self.tag else call)
        trained: list[str] = []
        # (what the helper itself puts in training mode: `model.train()`, then `helper.step(x)` training
        # `helper.net`, which here is `model` too, runs in that mode, not in the one the caller left)
        switched = {state.canonical(key) for param, effect in summary.effects.items() if effect == "train"
                    and (key := _rebind(param, bound, state)) is not None}
        for use in summary.steps:
            if phase is not None and use.phase_value is not None and use.phase_value != phase:
                continue  # (`loss.backward()` only when the helper is handed an optimizer, and this call hands none)
            key = _rebind(use.param, bound, state)
            if key is not None and state.canonical(key) in switched and use.param.split(".")[0] != key.split(".")[0]:
                continue
            if key is not None:
                self.step(call, "backward", state, None, via=use, callee=summary, trained_key=key)
                if through is not None and use.phase_value is not None:
                    self.out.helper_steps[(call, use)].phases.add(use.phase_value)
                trained.append(key)
        backpropagated = [arguments[name] for name in summary.backprops
                          if name in arguments and name not in summary.backprops_cut]
        if backpropagated and summary.trains and not summary.steps and any(
                level != DETACHED and token in self.out.forwards and not _computed_without_grad(self.out.forwards[token])
                for value in backpropagated for token, level in self.uses.expression(value, state.values)):
            # `backward(info["loss"])`, a helper back-propagating a loss this function computed: the backward
            # runs here, at the call (the models whose outputs reach it train in the mode they have here).
            # (Not a helper that only takes gradients, `autograd.grad(kl, params)`: no training step.)
            self.step(call, "backward", state, None, callee=summary, backpropagated=backpropagated)
        effects, sites = _effects_for(summary, phase)
        for param_key, effect, key in _effect_targets(effects, bound, _listed_models(arguments)):
            key = state.canonical(key)  # (`nets["teacher"]` for `nets = {"teacher": teacher}`: `teacher`)
            site = sites.get(param_key)
            current = state.fact(key)
            if effect == "unknown" or site is None:
                # (`model.fit()` leaving `self.net` in an unknown mode: `model`, which runs it, is in none either)
                self.havoc(state, key, part=_module_part(self.flow, summary, param_key))
                continue
            if "eval" in effect:
                changed = current.switched("eval", site)
            else:
                # A training routine's train() is for training, not deliberate sampling (MC dropout):
                # the call of the routine itself stands for it.
                changed = current.switched("train", call if summary.trains else site)
            if effect.startswith("may-"):
                changed = changed.join(current)
            else:
                changed = replace(changed, certain=True)  # the helper switched it: it is a module
            state.put(key, changed)
        for key in trained:
            # A model of unknown mode that the helper trains (`self._train_epoch()` stepping an optimizer
            # over `self.model`) is in training mode after it, as a model trained here is (see
            # `_trained_here`); the call stands as the site. Not the elements of a container we cannot see
            # into (an explainer's `self.gates[i]`: masks and norms whose mode may change nothing).
            if summary.trains and state.fact(key) == ENTRY_MODE and "[" not in key:
                state.put(key, ModeFact(certain=False).switched("train", call))
                self.flow.assumed_sites.add(call)
        for key in inline:
            state.forget(key)

    def parts_run_by_forward(self, state: State, method: str | None):
        """`self.forward(x)` (or `self(x)`) in a method of a class whose own `forward` runs only parts of it, each
        put in eval mode here (`self.model.eval()`, then `self.forward(x)` running `self.model`): their mode, joined;
        None when unknown."""
        function = self.out.function
        cls = function.cls if function is not None and method in (None, "forward") else None
        parts = _parts_of_forward(self.flow, cls) if cls is not None else None
        if not parts or not all(state.tracks(part) for part in parts):
            return None
        facts = [state.fact(part) for part in sorted(parts)]
        return join_all(facts) if all(fact.definitely_eval for fact in facts) else None

    def _strongest_part(self, summary: FunctionSummary, phase, bound: dict[str, str], state: State):
        """`model.score(x)`, a method of the model's class that runs several of its parts (`self.embed`,
        `self.bn`, `self.drop`) and returns what they compute: the call's output depends on the mode as much as
        its most mode-dependent part with weights does, and that part is the forward the call stands for
        (use, key, fact); None when the method returns no part's output."""
        parts = []
        for use in summary.forwards:
            if use.intent != "returned" or not use.param.startswith("self.") or use.eval_site is not None \
                    or (phase is not None and use.phase_value is not None and use.phase_value != phase):
                continue
            key = _rebind(use.param, bound, state)
            part = key.rpartition(".")[2] if key is not None and "[" not in key else None
            if key is not None and not (fact := state.fact(key)).parameterless \
                    and not (part and self.flow.modules.attribute_parameterless(part)):
                parts.append((use, key, fact, self.flow.modules.part_refined(key, fact.dependence)))
        if not parts:
            return None
        use, key, fact, _ = max(parts, key=lambda part: part[3])  # (the first of the most dependent)
        return use, key, fact

    def _bind_arguments(self, summary: FunctionSummary, arguments: dict[str, cst.BaseExpression], state: State,
                        self_receiver: str | None) -> tuple[dict[str, str], list[str]]:
        """Parameter -> the caller's key for it; models built inline as arguments get a temporary key."""
        bound: dict[str, str] = {name: name for name in summary.globals}
        inline: list[str] = []
        for name, value in arguments.items():
            arg_key = unwrapped_key(value)
            if arg_key in ("None", "True", "False"):
                continue  # (`show(None, tokens, attn_data=cached)`: no model handed, the helper runs none)
            if arg_key is not None:
                bound[name] = state.canonical(arg_key)
            elif type(value) is cst.Call:  # `evaluate(Net(), loader)`: a fresh module
                fresh = self.flow.provenance.built_here(value, state, self.out.function)
                if fresh is not None:
                    key = code_of(value)  # named as written: "SmallResNet()"
                    state.models[key] = fresh
                    if fresh.origin and fresh.dependence is Dependence.UNKNOWN and self.flow.index is None:
                        self.flow.unresolved.add(fresh.origin)  # (the index may know that class's layers)
                    bound[name] = key
                    inline.append(key)
        if self_receiver is not None:
            bound["self"] = self_receiver
        return bound, inline


def _phase_passed(summary: FunctionSummary, arguments: dict[str, cst.BaseExpression], caller=None,
                  constants=None):
    """The literal the call passes for the helper's phase parameter (`eval=True`, or the value of the
    caller's own phase loop variable), if it passes one."""
    if summary.phase_param is None:
        return None
    return argument_phase(summary.phase_effects, arguments.get(summary.phase_param), summary.phase_default,
                          caller, constants)


def arguments_of(summary: FunctionSummary, call: cst.Call) -> dict[str, cst.BaseExpression]:
    """Parameter name -> the expression the call passes (up to the first `*args`)."""
    return bind_arguments(summary.params, summary.is_method, call)


def bind_arguments(params: list[str], is_method: bool, call: cst.Call) -> dict[str, cst.BaseExpression]:
    """Parameter name -> the expression `call` passes for it (up to the first `*args`); a method's `self`
    is bound by its receiver."""
    keyword_only = getattr(params, "keyword_only", 0)  # (see scopes.Params)
    params = list(params)[:len(params) - keyword_only]
    if is_method and params and params[0] in ("self", "cls"):
        params = params[1:]
    out: dict[str, cst.BaseExpression] = {}
    positional = 0
    for arg in call.args:
        if arg.star:
            break
        if arg.keyword is not None:
            out[arg.keyword.value] = arg.value
        elif positional < len(params):
            out[params[positional]] = arg.value
            positional += 1
    return out


def _listed_models(arguments: dict[str, cst.BaseExpression]) -> dict[str, list[str]]:
    """Parameter -> the names a list or tuple written in the call gives it (`set_mode("eval", [g, d])`)."""
    out: dict[str, list[str]] = {}
    for name, value in arguments.items():
        if type(value) in (cst.List, cst.Tuple):
            keys = [value_key(e.value) for e in value.elements if type(e) is not cst.StarredElement
                    and not (type(e.value) is cst.Name and e.value.value == "None")]
            if keys and None not in keys:
                out[name] = keys
    return out


def _module_part(flow, summary: FunctionSummary, param_key: str) -> bool:
    """Is `param_key` (`self.net`) a module its method's class of this file holds?"""
    function = flow.local_functions.get(summary.qualname) if summary.path == flow.path else None
    return function is not None and function.cls is not None and param_key.startswith("self.") \
        and param_key.count(".") == 1 and flow.modules.is_module_name(param_key, function)


def _effect_targets(effects: dict, bound: dict, listed: dict[str, list[str]]):
    """(the summary's key, its effect, the caller's key) for each effect: `models[]`, what the helper leaves
    on each element of a list parameter, reaches every model the call lists (`[enc, head]`)."""
    # Parents before their parts: what the helper may do to `self` as a whole (havoc) comes first, and what
    # it surely leaves on `self.model` refines it; never the dict's order, which follows joins of states.
    for param_key, effect in sorted(effects.items(), key=lambda item: (item[0].count("."), item[0])):
        root = key_root(param_key)
        element = f"{root}[]"
        if param_key.startswith(element) and root in listed:
            for model in listed[root]:
                yield param_key, effect, model + param_key[len(element):]
            continue
        key = _rebind(param_key, bound)
        if key is not None:
            yield param_key, effect, key


def _effects_for(summary: FunctionSummary, phase) -> tuple[dict, dict]:
    """The effects of this call: those of the phase it picks (`set_mode("eval", ...)`, a default it leaves
    as it is, an optimizer it hands or not), when it picks one the helper's phases know; else all of them."""
    if phase is not None and phase in summary.phase_effects:
        return summary.phase_effects[phase]
    return summary.effects, summary.effect_sites


def _rebind(param_key: str, bound: dict[str, str], state: State | None = None) -> str | None:
    head = key_root(param_key)
    target = bound.get(head)
    if target is None:
        return None
    key = f"{target}{param_key[len(head):]}"
    return state.canonical(key) if state is not None else key


def _parts_of_forward(flow, cls) -> frozenset[str] | None:
    """The `self.<attr>` a class's own `forward` calls, when it calls nothing else of its own (once per class)."""
    cache = flow.__dict__.setdefault("_parts_of_forward", {})
    if cls not in cache:
        forward = cls.methods.get("forward")
        parts: set | None = set() if forward is not None else None
        for node in iter_nodes(forward.body) if forward is not None else ():
            func = node.func if type(node) is cst.Call else None
            if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self":
                if func.attr.value in cls.methods:
                    parts = None  # (a method of its own: what it runs is not read here)
                    break
                parts.add(f"self.{func.attr.value}")
        cache[cls] = frozenset(parts) if parts else None
    return cache[cls]


def _computed_without_grad(forward) -> bool:
    """An output computed under no_grad, here or in the helper that returns it (`protos = class_prototypes(enc,
    x)`): it carries no graph, so a loss built on it trains nothing that made it."""
    return forward.grad.definitely_free or (forward.via is not None and forward.via.grad == "free")
