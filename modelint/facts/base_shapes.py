"""What the bases of a class that are defined in other files show about it.

A subclass's method may run inside a template method of a base in another file
(pyod's `BaseDetector.decision_function()` puts `self.model` in eval mode and calls
the subclass's `evaluating_forward()` under no_grad; deepdyn's `NNTrainer.test()`
calls `self.evaluate()` without). The project index keeps each class's shape
(modelint.summary.ClassShape): which `self.<attr>` its methods switch, and which of
its own methods it calls, under no_grad or not. A base the index cannot show
(a library's, or on the first pass) is unknown; on the first pass it is asked for,
so that the file is analysed again with the index. A base of the scientific stack
or the standard library (sklearn's `BaseEstimator`, `abc.ABC`) calls no hook of a
subclass and sets no torch mode: it is passed over.
"""

from __future__ import annotations


import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.libraries import STANDARD_LIBRARY
from modelint.facts.names import BUILTIN_NAMES, dotted
from modelint.summary import ClassShape, ProjectIndex



def base_shapes_elsewhere(flow, cls) -> list | None:
    """The shapes of every base of `cls` (and of its bases in this file) defined in another file, through
    their own bases; None when one of them cannot be seen. (Once per class and pass.)"""
    cache = flow.__dict__.setdefault("_base_shapes", {})
    if cls not in cache:
        asked: set[str] = set()
        cache[cls] = (_base_shapes(flow, cls, asked), asked)
    shapes, asked = cache[cls]
    flow.unresolved |= asked  # (asked again in every round: the rounds start their list afresh)
    return shapes


def a_visible_base_elsewhere_switches(flow, cls, key: str) -> bool:
    """Does a base of `cls` defined in another file that the index shows set the mode of `key` (`"self"`:
    `fit()` ending in `self.eval()`)? Bases it cannot see (torch's, a library's) say nothing."""
    return any(found is not None and key in found[0].switches for _reference, found in _bases_elsewhere(flow, cls))


def _base_shapes(flow, cls, asked: set) -> list | None:
    shapes = []
    for reference, found in _bases_elsewhere(flow, cls):
        if reference is None:
            return None  # (more bases than the walk follows)
        if found is None:
            if _of_a_library_without_hooks(reference):
                continue  # (sklearn's `BaseEstimator`, `abc.ABC`: no torch mode, no call of a subclass's hook)
            if flow.index is None and reference != "?":
                asked.add(reference)  # the second pass may see it
            return None
        shapes.append(found[0])
    return shapes


def _of_a_library_without_hooks(reference: str) -> bool:
    head = reference.split(".", 1)[0]
    return head in api.NOT_MODULE_LIBRARIES or (head in STANDARD_LIBRARY and head not in ("unittest", "typing"))


def _bases_elsewhere(flow, cls):
    """(reference, (shape, its file) or None where the index does not show it) for each base of `cls` (and of its
    bases in this file) defined in another file, then for their own bases (see ProjectIndex.bases_of)."""
    classes = flow.modules.classes
    pending = [(flow.imports.qualify(base) or _text(base), flow.path)
               for name in flow.class_and_bases(cls.name) if name in classes
               for base in classes[name].bases if flow.modules.project_class(base) is None]
    return ProjectIndex.bases_of(flow.index, pending)


def switched_by_bases_elsewhere(flow, cls, key: str) -> bool:
    """May a base class defined elsewhere set the mode of `self.<attr>`? Yes unless the project index
    shows every such base, and none of them does."""
    shapes = base_shapes_elsewhere(flow, cls)
    return shapes is None or any(key in shape.switches for shape in shapes)


def grad_of_calls_by_bases(flow, function) -> bool | None:
    """How bases defined elsewhere call this method on `self`: True when every such call is under no_grad,
    False when one is not, None when they make none (or cannot be seen)."""
    if function is None or function.cls is None or function.outer is not None:
        return None
    shapes = base_shapes_elsewhere(flow, function.cls)
    calls = [free for shape in shapes or () for name, free, _evaluated in shape.hook_calls if name == function.name]
    if not calls or False in calls:
        return False if calls else None
    return None if None in calls else True  # (None: under a grad mode a subclass may choose, see hook_calls)


def called_by_bases_that_switch_modes(flow, function) -> bool:
    """Do bases defined elsewhere call this method on `self`, and do their methods set modes themselves
    (`eval_task()`: `self.eval()`, then `self._eval_task(loader)`; `after_task()` reaching it through
    another hook)? Then the mode it runs in is theirs to choose: nothing this file shows."""
    if function is None or function.cls is None or function.outer is not None:
        return False
    shapes = base_shapes_elsewhere(flow, function.cls) or ()
    called = any(name == function.name for shape in shapes for name, _free, _evaluated in shape.hook_calls)
    return called and any(shape.switches or any(evaluated for _n, _f, evaluated in shape.hook_calls)
                          for shape in shapes)


def _text(base) -> str:
    return dotted(base) or "?"


