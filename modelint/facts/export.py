"""What other files need of this one: summaries in picklable form.

Nodes become call ordinals (`RemoteSite`s, ordinals in `ForwardUse`/`StepUse`), so
positions, a costly pass, are computed only for what a finding elsewhere shows.
Effects on `self.` attributes stay in the file: a caller elsewhere holds another object.
"""

from __future__ import annotations

from dataclasses import replace

import libcst as cst

from modelint.facts.lattice import is_train_site
from modelint.facts.libraries import is_not_project
from modelint.facts.modules import Dependence
from modelint.facts.names import dotted, head_name
from modelint.facts.object_orders import handed_methods, object_orders
from modelint.facts.input_gradients import input_gradient_classes
from modelint.facts.foreign_calls import (inherited_calls, inherited_methods_called, method_calls, method_calls_in_eval,
                                          runs_without_grad)
from modelint.facts.factory_constructions import factory_constructions
from modelint.facts.flag_forwards import free_branch_flag
from modelint.facts.parts_in_eval import fresh_classes, only_dependent_part
from modelint.facts.regions import forward_grad, grad_wrappers, imported_decorators
from modelint.facts.walk import iter_nodes
from modelint.summary import FileSummary, ForwardUse, FunctionSummary, RemoteSite, ReturnFact, StepUse


def remote(flow, site, kind: str) -> RemoteSite | None:
    if isinstance(site, RemoteSite):
        return site
    ordinal = flow.call_ordinals.get(site)
    if ordinal is None:
        return None
    text = cst.Module(body=[]).code_for_node(site)
    return RemoteSite(flow.path, ordinal, kind, " ".join(text.split())[:60])


def file_summary(flow) -> FileSummary:
    # An imported class matters when a model built from it is evaluated in training mode (the index may know
    # it is a pure MLP, which mode cannot change) or with autograd on (its `forward` may turn autograd off).
    # (`from .models import *` re-exports what that module defines: `.models.*`, for the index)
    refs = set(flow.unresolved) | {f"{module}.*" for module in flow.imports.star_modules} | {
        forward.mode.origin for function_flow in flow.flows for forward in function_flow.all_forwards()
        if forward.mode.origin and forward.mode.dependence is Dependence.UNKNOWN and (
            forward.mode.definitely_train or (not forward.grad_free and forward.intent in ("evaluation", "inference")))
    } | {  # a training step with a model that may be in eval mode: a pure MLP of another file would not matter
        fact.origin for function_flow in flow.flows
        for step in (*function_flow.steps.values(), *function_flow.helper_steps.values())
        for fact in step.models.values()
        if fact.origin and fact.dependence is Dependence.UNKNOWN and fact.eval_sites
    } | inherited_methods_called(flow) | {  # a decorator of a function that runs a model: another file's may run what it wraps under no_grad
        reference for references in imported_decorators(flow.collector).values() for reference in references
    } | {  # a trainer's `self.model = Net()` (not a module's own layers): its methods see it through the object
        built.origin for key, value, site in flow.collector.call_assigns if key.startswith("self.")
        and site.cls is not None and (built := flow.modules.module_expression(value)[0]) is not None
        and built.origin and built.dependence is Dependence.UNKNOWN
        # (what the file shows of the class: asking the index about a base elsewhere would send every
        # tokenizer with a `self.sp_model = SentencePieceProcessor()` to the second pass for nothing)
        and not flow.modules.is_module_class(site.cls) and not flow.defines_forward(site.cls)
    }
    exported: dict[str, FunctionSummary] = {}
    for name, summary in flow.summaries.items():
        if ".<locals>." in name:
            continue  # a closure: no other file can call it
        out = _export(flow, summary)
        if out is not None:
            exported[name] = out
    return FileSummary(flow.path, exported, refs, flow.modules.class_summaries(), method_calls=method_calls(flow),
                       method_calls_in_eval=method_calls_in_eval(flow), inherited_calls=inherited_calls(flow),
                       grad_free_calls=_grad_free_calls(flow),
                       handed_models={name: dict(slots) for name, slots in flow.handed_models.items()},
                       handed_classes={name: dict(slots) for name, slots in flow.handed_classes.items()},
                       handed_in_eval={name: dict(slots) for name, slots in flow.handed_in_eval.items()},
                       asked_handed=set(flow.asked_handed),
                       loaded_classes=set(flow.modules.loaded_classes),
                       weightless_classes=flow.modules.weightless_classes(),
                       eval_built_classes={name for name, info in flow.modules.classes.items()
                                           if flow.modules.is_module_class(info) and flow.modules.built_in_eval(info)},
                       single_part_classes={name: part for name, info in flow.modules.classes.items()
                                            if (part := only_dependent_part(flow.modules, flow.collector, info))},
                       grad_free_forward_classes=grad_free_forward_classes(flow),
                       frozen_classes=dict(flow.frozen_classes),
                       free_branch_classes=free_branch_classes(flow), fresh_classes=fresh_classes(flow.modules),
                       factory_constructions=factory_constructions(flow),
                       grad_follows_mode_classes=grad_free_forward_classes(flow, "mode"),
                       input_gradient_classes=input_gradient_classes(flow),
                       own_mode_classes=flow.modules.own_mode_classes(),
                       classes_waiting=flow.modules.waiting_on_imports() if flow.index is None else {},
                       grad_wrappers=grad_wrappers(flow.collector),
                       plain_functions={f.name for f in flow.collector.functions if f.outer is None and f.cls is None},
                       submodules=flow.modules.submodules(), asked_submodules=set(flow.asked_submodules),
                       imported=set(flow.imports.bindings.values()), object_orders=object_orders(flow),
                       handed_methods=handed_methods(flow))


