"""Function summaries: what a call does to the mode of the models passed to it.

A summary is small and picklable, so a run can compute them for every file in
worker processes and share them through a `ProjectIndex`: "evaluate(model, ...)
leaves parameter `model` in eval mode (set at helpers.py:12)", "predict(model, x)
runs a forward pass of `model` in an evaluation context and relies on the
caller's mode". The mode flow applies them at call sites.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class RemoteSite:
    """A statement in another function or file that set a mode (for notes and messages)."""

    path: str
    call: int  # ordinal of the call in its file's Collector.calls: positions are looked up only if shown
    kind: str  # "eval" | "train" (an explicit train()) | "built" (a constructor)
    text: str  # e.g. "model.eval()"


@dataclass(frozen=True)
class ForwardUse:
    """A forward pass, in a helper, of a model the caller passes (a parameter, `self.<attr>`
    or a module-level model): the caller's mode and grad mode decide whether it is a bug."""

    param: str  # "model", "self.net", or a module-level name
    path: str
    # What the helper does with the output: "evaluation", "inference" (dropped/logged), "training",
    # "returned" (up to the caller: the call is then a forward of the caller's model), "unknown".
    intent: str
    grad: str  # the helper's own grad mode at the forward: "free", "enabled", "entry" (the caller's)
    context: str | None = None  # why the helper evaluates ("under no_grad", "in validate()"), if it does
    call: int = -1  # ordinal of the forward call in its file, once the summary leaves the file
    node: object = field(default=None)  # the forward call, within its own file (nodes compare by identity)
    method: bool = False  # the forward is a method wrapping it (`model.predict_step(x)`), not a call of the model
    # Within its own file: the calls through which the helper reaches `node` (a helper of the helper).
    chain: tuple = field(default=(), compare=False)
    # The helper puts the model in eval mode itself before this forward (a node of its file, a RemoteSite
    # once exported): the caller's mode does not matter there, only the caller's grad mode does.
    eval_site: object = field(default=None, compare=False)
    # Run only when the helper's phase parameter has this value (`actor_pick_action(s, eval=False)`).
    phase_value: object = None
    # The helper returns a result cut from the output (`target_net(s).detach().max(1)[0]`): what the
    # callers do with the call's value may still make it part of training (a TD target in their loss).
    given_back: bool = False
    # Run only for calls whose arguments pass the `if`s on the helper's parameters around it
    # (`if augment:`): a reaching_calls.Reach, or None.
    reached_when: object = field(default=None, compare=False)


@dataclass(frozen=True)
class StepUse:
    """A training step in a helper that trains a model the caller passes: the caller's mode decides."""

    param: str
    path: str
    call: int = -1
    node: object = field(default=None, compare=False)
    phase_value: object = None  # run only for this value of the helper's phase parameter (None: for any)


@dataclass(frozen=True)
class ReturnFact:
    """A function returns a module it built or loaded (a factory): the mode it leaves it in."""

    mode: str | None  # "train" | "eval" | None (unknown)
    dependence: int  # Dependence value: 0 independent, 1 unknown, 2 dependent
    certain: bool = True
    site: object = field(default=None, compare=False)  # where the mode was set: a node here or a RemoteSite
    parameterless: bool = False  # a module without weights (`nn.MSELoss()` from `_select_criterion()`)
    param: str | None = None  # it hands back this parameter as it came (`load_checkpoint(path, model)`)


class Params(list):
    """A function's parameter names in order, the last `keyword_only` of which a call passes only by keyword
    (after `*models` or a bare `*`): `eval_mode(actor, critic)` hands nothing to `no_grad`."""

    def __init__(self, names=(), keyword_only: int = 0):
        super().__init__(names)
        self.keyword_only = keyword_only


@dataclass
class FunctionSummary:
    qualname: str  # "evaluate" or "Trainer.validate"
    path: str
    params: list[str]
    # Net effect on a parameter or `self.<attr>` when the function returns:
    # "eval", "train", "may-eval", "may-train", "unknown" (absent: unchanged).
    effects: dict[str, str] = field(default_factory=dict)
    # Where the effect happens: a node of the summary's own file, or a RemoteSite once exported.
    effect_sites: dict[str, object] = field(default_factory=dict)
    forwards: list[ForwardUse] = field(default_factory=list)
    steps: list[StepUse] = field(default_factory=list)
    returns: ReturnFact | None = None
    # A factory returning a tuple (`return model, optimizer`): what each position holds (None: no module we know).
    returns_items: tuple = ()
    # A factory returning a dict (`return {"embeddings": emb}`): what each literal key holds (modules known only).
    returns_entries: dict = field(default_factory=dict)
    is_method: bool = False
    trains: bool = False  # it runs a training step itself or through helpers (backward/optimizer.step)
    globals: list[str] = field(default_factory=list)  # module-level models it uses, bound by name at calls
    context_mode: str | None = None  # a context manager that puts its arguments in this mode, then restores it
    context_grad: str | None = None  # "free": a context manager whose body runs under no_grad ("by:<param>")
    context_switches: tuple[str, ...] = ()  # the attributes of its object such a method switches (`self.network`)
    context_flag_default: object = None  # for "off-by:<param>": the parameter's default (`no_grad=False`)
    backprops: list[str] = field(default_factory=list)  # parameters it runs backward() on (`backward(loss)`)
    # those of `backprops` that reach the backward only cut from their graph (`z = z.detach()`, then a probe
    # trained on `z`): the caller's models are not trained there
    backprops_cut: list[str] = field(default_factory=list)
    hands_on: list[str] = field(default_factory=list)  # parameters it passes to calls we cannot see into
    transforms: list[str] = field(default_factory=list)  # those of `hands_on` only named functions receive
    # Parameters it only turns into predictions, metrics, files or prints (`save_grid(samples)`, `accuracy(out, y)`).
    evaluates: list[str] = field(default_factory=list)
    # Parameters it cuts from their graph (`t.detach()`) and whose graph its result never carries
    # (`distill(out, teacher_out)` detaching the teacher's logits). Of this file only.
    cuts: list[str] = field(default_factory=list)
    # A parameter that picks the phase (`set_mode("eval", models)`): its literal value -> (effects, effect_sites)
    # when the caller names it, in this file.
    phase_param: str | None = None
    phase_default: object = None  # its default, when a literal (`eval=False`)
    phase_effects: dict = field(default_factory=dict)

    @property
    def shown_name(self) -> str:
        """The name as the user wrote it: `train_batch`, not `train_batch@1` (a definition a later one replaces)."""
        return self.qualname.split("@", 1)[0]

    @property
    def trivial(self) -> bool:
        return not self.effects and not self.forwards and not self.steps and self.returns is None \
            and not self.returns_items and not self.returns_entries