def shape_of(receivers, info, hook_calls: frozenset = frozenset(), forward_hooks: frozenset = frozenset()) -> ClassShape:
    """The shape of a class of this file, for the project index (see modelint.summary.ClassShape)."""
    bases = []
    for base in info.bases:
        if receivers.modules.project_class(base) is not None:
            bases.append(f":{base.value}")
            continue
        qualified = receivers.imports.qualify(base)
        text = dotted(base)
        bases.append(qualified or (text if text in BUILTIN_NAMES else "?"))
    defines = set(info.methods)
    for statement in info.node.body.body if type(info.node.body) is cst.IndentedBlock else ():
        if type(statement) is cst.SimpleStatementLine:
            for small in statement.body:
                targets = [t.target for t in small.targets] if type(small) is cst.Assign else \
                    [small.target] if type(small) is cst.AnnAssign else []
                defines.update(t.value for t in targets if type(t) is cst.Name)
    from modelint.facts.receivers import instance_method, library_class  # (receivers builds the shapes with this)
    # (and what its methods store on the object, `self.zero_pad = nn.ZeroPad2d(1)`: `self.zero_pad(x)` is no typo;
    # not nn.Module's own names, `self.training = False`, `self.train = train`, which MDL010/MDL013 are about)
    defines.update(assign.target.attr.value for assign in receivers.collector.attribute_assigns
                   if assign.site.cls is info and assign.target.attr.value not in api.MODULE_METHODS
                   and assign.target.attr.value != "training" and type(assign.target.value) is cst.Name
                   and (method := instance_method(assign.site.function, None)) is not None
                   and assign.target.value.value == method.params[0])

    torch_layer = any(b.startswith("torch.nn.") and library_class(b) is not None and library_class(b).leaf
                      for b in bases)
    builds = torch_layer and any(receivers.modules.construction(call) is not None for call in info.calls)
    switches = frozenset(key for call in info.calls if type(call.func) is cst.Attribute
                         and call.func.attr.value in ("eval", "train")
                         and (key := dotted(call.func.value)) is not None
                         and (key == "self" or key.startswith("self.")))
    stores = []
    for key, (init, param) in receivers.modules.names.kept_from_the_creator(info).items():
        positional = init.positional_params[1:]
        stores.append((param, positional.index(param) if param in positional else -1, key))
    return ClassShape(tuple(bases), frozenset(defines), builds, switches, hook_calls, tuple(sorted(stores)),
                      forward_hooks)


def forward_hook_calls(collector) -> dict:
    """class -> the methods its own `forward` (or `__call__`) calls on `self` (one pass over the file's calls)."""
    out: dict = {}
    for site in collector.calls:
        func, function = site.node.func, site.site.function
        if function is not None and function.cls is not None and function.outer is None \
                and function.name in ("forward", "__call__") and type(func) is cst.Attribute \
                and type(func.value) is cst.Name and func.value.value == "self":
            out.setdefault(function.cls, set()).add(func.attr.value)
    return {cls: frozenset(names) for cls, names in out.items()}


def called_by_a_base_forward(flow, function) -> bool:
    """Does a base defined elsewhere call this method on `self` from its own `forward` (a template dispatching
    `self.train_forward(...)` or `self.inference_forward(...)` by mode)? Then it is part of the forward: the
    model's callers decide its grad mode."""
    if function is None or function.cls is None or function.outer is not None:
        return False
    return any(found is not None and function.name in found[0].forward_hooks
               for _reference, found in _bases_elsewhere(flow, function.cls))


def hook_calls(collector, imports) -> dict:
    """class -> {(method, under no_grad, after an eval())} for every `self.<method>(...)` call in its methods;
    "after an eval()": the method put `self` or one of its attributes in eval mode earlier in its body
    (`self.eval()`, then `return self._eval_task(loader)`), and not back in training mode since. "Under
    no_grad" is None where the method making the call runs under a conditional grad mode (`with
    torch.set_grad_enabled(self.enable_grad): self._iter()`, a subclass choosing the flag)."""
    out: dict = {}
    evaluated: dict = {}  # method -> has it switched `self` (or a part) to eval mode so far
    own_calls: list = []
    for site in collector.calls:
        func = site.node.func
        if site.site.cls is None or type(func) is not cst.Attribute:
            continue
        receiver = dotted(func.value) or ""
        if func.attr.value in ("eval", "train") and (receiver == "self" or receiver.startswith("self.")):
            evaluated[site.site.function] = func.attr.value == "eval" and not site.node.args
            continue
        if receiver == "self":
            own_calls.append((site, func.attr.value, _grad_at(imports, site.site),
                              evaluated.get(site.site.function, False)))
    # (a call with autograd on, in a method the class itself calls only under a grad mode: that mode)
    entry: dict = {}
    for site, name, grad, _evaluated in own_calls:
        entry.setdefault((site.site.cls, name), set()).add(grad)
    for site, name, grad, was_evaluated in own_calls:
        function = site.site.function
        if grad is False and function is not None and function.outer is None:
            callers = entry.get((site.site.cls, function.name), set())
            grad = True if callers == {True} else None if callers and False not in callers else grad
        out.setdefault(site.site.cls, set()).add((name, grad, was_evaluated))
    return {cls: frozenset(calls) for cls, calls in out.items()}


def _grad_at(imports, site) -> bool | None:
    """Lexically under no_grad (True), under a conditional grad mode (None: `set_grad_enabled(flag)`), or not."""
    from modelint.facts.regions import grad_effect, lexically_grad_free

    if lexically_grad_free(imports, site):
        return True
    conditional = any(type(guard) is cst.With and any(grad_effect(imports, i.item) == "unknown" for i in guard.items)
                      for guard in site.guards)
    return None if conditional else False
