"""What a function of this file starts with, from the calls of it that this file shows: autograd at its
entry (on unless every call shows it under no_grad; a Lightning evaluation hook runs under no_grad; a private
method nobody here calls is a hook a base class elsewhere calls, in a grad mode we cannot see), the modules
its parameters get, and the mode a private method's `self.<attr>` is in at every call (see CallGraph)."""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.base_shapes import grad_of_calls_by_bases
from modelint.facts.lattice import GRAD_ENABLED, GRAD_UNKNOWN, GradFact
from modelint.facts.phases import call_picks_other_phase
from modelint.facts.reaching_calls import call_reaches
from modelint.facts.regions import constructor_turns_grad_off, lexically_grad_free, module_turns_grad_off
from modelint.facts.scopes import FunctionInfo, Site
from modelint.facts.state import followed_parent
from modelint.facts.summaries import qualname


class CallerEntry:
    """Mixed into CallGraph: `self.call_sites`, `self._calls_of`, `self._local_callees`, `self.collector`,
    `self.modules`, `self.is_framework_hook()` and `self.syntactic_callers()` come from there."""

    def entry_grad(self, function: FunctionInfo | None, _seen: frozenset = frozenset(), phase: tuple = (),
                   reaching: Site | None = None) -> GradFact:
        """Autograd at a function's entry, from every call of it this file shows; enabled when none. With
        `phase` ((parameter, value),), only from the calls that pick that value of its phase parameter; with
        `reaching` (a statement's site in it), only from the calls whose arguments may run that statement."""
        if function is None:
            return GRAD_ENABLED
        if function.outer is not None and function.cls is None:
            sites = self.call_sites.get(nested_name(function), {})
        else:
            sites = self.call_sites.get(qualname(function), {})
        if phase:
            sites = {call: site for call, site in sites.items()
                     if not call_picks_other_phase(function, call, phase, site[0])}
        if reaching is not None:
            reached = {call: site for call, site in sites.items() if call_reaches(function, call, reaching, site[0])}
            sites = reached or sites  # (none: the statement runs for callers elsewhere, judged as without it)
        if self.is_framework_hook(function):
            return GradFact(free_sites=frozenset({function.node}))  # Lightning wraps it in no_grad
        switched_off = constructor_turns_grad_off(self, function.cls) if function.cls is not None \
            and function.name != "__init__" and function.outer is None else None
        if switched_off is not None:
            return GradFact(free_sites=frozenset({switched_off}))
        if not sites and function.cls is not None:
            by_bases = grad_of_calls_by_bases(self, function)  # a base elsewhere calls this hook of its template
            if by_bases is not None:
                return GradFact(free_sites=frozenset({function.node})) if by_bases else GRAD_ENABLED
        if not sites and _is_private_hook(function):
            return GRAD_UNKNOWN  # called by a base class elsewhere (a template method), in a grad mode we cannot see
        if not sites and function.name in ("forward", "__call__") and function.cls is not None \
                and self.modules.is_module_class(function.cls) and not any(
                    type(c.func) is cst.Attribute and c.func.attr.value == "eval" for c in function.cls.calls):
            # a module's own forward: whoever runs the module decides (`policy(obs)` in a loop); not one whose class
            # puts its parts in eval mode itself (`self.multi_sql.eval()` in the `full_forward` it runs): an
            # inference routine, run with autograd on unless its callers say otherwise
            return GRAD_UNKNOWN
        if not sites and function.outer is not None and function.cls is None and self._closure_handed_on(function):
            # A closure this file never calls, only hands on (`plot_with(sample_fn, n)`, a callback): whoever
            # calls it decides the grad mode (ffjord's samplers, run by its plotting helpers under no_grad).
            return GRAD_UNKNOWN
        handed = self._methods_handed_to_calls.get(function.name, ()) if not sites and function.cls is not None \
            and function.name not in ("forward", "__call__") else ()
        if handed and all(lexically_grad_free(self.imports, site.site, self.grad_wrappers)
                          or self._calls_what_it_is_handed_without_grad(site, arg) for site, arg in handed):
            # A bound method handed as a callback, only under no_grad (`sample_camera(data, self.labeler.generate)`
            # in a `with torch.no_grad():`), or to a helper of this file that calls it only there (`decode_all(
            # batches, self.predict)` running `choose(b)` in its own no_grad block): it runs there.
            return GradFact(free_sites=frozenset(site.site.stmt for site, _arg in handed))
        if not sites and self._called_only_in_lambdas(function):
            # Called only inside lambdas (`Evaluator(eval_func=lambda x, y: test(model, x, y))`): whoever
            # calls the lambda decides the grad mode, and a library's evaluator runs it under no_grad.
            return GRAD_UNKNOWN
        if not sites and (switched_off := module_turns_grad_off(self)) is not None:
            return GradFact(free_sites=frozenset({switched_off}))  # (imported first: autograd off since)
        if not sites or function in _seen:
            return GRAD_ENABLED
        result = None
        for caller, grad, _models in sites.values():
            if grad.unknown:
                grad = grad.at_entry(self.entry_grad(caller, _seen | {function}))
            result = grad if result is None else result.join(grad)
        return result

    def called_between_training_steps(self, function: FunctionInfo) -> bool:
        """Does a function of this file that trains call it outside no_grad (`fit()` calling `validate()` between
        its steps)? A training step needs autograd on, so that call records graphs whoever calls `fit()`.
        From the code alone (summaries ask before the callers' flows have run): the caller differentiates, itself
        or through a helper of this file it calls."""
        for call in self._calls_of.get(function, ()):
            site = self.site_of_call[call].site
            caller = site.function
            if caller is not None and caller is not function and self._differentiates(caller) \
                    and not lexically_grad_free(self.imports, site, self.grad_wrappers):
                return True
        return False

    def _differentiates(self, function: FunctionInfo) -> bool:
        if function.uses_gradients:
            return True
        return any(callee.uses_gradients for callee in self._callees_of.get(function, ()))

    @cached_property
    def _callees_of(self) -> dict:
        """function -> this file's functions it calls."""
        out: dict = {}
        for call, callee in self._local_callees.items():
            out.setdefault(self.site_of_call[call].site.function, set()).add(callee)
        return out

    def phase_never_picked(self, function: FunctionInfo | None, phase: tuple, reaching: Site | None = None) -> bool:
        """Is `function` called here, and does every call pick another value of its phase parameter than
        `phase` names (`run_epoch(model, opt, loader)` alone, for the `is_train=False` pass)? Then that
        pass runs nowhere in sight: what it would evaluate is no finding. With `reaching` (a statement's site),
        also when the calls of that pass all decide an `if` around it the other way (the evaluation call of
        `run_epoch(model, loader, optimizer=None, unlabeled=None)` never runs its `if unlabeled is not None:`)."""
        if function is None or not phase or phase[0][0] not in function.param_set \
                or (function.outer is not None and function.cls is None):
            return False
        sites = self.call_sites.get(qualname(function), {})
        return bool(sites) and not any(_runs_there(function, call, caller, phase, reaching)
                                       for call, (caller, _grad, _models) in sites.items())

    def caller_with_autograd(self, function: FunctionInfo | None, phase: tuple = (),
                             reaching: Site | None = None) -> tuple | None:
        """(caller, call) in this file whose call of `function` surely runs with autograd on (while another
        may run it under no_grad: `train()` validating under no_grad, `test()` without); with `phase`, among
        the calls that pick that value of its phase parameter; with `reaching`, among those that may run it."""
        if function is None or (function.outer is not None and function.cls is None):
            return None
        for call, (caller, grad, _models) in self.call_sites.get(qualname(function), {}).items():
            if not _runs_there(function, call, caller, phase, reaching):
                continue
            if grad.unknown:
                grad = grad.at_entry(self.entry_grad(caller, frozenset({function})))
            if grad.may_enabled and not grad.free_sites and not grad.unknown:
                return caller, call
        return None

    def entry_dependence(self, function: FunctionInfo | None, param: str, _seen: frozenset = frozenset()):
        """How much a parameter's model depends on the mode, from what every call of the function in this file
        hands it (`train(net, ...)` with `net = get_net()`, a Linear-only factory): INDEPENDENT only when every
        caller hands an independent one; UNKNOWN when any call hands something unknown, or there is no call."""
        from modelint.facts.modules import Dependence

        if function is None or function in _seen or param not in function.param_set:
            return Dependence.UNKNOWN
        cache = self.__dict__.setdefault("_entry_dependences", {})
        if not _seen and (function, param) in cache:
            return cache[function, param]
        found = self._entry_dependence(function, param, _seen)
        if not _seen:
            cache[function, param] = found
        return found

    def passed_at_calls(self, function: FunctionInfo, param: str) -> list[tuple]:
        """(caller, what the call hands `param` or None, the models at the call) for every call of the function
        this file shows."""
        from modelint.facts.summary_effects import bind_arguments

        return [(caller, bind_arguments(function.params, function.cls is not None, call).get(param), models)
                for call, (caller, _grad, models) in self.call_sites.get(qualname(function), {}).items()]

    def _entry_dependence(self, function: FunctionInfo, param: str, _seen: frozenset):
        from modelint.facts.modules import Dependence
        from modelint.facts.names import value_key

        found = None
        for caller, passed, models in self.passed_at_calls(function, param):
            key = value_key(passed) if passed is not None else None
            fact = models.get(key) if key is not None else None
            dependence = fact.dependence if fact is not None else Dependence.UNKNOWN
            if fact is None and type(passed) is cst.Call:  # `nll_epoch(MLPPlain(4, 8), loader)`: built right there
                built = self.modules.module_expression(passed)[0]
                dependence = built.dependence if built is not None else Dependence.UNKNOWN
            elif fact is None and type(passed) is cst.Name and self.local_reference(passed, caller) is not None:
                dependence = Dependence.INDEPENDENT  # `train(net, ...)` with `def net(X)`: a function has no mode
            if dependence is Dependence.UNKNOWN and key is not None and caller is not None and "." not in key:
                dependence = self.entry_dependence(caller, key, _seen | {function})
            found = dependence if found is None else max(found, dependence)
            if found is not Dependence.INDEPENDENT:
                return found
        return found if found is not None else Dependence.UNKNOWN

    def _closure_handed_on(self, function: FunctionInfo) -> bool:
        """Is the closure (by its name, or by a name its factory's result is bound to) handed to a call?"""
        handed = self._names_handed_to_calls
        if function.name in handed:
            return True
        outer = function.outer.name
        return any(key in handed for key, value, _site in self.collector.call_assigns
                   if type(value.func) is cst.Name and value.func.value == outer)

    @cached_property
    def _names_handed_to_calls(self) -> frozenset[str]:
        return frozenset(arg.value.value for site in self.collector.calls for arg in site.node.args
                         if type(arg.value) is cst.Name)

    @cached_property
    def _methods_handed_to_calls(self) -> dict:
        """Method name -> (call site, argument) of each call it is handed to, bound (`self.labeler.generate`)."""
        out: dict = {}
        for site in self.collector.calls:
            for arg in site.node.args:
                if type(arg.value) is cst.Attribute:
                    out.setdefault(arg.value.attr.value, []).append((site, arg))
        return out

    def _calls_what_it_is_handed_without_grad(self, site, arg: cst.Arg) -> bool:
        """Is the call a function of this file that calls the parameter `arg` binds only under no_grad?"""
        from modelint.facts.summary_effects import bind_arguments

        callee = self.local_functions.get(self.local_callee(site.node, site.site.function) or "")
        if callee is None:
            return False
        param = next((name for name, value in bind_arguments(callee.params, callee.cls is not None, site.node).items()
                      if value is arg.value), None)
        uses = [call.site for call in self.collector.calls_made_in(callee)
                if type(call.node.func) is cst.Name and call.node.func.value == param] if param else []
        return bool(uses) and all(lexically_grad_free(self.imports, use, self.grad_wrappers) for use in uses)

    def _called_only_in_lambdas(self, function: FunctionInfo) -> bool:
        calls = self._calls_of.get(function, ())
        return bool(calls) and all(call in self.collector.calls_in_lambdas for call in calls)

    def has_callers(self, function: FunctionInfo) -> bool:
        """Does this file call it (not counting recursion)?"""
        name = nested_name(function) if function.outer is not None and function.cls is None else qualname(function)
        return any(caller is not function for caller, _grad, _models in self.call_sites.get(name, {}).values())

    def mode_from_callers(self, function: FunctionInfo, key: str, phase: tuple = (), _seen: frozenset = frozenset()):
        """A method (`self._predict_batch(X)`, `self.validate()`) called by methods of its class, each having put
        `self.<attr>` in a mode we know at the call (`self.network.eval()` first): the mode it starts in, joined
        over them; None when a caller is elsewhere or does not know it, and for a method nothing here calls (a
        public `predict()` is then an entry point, which the object's users may call after any other method).
        With `phase`, only from the calls that pick that value of its phase parameter; a caller of the class that
        switches nothing but hands its own phase parameter on (`run(batches, opt=None)` calling `self.step(x, y,
        opt)`) passes on the mode its own callers set for that value (`fit()`: `train()`, then `run(b, opt)`)."""
        if function.cls is None or function.name.startswith("__") or not key.startswith("self.") \
                or function in _seen:
            return None
        sites = [(call, site) for call, site in self.call_sites.get(qualname(function), {}).items()
                 if site[0] is not function and _runs_there(function, call, site[0], phase, None)]
        private = _is_private_hook(function)
        found = None
        for call, (caller, _grad, models) in sites:
            fact = models.get(key) or followed_parent(models, key)  # (`self.nets.eval()` for `self.nets["policy"]`)
            if caller is not None and caller.cls is function.cls and phase and (fact is None or (
                    fact.entry and not fact.eval_sites and not fact.havoc and fact.train_sites <= self.assumed_sites)):
                # (as the caller got it: its own callers' mode, or trained by this very call on an earlier pass)
                handed = _phase_handed_on(function, call, phase, caller)
                fact = self.mode_from_callers(caller, key, handed, _seen | {function}) if handed else None
                if fact is None:
                    return None
                found = fact if found is None else found.join(fact)
                continue
            if caller is None or caller.cls is not function.cls or fact is None or fact.entry or fact.havoc \
                    or not (fact.train_sites or fact.eval_sites):
                return None
            if not private and not all(self._switched_in(caller, site) for site in fact.train_sites | fact.eval_sites):
                # (a public method is the users' too, `predict()` after `train_model()`: only callers that switch the
                # model themselves before calling it, `self.model.eval(); self.validate()`, show it is a helper
                # run in the mode they choose; not one that merely comes after another method's switch)
                return None
            found = fact if found is None else found.join(fact)
        return found

    def _switched_in(self, function: FunctionInfo, site) -> bool:
        """Is `site` a mode switch written in `function` itself?"""
        found = self.site_of_call.get(site) if type(site) is cst.Call else None
        return found is not None and found.site.function is function

    def record_call_site(self, name: str, call: cst.Call, caller: FunctionInfo | None, state) -> None:
        sites = self.call_sites.setdefault(name, {})
        seen = sites.get(call)
        if seen is None:
            sites[call] = (caller, state.grad, dict(state.models))
        else:  # met again (a loop body runs until stable): join what reaches it
            models = dict(seen[2])
            for key, fact in state.models.items():
                models[key] = models[key].join(fact) if key in models else fact
            sites[call] = (caller, seen[1].join(state.grad), models)