def _grad_free_calls(flow) -> dict[str, bool]:
    """The functions this file imports and calls with arguments (as it names them: those of other files of the
    project among them, which the index tells apart), and whether every such call runs under no_grad:
    lexically, or in a function every caller here runs under no_grad."""
    out: dict[str, bool] = {}
    entries: dict = {}
    for site in flow.collector.calls:
        reference = site.qualified
        if reference is None or not site.node.args or not out.get(reference, True) \
                or is_not_project(reference):
            continue
        out[reference] = runs_without_grad(flow, site, entries)
    return out




def grad_free_forward_classes(flow, mode: str = "free") -> set[str]:
    """Module classes of this file whose own `forward` records no graph (decorated `@torch.no_grad()`: an
    inference-only model, a frozen target encoder); with `mode="mode"`, none once in eval mode
    (`set_grad_enabled(self.training)` around its body). See modelint.facts.regions.forward_grad."""
    return {name for name, info in flow.modules.classes.items() if flow.modules.is_module_class(info)
            and forward_grad(flow.imports, info, flow.grad_wrappers, flow) == mode}


def free_branch_classes(flow) -> dict:
    """Module classes of this file whose `forward` picks a grad-free branch by a constructor flag -> that flag
    (modelint.facts.flag_forwards): another file's `Detector(trainable=False)` records no graph when run."""
    out = {}
    for name, info in flow.modules.classes.items():
        if flow.modules.is_module_class(info):
            flag = free_branch_flag(info, flow.imports, flow.grad_wrappers, flow.modules.names.kept_from_the_creator(info))
            if flag is not None:
                out[name] = flag
    return out


def _kept_in_eval(flow, qualname: str, part: str):
    """The constructor's `self.net.eval()` when the method's class keeps `part` (`self.net`) in eval mode: its
    `__init__` leaves it so, and every method that switches it (or the object) leaves it in eval mode too."""
    cls = qualname.rpartition(".")[0]
    init = flow.summaries.get(f"{cls}.__init__")
    if not cls or part.count(".") != 1 or init is None or init.effects.get(part) != "eval":
        return None
    for name, summary in flow.summaries.items():
        if name.rpartition(".")[0] == cls and (summary.effects.get(part, "eval") != "eval" or summary.effects.get(
                "self", "eval") != "eval"):
            return None
    return init.effect_sites.get(part)


def _of_a_module_class(flow, qualname: str) -> bool:
    function = flow.local_functions.get(qualname)
    return function is not None and function.cls is not None and flow.is_module_class(function.cls)


def _kept_from_the_creator(flow, qualname: str) -> frozenset[str]:
    """`self.<attr>` a method's class keeps from its constructor's parameter, as it is."""
    function = flow.local_functions.get(qualname)
    if function is None or function.cls is None:
        return frozenset()
    return frozenset(flow.modules.names.kept_from_the_creator(function.cls))


def _calls_methods_of_its_parameters(flow, qualname: str) -> bool:
    """Does the function call a method of a value it is handed (`model.register_forward_hook(hook)`)?"""
    function = flow.local_functions.get(qualname)
    return function is not None and any(
        type(site.node.func) is cst.Attribute
        and (head := dotted(site.node.func.value)) is not None and head.split(".")[0] in function.param_set
        for site in flow.collector.calls_made_in(function))