@dataclass(frozen=True)
class ClassShape:
    """What another file needs to know about a class: is it an nn.Module, and which names it defines.

    `bases` are spelled as the defining file names them: a qualified import (`torch.nn.Module`,
    `.models.Backbone`), `:Name` for a class of the same file, or `?` for an expression that
    names no class (`make_base()`).
    """

    bases: tuple[str, ...]
    defines: frozenset[str]  # methods and class attributes of its own body
    builds_modules: bool = False  # constructs layers itself (so it is no single leaf layer)
    switches: frozenset[str] = frozenset()  # `self.<attr>` whose mode its methods set (`self.model.eval()`)
    # (name, under no_grad, after an eval() of `self` or a part) for each call of a method on `self` in its
    # methods: a template's hooks
    hook_calls: frozenset[tuple[str, bool, bool]] = frozenset()
    # (parameter, position after `self` or -1, `self.<attr>`) for each constructor parameter the class keeps as
    # it is (`def __init__(self, model): self.model = model`): an object built holding its creator's model
    stores: tuple[tuple[str, int, str], ...] = ()
    # The methods its own `forward` (or `__call__`) calls on `self`: a template's forward hooks
    # (`return self.inference_forward(*inputs)`), part of the forward of every subclass that writes them
    forward_hooks: frozenset[str] = frozenset()