def _runs_there(function: FunctionInfo, call: cst.Call, caller, phase: tuple, reaching: Site | None) -> bool:
    """Does `call` of `function` run its pass `phase` (any, when empty) and may it run the statement at
    `reaching` (any, when None)?"""
    return not (phase and call_picks_other_phase(function, call, phase, caller)) \
        and (reaching is None or call_reaches(function, call, reaching, caller))


def _phase_handed_on(function: FunctionInfo, call: cst.Call, phase: tuple, caller: FunctionInfo) -> tuple:
    """`self.step(x, y, opt)` in `def run(self, batches, opt=None)`, for `step`'s pass where `opt` is `phase`'s
    value: the caller's own pass that hands it that value, ((its parameter, the value),); () when none."""
    from modelint.facts.summary_effects import bind_arguments

    name, value = phase[0]
    passed = bind_arguments(function.params, function.cls is not None, call).get(name)
    if type(passed) is cst.Name and passed.value in caller.param_set and passed.value not in ("self", "cls"):
        return ((passed.value, value),)
    return ()


def _is_private_hook(function: FunctionInfo) -> bool:
    """`_predict_proba` in a class: private, yet nothing here calls it, so its callers are elsewhere."""
    return function.cls is not None and function.name.startswith("_") and not function.name.startswith("__")


def nested_name(function: FunctionInfo) -> str:
    return f"{qualname(function.outer) if function.outer.outer is None else function.outer.name}.<locals>.{function.name}"