def _runs_a_parameterless_part(flow, qualname: str, param: str) -> bool:
    """Is `param` an attribute of the method's own object that its class builds without weights (a loss)?"""
    function = flow.local_functions.get(qualname)
    return function is not None and function.cls is not None and param.startswith("self.") \
        and param.count(".") == 1 and flow.modules.attribute_parameterless(param[5:], cls=function.cls)


def _keeps_to_what_it_is_handed(flow, qualname: str) -> bool:
    """A method of a plain class (no module) that calls nothing on its object or what the object holds, and
    hands none of it anywhere (`meter.update(loss, n)` adding `loss.item()` to `self.total`): what it does
    with its arguments is all a caller needs; one reaching a model its object holds is not read from here."""
    function = flow.local_functions.get(qualname)
    if function is None or function.cls is None or flow.is_module_class(function.cls):
        return False
    for node in iter_nodes(function.node.body):
        if type(node) is cst.Call and (_rooted_at_self(node.func) or any(
                _rooted_at_self(arg.value) for arg in node.args)):
            return False
        if type(node) in (cst.Assign, cst.AnnAssign) and node.value is not None and _rooted_at_self(node.value):
            return False  # (`model = self.model`: an alias of what it holds)
    return True


def _rooted_at_self(node: cst.BaseExpression) -> bool:
    return head_name(node) in ("self", "cls")


def _of_the_object(key: str) -> bool:
    return key in ("self", "cls") or key.startswith(("self.", "cls.", "self["))


def _site_kind(effect: str, site) -> str:
    return "eval" if "eval" in effect else "train" if is_train_site(site) else "built"


def _ordinal(flow, use) -> int:
    return use.call if use.call >= 0 else flow.call_ordinals.get(use.node, -1)