@dataclass
class FileSummary:
    path: str
    functions: dict[str, FunctionSummary] = field(default_factory=dict)
    # Calls this file could not resolve locally: (qualified name as imported, e.g. ".helpers.evaluate").
    unresolved: set[str] = field(default_factory=set)
    # nn.Module classes defined here: name -> Dependence value (0 independent, 1 unknown, 2 dependent).
    classes: dict[str, int] = field(default_factory=dict)
    # Those of unknown dependence only because they build classes imported from elsewhere: those imports.
    classes_waiting: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Every class defined here, for receiver facts in other files (modelint.facts.receivers).
    shapes: dict[str, ClassShape] = field(default_factory=dict)
    # Imported classes whose shape this file's rules asked for and could not see (qualified as imported).
    asked_classes: set[str] = field(default_factory=set)
    # nn.Module classes defined here that build no layer and run what their constructor loads (their
    # mode is the loader's: modelint.facts.loaded_parts).
    loaded_classes: set[str] = field(default_factory=set)
    # nn.Module classes defined here that hold no weights (buffers, activations, a loss): calling one runs
    # no model (modelint.facts.layer_kinds.holds_no_weights).
    weightless_classes: set[str] = field(default_factory=set)
    # nn.Module classes defined here whose constructor keeps only modules it put in eval mode (a frozen feature
    # extractor): built, one runs in eval mode (modelint.facts.module_attributes.built_in_eval).
    eval_built_classes: set[str] = field(default_factory=set)
    # Module classes whose mode-dependent layers are all in one attribute -> that attribute (`ranker.model.eval()`
    # switches a `ranker` whole: modelint.facts.parts_in_eval.only_dependent_part).
    single_part_classes: dict[str, str] = field(default_factory=dict)
    # Module classes whose own `forward` is decorated `@torch.no_grad()` (or the like): calling one records no graph.
    grad_free_forward_classes: set[str] = field(default_factory=set)
    # Module classes whose `__init__` freezes every parameter they hold -> "" or "flag:position", the constructor
    # flag that must stay False (modelint.facts.freezing.classes_frozen_at_construction).
    frozen_classes: dict[str, str] = field(default_factory=dict)
    # Module classes whose `forward` first picks a grad-free branch by a constructor flag it keeps
    # (`if not self.trainable: return self.inference(x)`) -> that flag (modelint.facts.flag_forwards.FreeBranchFlag).
    free_branch_classes: dict[str, tuple] = field(default_factory=dict)
    # Module classes as mode-dependent as built otherwise than `classes` says (parts built or loaded in eval mode,
    # `self.fn = lpips.LPIPS(...)`) -> Dependence value until something calls their `train()`.
    fresh_classes: dict[str, int] = field(default_factory=dict)
    # Top-level functions handing back a module one construction builds -> item of the tuple handed back (None:
    # the whole value) -> the construction, in terms of their parameters (modelint.facts.factory_constructions).
    factory_constructions: dict[str, dict] = field(default_factory=dict)
    # Module classes whose `forward` runs under `set_grad_enabled(self.training)`: no graph in eval mode.
    grad_follows_mode_classes: set[str] = field(default_factory=set)
    # Module classes whose `forward` takes gradients with respect to its inputs: running one needs autograd.
    input_gradient_classes: set[str] = field(default_factory=set)
    # Mode-dependent nn.Module classes defined here whose only mode dependence is their own reading of
    # `self.training` (a NoisyNet layer), with no Dropout or BatchNorm of torch's at any depth.
    own_mode_classes: set[str] = field(default_factory=set)
    # Top-level functions that run the function they are handed under no_grad: decorators (`@make_nograd_func`).
    grad_wrappers: frozenset[str] = frozenset()
    # Every top-level function defined here, summarised or not (`def masked_mae(...)`): a name another
    # file stores on an object (`self.loss = util.masked_mae`) is a function, not a model.
    plain_functions: set[str] = field(default_factory=set)
    # Only its imports: a file that names nothing of torch, analysed again only if it calls a helper or
    # builds a model class of the project (not for every project name it imports).
    syntax_only: bool = False
    # Methods called here on objects this file cannot place (`generator.module.infer(x)`): name -> True
    # when every such call is lexically under no_grad; the qualnames of the functions holding the others,
    # when those are functions nothing here calls (their callers elsewhere decide).
    method_calls: dict[str, bool | tuple[str, ...]] = field(default_factory=dict)
    # The same calls: name -> the parts of the receiver every one comes after the function put in eval mode: ""
    # the receiver itself or an object holding it (`model.eval()`, then `model.encoder.get_embeddings(loader)`),
    # "model" its `.model` (`learner.model.eval()`, then `learner.infer(faces)`).
    method_calls_in_eval: dict[str, frozenset[str]] = field(default_factory=dict)
    # Methods of bases defined elsewhere that its subclasses call on `self` here: base (as imported) -> method ->
    # True when every such call runs under no_grad (`self.run_vocoder(mel)` in a `with torch.no_grad():`).
    inherited_calls: dict[str, dict[str, bool]] = field(default_factory=dict)
    # Functions of other files called here (as this file names them): True when every call runs under no_grad.
    grad_free_calls: dict[str, bool] = field(default_factory=dict)
    # Callables imported from other files (as imported) handed a model here: argument slot (position or
    # keyword) -> Dependence value of the models handed there (see ModeFlow.handed_models).
    handed_models: dict[str, dict[str, int]] = field(default_factory=dict)
    # The same calls: argument slot -> the imported class (as imported here) the model handed there was built
    # from, "?" when the calls hand models of different or unknown classes (see ModeFlow.handed_classes).
    handed_classes: dict[str, dict[str, str]] = field(default_factory=dict)
    # The same calls: argument slot -> True when every model handed there was surely in eval mode (`net.eval()`,
    # then `Predictor(net, mode="val")`).
    handed_in_eval: dict[str, dict[str, bool]] = field(default_factory=dict)
    # Methods called on a parameter of no class seen here, as "function|parameter|position|method"
    # (`model.predict(x)` in `evaluate(model, ...)`): the class other files' calls hand it may say what they run.
    asked_handed: set[str] = field(default_factory=set)
    # `self.<name> = Encoder()` in this file's classes, every one a module with weights: name -> Dependence value
    # (another file's `model.encoder(x)`, on a model of a class it cannot see, runs that submodule).
    submodules: dict[str, int] = field(default_factory=dict)
    # Names called as parts of a followed model here (`model.encoder(x)`) that no class of this file sets.
    asked_submodules: set[str] = field(default_factory=set)
    # What its imports bind, qualified as imported (`.heads.ForceHead`, `schnetpack.atomistic`).
    imported: set[str] = field(default_factory=set)
    # Callables of other files called here, as imported -> the (first, then) method pairs the objects built from
    # them here may run in, None when an object built from it is out of sight (modelint.facts.object_orders).
    object_orders: dict[str, frozenset | None] = field(default_factory=dict)
    # The same references -> methods of objects built from them here handed to calls as values (callbacks).
    handed_methods: dict[str, frozenset] = field(default_factory=dict)