def _export(flow, summary: FunctionSummary) -> FunctionSummary | None:
    # (and its forward of `self`: `model.rank(test_loader)` from another file evaluates `model`; so do a module's
    # forwards of its own parts, `self.head(self.enc(x))` in `model.predict_subject(x)`: they run in its mode)
    # (asked only of a method that touches a part of `self`: whether its class is a module is otherwise moot, and
    # for a class with a base elsewhere, `BertPreTrainedModel._init_weights`, asking sends the file round again)
    touches_parts = any(_of_the_object(key) and key != "self" for key in summary.effects) \
        or any(_of_the_object(u.param) and u.param != "self" for u in summary.forwards)
    own_parts = summary.is_method and touches_parts and _of_a_module_class(flow, summary.qualname)
    # (and a plain object's forwards of the model its creator handed it, `self.model = model` in `__init__`:
    # the caller's `predictor.model` is its own model, ClassShape.stores)
    kept = _kept_from_the_creator(flow, summary.qualname) if summary.is_method and touches_parts and not own_parts \
        else frozenset()
    # (a method's effect on `self` itself is its receiver's at a call from another file: `model.predict(x)`; so is
    # its effect on the model its creator handed it: `evaluator.get_scores()` puts the trainer's model in eval mode)
    # (`self` of a module-level function, `def new_labels(self): gather(self.model, ...)`, is a parameter
    # like any other: what it holds is its caller's)
    def of_the_object(key: str) -> bool:
        return summary.is_method and _of_the_object(key)

    effects = {k: v for k, v in summary.effects.items()
               if not of_the_object(k) or k == "self" or k in kept}
    # (a layer of an `nn.ModuleList` too: `for hop in self.hops: h = hop(graph, h)`)
    # (a part its class keeps in eval mode, `self.net.eval()` in `__init__` and after each update, runs in eval
    # mode whatever the mode of the object around it: TD-MPC's agent acting with its network)
    # (not its losses: `self.criterion_ppl(logit, y)`, an `nn.NLLLoss()` of its own, runs no layer of it)
    forwards = [replace(u, param="self", eval_site=u.eval_site or _kept_in_eval(flow, summary.qualname, u.param))
                if own_parts and u.param.startswith("self.") else u for u in summary.forwards
                if not (own_parts and _runs_a_parameterless_part(flow, summary.qualname, u.param))]
    forwards = [u for u in forwards if not of_the_object(u.param) or u.param == "self" or u.param in kept]
    steps = [u for u in summary.steps if not of_the_object(u.param)]
    returns = summary.returns
    if returns is not None and returns.mode is None and not returns.certain and returns.param is None:
        returns = None  # "something, in some mode, maybe a module": what a caller assumes of any call
    backprops = [p for p in summary.backprops if not of_the_object(p)]
    # (what a function does with the values it is handed: `to_np(out)` in a utils file gives back numbers,
    # no graph; so does a method of a plain object that touches no model of its own, `meter.update(loss, n)`
    # keeping `loss.item()`; callers elsewhere read it, see modelint.facts.helper_arguments)
    handed_values = not summary.is_method or _keeps_to_what_it_is_handed(flow, summary.qualname)
    evaluates = [p for p in summary.evaluates if p not in ("self", "cls")] if handed_values else []
    hands_on = [p for p in summary.hands_on if p not in ("self", "cls")] if handed_values else []
    items = tuple(_exported_return(flow, item)
                  if item is not None and (item.mode is not None or item.certain or item.param is not None)
                  else None for item in summary.returns_items)
    items = items if any(item is not None for item in items) else ()
    entries = {key: _exported_return(flow, held) for key, held in summary.returns_entries.items()
               if held.mode is not None or held.certain}
    # (a helper seen to leave every model it is handed as it was, `Reporter.attach(model, sink)` registering
    # a hook, says so: callers elsewhere keep the mode they set)
    # (not a method's: what it does to its object's parts, which another file cannot name, is left out here; and
    # only of one that calls methods of what it is handed, as a helper handed a model does)
    leaves_as_is = not summary.effects and bool(summary.params) and summary.params[0] not in ("self", "cls") \
        and _calls_methods_of_its_parameters(flow, summary.qualname)
    if all(v == "unknown" for v in effects.values()) and not leaves_as_is and not forwards and not steps and not backprops \
            and not evaluates and not hands_on and returns is None and not items and not entries \
            and summary.context_mode is None and summary.context_grad is None:
        return None  # callers already assume the worst of a helper they cannot see
    out = FunctionSummary(summary.qualname, flow.path, summary.params, effects, is_method=summary.is_method,
                          trains=summary.trains, context_mode=summary.context_mode,
                          context_grad=summary.context_grad, context_switches=summary.context_switches,
                          context_flag_default=summary.context_flag_default,
                          backprops=backprops, evaluates=evaluates,
                          backprops_cut=[p for p in summary.backprops_cut if p in backprops],
                          hands_on=hands_on, transforms=[p for p in summary.transforms if p in hands_on])
    if summary.phase_param is not None:
        # (`act(policy, obs, mode="eval")` from another file runs only the helper's "eval" branch, as here)
        out.phase_param, out.phase_default = summary.phase_param, summary.phase_default
        out.phase_effects = {value: _exported_effects(flow, *by_phase, effects)
                             for value, by_phase in summary.phase_effects.items()}
    for key in effects:
        site = summary.effect_sites.get(key)
        found = remote(flow, site, _site_kind(effects[key], site)) if site is not None else None
        if found is not None:
            out.effect_sites[key] = found
    for use in forwards:
        ordinal = _ordinal(flow, use)
        if ordinal >= 0:
            eval_site = remote(flow, use.eval_site, "eval") if use.eval_site is not None else None
            if use.eval_site is not None and eval_site is None:
                continue  # (a forward whose eval() cannot be named elsewhere would read as the caller's mode)
            out.forwards.append(ForwardUse(use.param, use.path, use.intent, use.grad, use.context, ordinal,
                                           method=use.method, eval_site=eval_site, phase_value=use.phase_value,
                                           given_back=use.given_back, reached_when=use.reached_when))
    for use in steps:
        ordinal = _ordinal(flow, use)
        if ordinal >= 0:
            out.steps.append(StepUse(use.param, use.path, ordinal, phase_value=use.phase_value))
    if returns is not None:
        out.returns = _exported_return(flow, returns)
    out.returns_items = items
    out.returns_entries = entries
    return out


def _exported_effects(flow, effects: dict, sites: dict, kept: dict) -> tuple[dict, dict]:
    """One phase's effects on the models a caller in another file can name (those of `kept`), with the sites
    that set them named for that file."""
    effects = {key: effect for key, effect in effects.items() if key in kept}
    remote_sites = {}
    for key, effect in effects.items():
        site = sites.get(key)
        found = remote(flow, site, _site_kind(effect, site)) if site is not None else None
        if found is not None:
            remote_sites[key] = found
    return effects, remote_sites


def _exported_return(flow, returned: ReturnFact) -> ReturnFact:
    site = remote(flow, returned.site, _site_kind(returned.mode or "train", returned.site)) \
        if returned.site is not None else None
    return ReturnFact(returned.mode, returned.dependence, returned.certain, site,
                      parameterless=returned.parameterless, param=returned.param)