def module_keys(path: str) -> list[str]:
    """Dotted names a file may be imported as: `a/b/c.py` -> ["c", "b.c", "a.b.c"]."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    stem = parts[-1].rsplit(".", 1)[0]
    parts = [p for p in parts[:-1] if p] + ([] if stem == "__init__" else [stem])
    return [".".join(parts[i:]) for i in range(len(parts) - 1, -1, -1) if parts[i:]]


_PLAIN_BASES = frozenset({"object", "abc.ABC", "ABC", "typing.Generic", "abc.ABCMeta"})
_MOST_BASES = 16  # bases followed through other files, per class


class ProjectIndex:
    """Summaries of every function in the analysed code, by module and name."""

    def __init__(self, summaries: list[FileSummary]) -> None:
        self.by_module: dict[str, list[FileSummary]] = {}
        self.files: dict[str, FileSummary] = {}
        for summary in summaries:
            self.files[os.path.abspath(summary.path)] = summary
            for key in module_keys(summary.path):
                self.by_module.setdefault(key, []).append(summary)

    def __getstate__(self) -> dict:
        # Only the summaries travel to the worker processes: the answers kept here are rebuilt there on demand.
        return {"by_module": self.by_module, "files": self.files}

    def _answer(self, question: str, reference: str, from_path: str, find):
        """`find()`, asked once per question, reference and file: the runner and every round ask the same."""
        answers = self.__dict__.setdefault("_answers", {})
        key = (question, reference, from_path)
        if key in answers:
            return answers[key]
        found = answers[key] = find()
        return found

    def submodule_dependence(self, name: str) -> int | None:
        """How mode-dependent the modules the project's classes keep on `self.<name>` are, when some class of
        the index builds one there (the most dependent); None when none does."""
        cache = self.__dict__.get("_submodules")
        if cache is None:
            cache = self.__dict__["_submodules"] = {}
            for summary in self.files.values():
                for attribute, dependence in summary.submodules.items():
                    cache[attribute] = max(dependence, cache.get(attribute, dependence))
        return cache.get(name)

    def called_from_other_files(self) -> set[tuple[str, str]]:
        """(absolute path, qualname) of every function another file of the index calls."""
        called: set[tuple[str, str]] = set()
        for path, summary in self.files.items():
            for reference in summary.unresolved:
                found = self.resolve(reference, summary.path)
                if found is not None and os.path.abspath(found.path) != path:
                    called.add((os.path.abspath(found.path), found.qualname))
        return called

    def function_called_only_without_grad(self, path: str, qualname: str) -> bool:
        """Do the run's other files call the function `qualname` of `path`, and always under no_grad?"""
        path = os.path.abspath(path)
        calls = []
        for from_path, summary in self.files.items():
            if from_path == path:
                continue
            for reference, free in summary.grad_free_calls.items():
                module, _, name = reference.rpartition(".")
                if name != qualname or not module:
                    continue
                # (the nearest file defining it, whether or not the function has a summary worth exporting)
                found = next((found for found in self._candidates(module, summary.path)
                              if name in found.plain_functions), None)
                if found is not None and os.path.abspath(found.path) == path:
                    calls.append(free)
        return bool(calls) and all(calls)

    def class_handed(self, path: str, qualname: str, param: str, position: int) -> tuple[str, str] | None:
        """(class as imported, the importing file) that every call in the run's other files hands the
        parameter `param` (at `position` among the positional arguments) of the function `qualname` of
        `path`, when they all hand one class and at least one call is seen; None otherwise."""
        found: tuple[str, str] | None = None
        identity = None
        for slots, from_path in self._calls_handing_classes().get((os.path.abspath(path), qualname), ()):
            origin = slots.get(param, slots.get(str(position)))
            shape = self.resolve_shape(origin, from_path) if origin not in (None, "?") else None
            # (one class: the same defining file, the same name; re-exports name it as they like)
            this = (os.path.abspath(shape[1]), origin.rpartition(".")[2]) if shape is not None else None
            if this is None or (identity is not None and identity != this):
                return None
            identity = this
            found = found or (origin, from_path)
        return found

    def hands_classes_to(self, path: str, qualname: str) -> bool:
        """Do other files of the run call the function `qualname` of `path`, handing it models (see class_handed)?"""
        return (os.path.abspath(path), qualname) in self._calls_handing_classes()

    def _calls_handing_classes(self) -> dict:
        """(callee's file, qualname) -> (the classes each slot gets, the calling file), for every such call."""
        cache = self.__dict__.get("_handing")
        if cache is None:
            cache = self.__dict__["_handing"] = {}
            for path, summary in self.files.items():
                for reference, slots in summary.handed_classes.items():
                    callee = self._function_named(reference, summary.path)
                    if callee is not None and callee[0] != path:
                        cache.setdefault(callee, []).append((slots, summary.path))
        return cache

    def _function_named(self, reference: str, from_path: str) -> tuple[str, str] | None:
        """(file, qualname) of the project function `reference` names, summarised or not (a helper in a file
        that names no torch has no summary of its functions yet)."""
        found = self.resolve(reference, from_path)
        if found is not None:
            return os.path.abspath(found.path), found.qualname
        module, _, name = reference.rpartition(".")
        if not module:
            return None
        for candidate in self._candidates(module, from_path):
            # (a class: its constructor's callers, `Trainer(model, ...)`, hand what its methods run)
            if name in candidate.plain_functions or name in candidate.functions or name in candidate.shapes:
                return os.path.abspath(candidate.path), name
        return None

    def method_called_only_without_grad(self, name: str) -> bool:
        """Do the files of the run call a method of this name on objects they cannot place, and always under
        no_grad? (The method's own class has no caller in sight: these may be its callers; its own file's
        too, `m.predict(x)` for each `m` of a list of models.)"""
        ok, shown = self._methods_without_grad(name.split(","), frozenset())
        return ok and shown

    def called_by_subclasses_only_without_grad(self, path: str, names: str) -> bool:
        """Do subclasses in the run's other files call these methods (comma-separated names) of a class of `path`
        on `self`, always under no_grad, and does no file call them with autograd on an object it cannot place?"""
        path, methods = os.path.abspath(path), names.split(",")
        calls = []
        for summary in self.files.values():
            for reference, called in summary.inherited_calls.items():
                found = [called[name] for name in methods if name in called]
                if found and (shape := self.resolve_shape(reference, summary.path)) is not None \
                        and os.path.abspath(shape[1]) == path:
                    calls.extend(found)
        if not calls or not all(calls):
            return False
        elsewhere = any(name in summary.method_calls for summary in self.files.values() for name in methods)
        return not elsewhere or self._methods_without_grad(methods, frozenset())[0]

    def _methods_without_grad(self, methods: list[str], seen: frozenset) -> tuple[bool, bool]:
        """(no call of these method names runs with autograd on, some call is seen under no_grad). A tuple: calls
        in functions of that file nothing there calls, whose callers elsewhere decide (a public method's,
        `Trainer.test` calling `this_model.test(x)`, by the calls of its own name; met again on the way, it adds
        nothing)."""
        calls = [(summary.path, summary.method_calls[method]) for summary in self.files.values() for method in methods
                 if method in summary.method_calls]
        ok, shown = bool(calls), False
        for path, free in calls:
            if free is True:
                shown = True
            elif free is False:
                return False, shown
            else:
                for function in free:
                    if "." not in function:
                        if not self.function_called_only_without_grad(path, function):
                            return False, shown
                        shown = True
                    elif (path, function) not in seen:
                        inner, inner_shown = self._methods_without_grad([function.rpartition(".")[2]],
                                                                        seen | {(path, function)})
                        if not inner:
                            return False, shown
                        shown = shown or inner_shown
        return ok, shown

    def run_after(self, defined_in: str, cls: str, first: frozenset[str], then: frozenset[str]) -> bool:
        """May an object of the class `cls` of `defined_in` run a method named in `then` after one named in
        `first`, for all the run's other files show? Yes unless some of them build objects of it, and every file
        naming it follows each of those objects and runs no such pair on one (see object_orders)."""
        defined_in = os.path.abspath(defined_in)
        target = self.files.get(defined_in)
        shape = target.shapes.get(cls) if target is not None else None
        if shape is None:
            return True

        def names_it(reference: str, path: str) -> bool:  # (the class or a subclass of it)
            return self._derives(reference, path, shape, 0)

        seen = handed = False
        for path, summary in self.files.items():
            if path == defined_in:
                continue
            orders = {reference: pairs for reference, pairs in summary.object_orders.items()
                      if names_it(reference, path)}
            # (a part of the object switched to eval, `gan.G.eval()`, leaves it as one of `first` would)
            if any(pairs is None or any((a in first or a == "eval") and b in then for a, b in pairs)
                   for pairs in orders.values()):
                return True
            subclassed = any(self._derives(f":{name}", path, shape, 0) for name in summary.shapes)
            if not orders and not subclassed and any(names_it(reference, path)
                                                     for reference in summary.imported | summary.unresolved):
                return True  # (imported and never built here, nor subclassed: built in a way not followed)
            seen = seen or bool(orders)
            # (a callback its users hand to the driver that runs it, `epoch_run=t.epoch_ce_loss`: run there)
            handed = handed or any(names & then for reference, names in summary.handed_methods.items()
                                   if names_it(reference, path))
        return not seen and not handed

    def _derives(self, reference: str, path: str, shape: ClassShape, depth: int) -> bool:
        """Is the class `reference` names in `path` (`:Name` for one of that file) `shape`'s class or a subclass?"""
        if reference.startswith(":"):
            here = self.files.get(os.path.abspath(path))
            found = (here.shapes.get(reference[1:]), path) if here is not None else None
            found = found if found is not None and found[0] is not None else None
        else:
            found = self.resolve_shape(reference, path)
        if found is None:
            return False
        if found[0] is shape:
            return True
        return depth < 4 and any(self._derives(base, found[1], shape, depth + 1) for base in found[0].bases
                                 if base != "?")

    def method_called_only_in_eval(self, name: str, defined_in: str) -> bool:
        """Do other files call a method of this name on objects they cannot place, and always after
        putting the receiver in eval mode? (Its own class never does: these may be its callers.) With
        `name` written "infer:model", after putting the receiver's `.model` in eval mode will do."""
        name, _, part = name.partition(":")
        calls = [summary.method_calls_in_eval[name] for path, summary in self.files.items()
                 if path != os.path.abspath(defined_in) and name in summary.method_calls_in_eval]
        return bool(calls) and all("" in parts or (part and part in parts) for parts in calls)

    def resolve_class(self, reference: str, from_path: str, _seen: frozenset = frozenset()) -> int | None:
        """Mode-dependence of a project class imported as `reference`, if the index has it. A class that
        its own file could not settle because it builds classes of other files (a generator made of the
        blocks in `layers.py`) is as dependent as the most dependent of them, when the index knows them all."""
        if not _seen:
            return self._answer("class", reference, from_path,
                                lambda: self._resolve_class(reference, from_path, _seen))
        return self._resolve_class(reference, from_path, _seen)

    def _resolve_class(self, reference: str, from_path: str, _seen: frozenset) -> int | None:
        found = self._defining(reference, from_path)
        if found is None:
            return None
        name = reference.rpartition(".")[2]
        dependence = found.classes[name]
        waiting = found.classes_waiting.get(name)
        if dependence != 1 or not waiting or (found.path, name) in _seen or len(_seen) > 16:
            return dependence
        resolved = [self.resolve_class(imported, found.path, _seen | {(found.path, name)})
                    if not self._plain_class(imported, found.path) else 0 for imported in waiting]
        return 1 if any(r is None for r in resolved) else max(resolved)

    def _plain_class(self, reference: str, from_path: str) -> bool:
        """Is `reference` a project class with no base but plain ones (`class TensorList:` in a utils file)?
        Building one builds no module: a class waiting on it is settled by the rest of what it waits on."""
        found = self.resolve_shape(reference, from_path)
        return found is not None and (all(base in _PLAIN_BASES for base in found[0].bases)
                                      or self.plain_class_chain(reference, from_path))

    def plain_class_chain(self, reference: str, from_path: str) -> bool:
        """Is `reference` a project class whose bases, and theirs, all end in plain ones (`class Scorer(Base)`,
        `class Base:`)? An object, no module, however many project classes it derives from."""
        found = self.resolve_shape(reference, from_path)
        owner = self.files.get(os.path.abspath(found[1])) if found is not None else None
        return owner is not None and self._plain_up_the_chain(owner, reference.rpartition(".")[2])

    def runs_loaded_modules(self, reference: str, from_path: str) -> bool:
        """Is the project class imported as `reference` a wrapper of what its constructor loads?"""
        found = self._defining(reference, from_path)
        return found is not None and reference.rpartition(".")[2] in found.loaded_classes

    def holds_no_weights(self, reference: str, from_path: str) -> bool:
        """Is the project class imported as `reference` a module without weights (a mel filterbank of buffers)?"""
        found = self._defining(reference, from_path)
        return found is not None and reference.rpartition(".")[2] in found.weightless_classes

    def built_in_eval(self, reference: str, from_path: str) -> bool:
        """Is the project class imported as `reference` built in eval mode by its own constructor?"""
        found = self._defining(reference, from_path)
        return found is not None and reference.rpartition(".")[2] in found.eval_built_classes

    def only_dependent_part(self, reference: str, from_path: str) -> str | None:
        """The attribute of the project class imported as `reference` that holds all its mode-dependent layers."""
        found = self._defining(reference, from_path)
        return found.single_part_classes.get(reference.rpartition(".")[2]) if found is not None else None

    def forward_without_grad(self, reference: str, from_path: str) -> bool:
        """Is the project class imported as `reference` a module whose `forward` turns autograd off itself?"""
        found = self._defining(reference, from_path)
        return found is not None and reference.rpartition(".")[2] in found.grad_free_forward_classes

    def frozen_at_construction(self, reference: str, from_path: str) -> str | None:
        """How the project class imported as `reference` freezes its own parameters when built ("" always,
        "flag:position" unless that constructor flag is set); None when it does not."""
        found = self._defining(reference, from_path)
        return found.frozen_classes.get(reference.rpartition(".")[2]) if found is not None else None

    def fresh_dependence(self, reference: str, from_path: str) -> int | None:
        """How mode-dependent a model of the project class imported as `reference` is as built, when that differs."""
        found = self._defining(reference, from_path)
        return found.fresh_classes.get(reference.rpartition(".")[2]) if found is not None else None

    def free_branch_flag(self, reference: str, from_path: str):
        """The constructor flag by which the project class imported as `reference` picks a grad-free forward, if any."""
        found = self._defining(reference, from_path)
        return found.free_branch_classes.get(reference.rpartition(".")[2]) if found is not None else None

    def factory_constructions(self, reference: str, from_path: str) -> tuple[str, dict] | None:
        """(its file, item -> Construction) for the project factory imported as `reference`, if it hands back
        a module one construction builds."""
        name = reference.rpartition(".")[2]
        found = self._defining(reference, from_path, defines=lambda summary: name in summary.factory_constructions)
        return (found.path, found.factory_constructions[name]) \
            if found is not None and name in found.factory_constructions else None

    def forward_without_grad_in_eval(self, reference: str, from_path: str) -> bool:
        """Is the project class imported as `reference` a module whose `forward` turns autograd off in eval mode?"""
        found = self._defining(reference, from_path)
        return found is not None and reference.rpartition(".")[2] in found.grad_follows_mode_classes

    def grad_wrapper(self, reference: str, from_path: str) -> bool:
        """Is the project function imported as `reference` a decorator running what it wraps under no_grad?"""
        name = reference.rpartition(".")[2]
        found = self._defining(reference, from_path, defines=lambda summary: name in summary.grad_wrappers)
        return found is not None and name in found.grad_wrappers

    def needs_input_gradients(self, reference: str, from_path: str) -> bool:
        """Does the project class imported as `reference` take input gradients in its `forward`?"""
        name = reference.rpartition(".")[2]
        found = self._defining(reference, from_path, defines=lambda summary: name in summary.input_gradient_classes)
        return found is not None and name in found.input_gradient_classes

    def sets_its_own_mode_only(self, reference: str, from_path: str) -> bool:
        """Is the project class imported as `reference` mode-dependent only by reading `self.training`?"""
        found = self._defining(reference, from_path)
        return found is not None and reference.rpartition(".")[2] in found.own_mode_classes

    def _defining(self, reference: str, from_path: str, depth: int = 0, defines=None) -> FileSummary | None:
        """The summary of the file that defines the nn.Module class imported as `reference` (or, with `defines`,
        whatever name that test finds in a file: a factory function)."""
        module, _, name = reference.rpartition(".")
        found = next((found for found in self._candidates(module, from_path)
                      # (a class its own file took for a module, a base elsewhere and a `forward` of its own,
                      # `class OnnxBackend(BaseBackend)`, is none when every base up the chain is plain, `class
                      # BaseBackend(ABC)`: its `forward()` runs an inference session)
                      if (name in found.classes and not self._plain_up_the_chain(found, name))
                      or (defines is not None and defines(found))), None)
        if found is None and depth < 3:
            onward = self._reexported(reference, from_path)
            return self._defining(*onward, depth + 1, defines=defines) if onward is not None else None
        return found

    def _plain_up_the_chain(self, found: FileSummary, name: str) -> bool:
        """`_plain_chain`, once per class."""
        cache = self.__dict__.setdefault("_plain_chains", {})
        key = (found.path, name)
        if key not in cache:
            cache[key] = self._plain_chain(found, name, 0)
        return cache[key]

    def _plain_chain(self, found: FileSummary, name: str, depth: int) -> bool:
        """Does every base of the class `name` of `found`, and theirs, end in plain bases (see `_PLAIN_BASES`)?"""
        shape = found.shapes.get(name)
        if shape is None or depth > 4:
            return False
        for base in shape.bases:  # (no bases at all, `class Base:`: a plain class)
            if base in _PLAIN_BASES:
                continue
            if base.startswith(":"):
                owner, owner_name = found, base[1:]
            else:
                located = self.resolve_shape(base, found.path) if base != "?" else None
                owner = self.files.get(os.path.abspath(located[1])) if located is not None else None
                owner_name = base.rpartition(".")[2]
            if owner is None or not self._plain_chain(owner, owner_name, depth + 1):
                return False
        return True

    def _inherited(self, found: FileSummary, owner: str, method: str, depth: int) -> FunctionSummary | None:
        """`method` as a base of the class `owner` of `found` defines it: a base of the same file (`:Base`)
        or of another (`pkg.base.BaseRegressor`, resolved from `found`'s file)."""
        for base in found.shapes[owner].bases:
            if base.startswith(":"):
                summary = found.functions.get(f"{base[1:]}.{method}")
                if summary is None and base[1:] in found.shapes and depth < 3:
                    summary = self._inherited(found, base[1:], method, depth + 1)
            elif base != "?":
                summary = self._resolve(f"{base}.{method}", found.path, depth + 1)
            else:
                continue
            if summary is not None:
                return summary
        return None

    def _reexported(self, reference: str, from_path: str) -> tuple[str, str] | None:
        """`models.LogReg` where `models/__init__.py` only does `from .logreg import LogReg`: the import it
        re-exports, and the file that does."""
        module, _, name = reference.rpartition(".")
        if not module:
            return None
        candidates = self._candidates(module, from_path)
        # An import of that name first, then `from .models import *` of a module that defines it, then (a
        # chain of star imports) the first star import of the only candidate.
        for found in candidates:
            onward = self._imported_names(found).get(name)
            if onward is not None and onward != reference:
                return onward, found.path
        for found in candidates:
            onward = self._star_exported(found, name, defined_only=len(candidates) > 1)
            if onward is not None and onward != reference:
                return onward, found.path
        return None

    def _star_exported(self, summary: FileSummary, name: str, defined_only: bool) -> str | None:
        """`from .models import *` in a package's `__init__`: `.models.<name>`, from the star-imported module
        that defines the name (else the first one, unless `defined_only`)."""
        stars = [ref[:-1] + name for ref in sorted(summary.unresolved) if ref.endswith(".*")]
        for onward in stars:
            module = onward.rpartition(".")[0]
            if any(name in found.functions or name in found.classes or name in found.shapes
                   or name in found.plain_functions for found in self._candidates(module, summary.path)):
                return onward
        return stars[0] if stars and not defined_only else None

    def _imported_names(self, summary: FileSummary) -> dict[str, str]:
        """Last name -> the import it comes from, for a file's recorded imports (once per file)."""
        cache = self.__dict__.setdefault("_imports_by_file", {})
        found = cache.get(summary.path)
        if found is None:
            found = cache[summary.path] = {}
            # (what it could not resolve first: the imports its calls name; then every import it binds, a
            # package's `from .trainer import Trainer` that nothing in it calls)
            for ref in (*sorted(summary.unresolved), *sorted(summary.imported)):
                found.setdefault(ref.rpartition(".")[2], ref)
        return found

    def bases_of(self: ProjectIndex | None, pending: list[tuple[str, str]]):
        """(reference, (shape, its file) or None where the index does not show it) for each (base reference,
        file naming it) of `pending`, then for their own bases, _MOST_BASES steps at most; (None, None) when it
        stops with bases left. (Called on the class with no index, on the first pass: nothing is shown.)"""
        for _ in range(_MOST_BASES):
            if not pending:
                return
            reference, path = pending.pop()
            if reference in _PLAIN_BASES:
                continue
            if reference.startswith(":"):  # a class of the same file as the base that names it
                shape = self.shape_in(path, reference[1:]) if self is not None else None
                found = (shape, path) if shape is not None else None
            else:
                found = self.resolve_shape(reference, path) if self is not None else None
            yield reference, found
            if found is not None:
                pending += [(base, found[1]) for base in found[0].bases]
        yield None, None

    def shape_in(self, path: str, name: str) -> ClassShape | None:
        """The shape of the class `name` of the file `path`, as its summary has it."""
        summary = self.files.get(os.path.abspath(path))
        return summary.shapes.get(name) if summary is not None else None

    def resolve_shape(self, reference: str, from_path: str, depth: int = 0) -> tuple[ClassShape, str] | None:
        """The shape of a project class imported as `reference`, and the file that defines it."""
        if depth == 0:
            return self._answer("shape", reference, from_path, lambda: self._resolve_shape(reference, from_path, 0))
        return self._resolve_shape(reference, from_path, depth)

    def _resolve_shape(self, reference: str, from_path: str, depth: int) -> tuple[ClassShape, str] | None:
        module, _, name = reference.rpartition(".")
        if not module:
            return None
        for found in self._candidates(module, from_path):
            shape = found.shapes.get(name)
            if shape is not None:
                return shape, found.path
        onward = self._reexported(reference, from_path) if depth < 3 else None
        return self.resolve_shape(*onward, depth + 1) if onward is not None else None

    def _candidates(self, module: str, from_path: str) -> list[FileSummary]:
        """The files of the index that `import module` may mean in `from_path`, nearest first."""
        # Asked many times over for the same imports of a file: kept per (module, file).
        cache = self.__dict__.setdefault("_candidates_by_file", {})
        key = (module, from_path)
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._find_candidates(module, from_path)
        return found

    def _folder(self, path: str) -> str:
        """The absolute folder of a file (of the index, or asking it), once per path."""
        folders = self.__dict__.setdefault("_folders", {})
        found = folders.get(path)
        if found is None:
            found = folders[path] = os.path.dirname(os.path.abspath(path))
        return found

    def _find_candidates(self, module: str, from_path: str) -> list[FileSummary]:
        if module.startswith("."):
            level = len(module) - len(module.lstrip("."))
            base = self._folder(from_path)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            rest = module.lstrip(".")
            target = os.path.join(base, *rest.split(".")) if rest else base
            return [self.files[p] for p in (target + ".py", os.path.join(target, "__init__.py")) if p in self.files]
        found = self.by_module.get(module, [])
        rooted = [summary for summary in found if _rooted(summary.path, module, from_path)]
        here = self._folder(from_path)
        # (the script's own folder first, as Python's path has it: a lecture's `helper.py`, not its neighbour's)
        return sorted(rooted or found, key=lambda summary: _distance(here, self._folder(summary.path)))

    def imports_a_nested_namesake(self, reference: str, from_path: str) -> bool:
        """Does `reference`'s module name only files of the index that Python would not import from here
        (`models/vendor/models/base.py` for `from models.base import X` in `models/train.py`)? Then the file
        it does import (`models/base.py`, a plain class naming no torch) may be missing from the index."""
        module = reference.rpartition(".")[0]
        found = self.by_module.get(module, []) if module and not module.startswith(".") else []
        return bool(found) and not any(_rooted(summary.path, module, from_path) for summary in found)

    def names_function(self, reference: str, from_path: str, depth: int = 0) -> bool:
        """Is `reference` (`util.masked_mae`, `.losses.dice`) a top-level function of a file of the index?"""
        module, _, name = reference.rpartition(".")
        if module and any(name in found.plain_functions for found in self._candidates(module, from_path)):
            return True
        onward = self._reexported(reference, from_path) if module and depth < 3 else None
        return onward is not None and self.names_function(*onward, depth + 1)

    def resolve(self, reference: str, from_path: str, depth: int = 0) -> FunctionSummary | None:
        """`.helpers.evaluate` / `utils.evaluate` / `pkg.mod.Class.method` seen from `from_path`."""
        if depth == 0:
            return self._answer("function", reference, from_path, lambda: self._resolve(reference, from_path, 0))
        return self._resolve(reference, from_path, depth)

    def _resolve(self, reference: str, from_path: str, depth: int) -> FunctionSummary | None:
        module, _, name = reference.rpartition(".")
        if not module:
            return None
        candidates: list[tuple[FileSummary, str]] = []
        if module.startswith("."):
            # `.helpers.evaluate`, or `.networks.Actor.act`: a method of a class of `.networks`
            dots = len(module) - len(module.lstrip("."))
            parts = reference[dots:].split(".")
            for cut in range(len(parts) - 1, 0, -1):
                candidates = [(found, ".".join(parts[cut:]))
                              for found in self._candidates("." * dots + ".".join(parts[:cut]), from_path)]
                if candidates:
                    break
        else:
            # `pkg.mod.func` or `pkg.mod.Class.method`: try each split into module + member.
            dotted_parts = reference.split(".")
            for cut in range(len(dotted_parts) - 1, 0, -1):
                module_name = ".".join(dotted_parts[:cut])
                member = ".".join(dotted_parts[cut:])
                for found in self.by_module.get(module_name, []):
                    candidates.append((found, member))
                if candidates:
                    break
        here = self._folder(from_path)
        candidates.sort(key=lambda c: _distance(here, self._folder(c[0].path)))
        for found, member in candidates:
            summary = found.functions.get(member)
            if summary is not None:
                return summary
            owner = member.split(".")[0]
            if owner in found.shapes and member.count(".") == 1 and depth < 3:
                # a method the class inherits (`PretrainedRegressor().predict(x)`, `predict` of its base)
                inherited = self._inherited(found, owner, member.split(".")[1], depth)
                if inherited is not None:
                    return inherited
            if owner in found.shapes or owner in found.plain_functions:
                return None  # the nearest file that defines it has nothing to say: not a namesake farther off
        onward = self._reexported(reference, from_path) if depth < 3 else None  # a package's __init__ re-export
        if onward is None and depth < 3 and "." in module:
            # (`pkg.Predictor.predict` where `pkg/__init__.py` re-exports the class: its method, where it is defined)
            owner = self._reexported(module, from_path)
            onward = (f"{owner[0]}.{name}", owner[1]) if owner is not None else None
        return self.resolve(*onward, depth + 1) if onward is not None else None


@lru_cache(maxsize=1 << 16)  # (asked again by every index a run builds, for the same imports)
def _rooted(path: str, module: str, from_path: str) -> bool:
    """Is `path` the file `import module` finds from `from_path`, with the root of the module's package
    (or the folder of the module) a folder that holds `from_path` (a script's folder, a project root)?"""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    depth = len(module.split(".")) + (1 if parts[-1] == "__init__.py" else 0)
    root = os.sep.join(parts[:-depth]) or os.sep
    here = os.path.dirname(os.path.abspath(from_path))
    return here == root or here.startswith(root.rstrip(os.sep) + os.sep)


@lru_cache(maxsize=1 << 16)
def _distance(a: str, b: str) -> int:
    """Folders between two folders (absolute, normalised): 0 for the same one, 2 for siblings."""
    first, second = a.rstrip(os.sep).split(os.sep), b.rstrip(os.sep).split(os.sep)
    shared = 0
    for x, y in zip(first, second):
        if x != y:
            break
        shared += 1
    return len(first) + len(second) - 2 * shared
