"""Grad-mode regions: which expressions switch autograd off or on.

`with torch.no_grad():`, `@torch.inference_mode()`, `torch.set_grad_enabled(False)`
as a statement, `with torch.set_grad_enabled(flag):` (unknown), and the misspellings
MDL011 reports, which count as what their author meant so nothing below them is
blamed twice.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.lattice import mode_of_call
from modelint.facts.names import NOT_LITERAL, dotted, literal_value
from modelint.facts.walk import iter_nodes


def misspelled_no_grad(qualified: str | None) -> bool:
    if not qualified or not qualified.startswith("torch.") or qualified.count(".") != 1:
        return False
    name = qualified[6:]
    if name in api.TORCH_GRAD_API:
        return False
    from modelint.textutil import edit_distance

    return name == "zero_grad" or any(edit_distance(name, real) <= 2 for real in ("no_grad", "inference_mode"))


def _library_grad_wrapper(imports, expr: cst.BaseExpression) -> bool:
    """`smart_inference_mode()`, `maybe_no_grad`: not torch's, named after what they return."""
    target = expr.func if type(expr) is cst.Call else expr
    if imports.is_torch_name(imports.qualify(target)):
        return False
    name = target.attr.value if type(target) is cst.Attribute else target.value \
        if type(target) is cst.Name else ""
    switched_off = type(expr) is cst.Call and expr.args and literal_value(expr.args[0].value) is False
    return name.endswith(("no_grad", "inference_mode")) and not switched_off


def disables_grad(imports, expr: cst.BaseExpression, wrappers: frozenset[str] = frozenset()) -> bool:
    """Is this decorator/with-item a grad-free region (`@torch.no_grad`, `set_grad_enabled(False)`)?

    A library's own wrapper named after the API it wraps counts too (`@smart_inference_mode()`,
    `@maybe_no_grad`): such helpers return `torch.no_grad`/`torch.inference_mode`. So does a
    decorator of the file that calls what it wraps under no_grad (`wrappers`, see grad_wrappers)."""
    if _library_grad_wrapper(imports, expr):
        return True
    if type(expr) in (cst.Name, cst.Attribute) and wrappers and dotted(expr) in wrappers:
        return True
    if type(expr) is cst.Call:
        # (`@for_extract_embedding(max_chunk=10000)`: a decorator factory of the file, made of such a wrapper)
        return grad_effect(imports, expr) == "free" or (bool(wrappers) and dotted(expr.func) in wrappers)
    return imports.qualify(expr) in api.GRAD_DISABLING


def grad_effect(imports, expr: cst.BaseExpression) -> str | None:
    """'free', 'enabled', 'unknown' for a grad-mode call; None for anything else.

    `with torch.no_grad:` (no call) counts as what its author meant: MDL004 reports
    the TypeError, and nothing below it should be blamed on a missing no_grad.
    """
    if type(expr) in (cst.Name, cst.Attribute):
        qualified = imports.qualify(expr)
        return "free" if qualified in api.GRAD_DISABLING else "enabled" if qualified in api.GRAD_ENABLING else None
    if type(expr) is cst.IfExp:
        # `with (torch.enable_grad() if training else torch.no_grad()):`: set_grad_enabled(training) spelled out
        # (or `torch.no_grad() if frozen else contextlib.nullcontext()`: autograd as it was, on that path)
        chosen = {branch_grad_effect(imports, expr.body), branch_grad_effect(imports, expr.orelse)}
        return None if None in chosen or chosen == {"keep"} else chosen.pop() if len(chosen) == 1 else "unknown"
    if type(expr) is cst.BooleanOperation and type(expr.left) is cst.Call:
        # `with accelerator.accumulate(model) and torch.no_grad():`: a context manager object is true, so `and`
        # hands over its right side (and `or` its left): that one is the with-item
        return grad_effect(imports, expr.right if type(expr.operator) is cst.And else expr.left)
    if type(expr) is not cst.Call:
        return None
    if _library_grad_wrapper(imports, expr):
        return "free"
    qualified = imports.qualify(expr.func)
    if misspelled_no_grad(qualified):
        return "free"  # `with torch.zero_grad():` / `torch.nograd()`: MDL011 reports the name
    if qualified in api.GRAD_DISABLING:
        return "enabled" if expr.args and literal_value(expr.args[0].value) is False else "free"
    if qualified in api.GRAD_ENABLING:
        return "enabled"
    if qualified in api.SET_GRAD_ENABLED:
        value = literal_value(expr.args[0].value) if expr.args else None
        return "free" if value is False else "enabled" if value is True else "unknown"
    return None


def branch_grad_effect(imports, expr: cst.BaseExpression) -> str | None:
    """grad_effect of one branch of a conditional with-item; 'keep' for `contextlib.nullcontext()`."""
    if type(expr) is cst.Call and imports.qualify(expr.func) == "contextlib.nullcontext":
        return "keep"
    return grad_effect(imports, expr)


def grad_wrappers(collector) -> frozenset[str]:
    """Module-level functions of the file that call their first parameter (or the one of the function they
    return, for a decorator factory) under no_grad: decorators such as

        def nograd(f):
            def wrapped(*args, **kwargs):
                with torch.no_grad():
                    return f(*args, **kwargs)
            return wrapped
    """
    names = set()
    for site in collector.calls:
        function = site.site.function
        if function is None or type(site.node.func) is not cst.Name:
            continue
        outer, wraps = function, False
        while outer is not None:  # (or a decorator factory: `def deco(chunk): def wrapper(f): ...`, f its param)
            wraps = wraps or (outer is not function and bool(outer.params) and site.node.func.value == outer.params[0])
            if outer.outer is None:
                break
            outer = outer.outer
        if outer.cls is not None or not wraps:
            continue
        if in_no_grad_block(collector.imports, site.site) and outer.name not in collector.imports.bindings:
            names.add(outer.name)
    return frozenset(names)


def imported_decorators(collector) -> dict[str, list[str]]:
    """The decorators of the file's functions that other files of the project may define, as written here
    (`make_nograd_func`, `utils.make_nograd_func`) -> the references the index may know them by (one per
    star-imported module for a name nothing here binds). Only for functions that run or switch a model: the
    index says which run what they wrap under no_grad (FileSummary.grad_wrappers)."""
    imports = collector.imports
    defined = {function.name for function in collector.functions if function.outer is None and function.cls is None}
    out: dict[str, list[str]] = {}
    for function in collector.functions:
        if not function.mode_relevant and not function.calls_params and not function.calls_self_attribute:
            continue
        for decorator in function.node.decorators:
            written = dotted(decorator.decorator)
            if written is None or written in out:
                continue
            qualified = imports.qualify(decorator.decorator)
            if qualified is not None:
                if not imports.is_torch_name(qualified) and "." in qualified:
                    out[written] = [qualified]
            elif "." not in written and imports.star_modules and written not in defined:
                out[written] = [f"{module}.{written}" for module in imports.star_modules]
    return out


def in_no_grad_block(imports, site) -> bool:
    """Is a site lexically inside a `with torch.no_grad():` (or another grad-disabling `with`)?"""
    return bool(no_grad_blocks(imports, site))


def no_grad_blocks(imports, site) -> list:
    """The `with torch.no_grad():` (or other grad-disabling `with`) statements around a site, outermost first."""
    return [guard for guard in site.guards if type(guard) is cst.With
            and any(grad_effect(imports, item.item) == "free" for item in guard.items)]


def explicitly_grad_enabled(imports, site) -> bool:
    """Is a site lexically inside `with torch.enable_grad():` (`set_grad_enabled(True)`), or in a function decorated
    so? Its author turned autograd on for it on purpose (test-time optimisation inside a no_grad validation)."""
    def enables(expr) -> bool:
        return grad_effect(imports, expr) == "enabled"

    return _lexically(site, enables, enables)


def lexically_grad_free(imports, site, wrappers: frozenset[str] = frozenset()) -> bool:
    """Is a site lexically inside `with torch.no_grad()` or a function with a grad-disabling decorator?"""
    return _lexically(site, lambda item: grad_effect(imports, item) == "free",
                      lambda decorator: disables_grad(imports, decorator, wrappers))


def _lexically(site, in_block, decorated) -> bool:
    """Is a site inside a `with` one of whose items `in_block` accepts, or in a function (or one enclosing it)
    one of whose decorators `decorated` accepts?"""
    if any(type(guard) is cst.With and any(in_block(item.item) for item in guard.items) for guard in site.guards):
        return True
    function = site.function
    while function is not None:
        if any(decorated(decorator) for decorator in function.decorators):
            return True
        function = function.outer
    return False


def forward_turns_grad_off(imports, cls, wrappers: frozenset[str] = frozenset()) -> bool:
    """Does calling a module of this class record no graph, whatever the caller's grad mode?"""
    return forward_grad(imports, cls, wrappers) == "free"


def forward_grad(imports, cls, wrappers: frozenset[str] = frozenset(), flow=None) -> str | None:
    """What the class's own `forward` does to autograd: "free" when it is decorated `@torch.no_grad()` (or the
    like), runs its whole body in `with torch.no_grad():`, or is one `return` handing over to a method of the
    class that does either (`def forward(self, cond): return self.sample(cond)`); "mode" when its body
    runs in `with torch.set_grad_enabled(self.training):` (no graph in eval mode); else None. A plain class
    with no `forward` is run by its `__call__` (`Scorer(net)` whose `__call__` runs `net` under no_grad). With
    the file's `flow`, methods come from the class or its bases there, the class's first (a base's `forward`
    handing over to `self.augment(x)`, which the subclass overrides under no_grad)."""
    methods = _methods_with_bases(cls, flow) if flow is not None else cls.methods
    forward = methods.get("forward") or methods.get("__call__")
    if forward is None:
        return None
    own = method_grad(imports, forward, wrappers)
    if own is not None:
        return own
    if _returns_literals_only(forward):
        return "free"  # (`return True` after pruning weights through `.data`: no output carries a graph)
    return "free" if _hands_over_to_grad_free(imports, methods, forward, wrappers, {forward}) else None


def _methods_with_bases(cls, flow) -> dict:
    """The methods a class of the file has, its own or inherited from its bases in the file (its own first)."""
    methods: dict = {}
    for name in flow.class_and_bases(cls.name):
        info = cls if name == cls.name else flow.modules.classes.get(name)
        for method_name, method in (info.methods.items() if info is not None else ()):
            methods.setdefault(method_name, method)
    return methods


def _returns_literals_only(method: cst.FunctionDef) -> bool:
    """Does every `return` of the method (one at least) hand back a literal (`True`, `None`, a number)?"""
    body = _body(method)
    last = body[-1].body[-1] if body and type(body[-1]) is cst.SimpleStatementLine and body[-1].body else None
    if not (type(last) is cst.Return and last.value is not None and literal_value(last.value) is not NOT_LITERAL):
        return False  # (its last statement first: the rest of the body goes unread for nearly every forward)
    returned = [node.value for node in iter_nodes(method.body) if type(node) is cst.Return]
    return bool(returned) and all(value is not None and literal_value(value) is not NOT_LITERAL for value in returned)


_TEST_BUILTINS = frozenset({"len", "isinstance", "hasattr", "getattr"})


def _hands_over_to_grad_free(imports, methods: dict, method: cst.FunctionDef, wrappers, seen: set) -> bool:
    """Does the method only pick (`if full:`), guard (`if self.training: raise ...`) and return calls of the
    class's methods, handed names as they are, each of which records no graph (a no_grad body, or a hand-over
    of its own)? RWKV's `forward` choosing `forward_seq` or `forward_one`, a detector's `return self.inference(x)`."""
    returned = []
    stack = list(_body(method))
    while stack:
        statement = stack.pop()
        if type(statement) is cst.If:
            if any(type(node) is cst.Call and dotted(node.func) not in _TEST_BUILTINS
                   and not (type(node.func) is cst.Attribute and dotted(node.func.value) != "self")
                   for node in iter_nodes(statement.test)):
                return False  # (`tokens.dim() == 1`, `isinstance(x, list)`; not `self.gate(x) > 0`)
            stack.extend(statement.body.body)
            if statement.orelse is not None:
                stack.extend([statement.orelse] if type(statement.orelse) is cst.If else statement.orelse.body.body)
            continue
        if type(statement) is not cst.SimpleStatementLine:
            return False
        for small in statement.body:
            if type(small) in (cst.Raise, cst.Pass):
                continue
            value = small.value if type(small) is cst.Return else None
            func = value.func if type(value) is cst.Call else None
            if type(func) is not cst.Attribute or dotted(func.value) != "self" \
                    or any(type(node) is cst.Call for arg in value.args for node in iter_nodes(arg.value)):
                return False
            returned.append(func.attr.value)
    for name in returned:
        target = methods.get(name)
        if target is None or target in seen:
            return False
        if method_grad(imports, target, wrappers) != "free" \
                and not _hands_over_to_grad_free(imports, methods, target, wrappers, seen | {target}):
            return False
    return bool(returned)


def method_grad(imports, method: cst.FunctionDef, wrappers: frozenset[str]) -> str | None:
    """"free" for a method decorated `@torch.no_grad()`, whose whole body runs in `with torch.no_grad():`, or that
    uses its object only in such blocks; "mode" for one whose body runs in `with
    torch.set_grad_enabled(self.training):`; else None."""
    if any(disables_grad(imports, d.decorator, wrappers) for d in method.decorators):
        return "free"
    body = _body(method)
    while len(body) > 1 and switches_itself(body[0]):
        body = body[1:]  # (`self.eval()` first: an inference-only module setting its own mode)
    if len(body) == 1 and type(body[0]) is cst.With and len(body[0].items) == 1:
        item = body[0].items[0].item
        if grad_effect(imports, item) == "free":
            return "free"
        if type(item) is cst.Call and imports.qualify(item.func) in api.SET_GRAD_ENABLED and len(item.args) == 1 \
                and dotted(item.args[0].value) == "self.training":
            return "mode"
    return "free" if _object_used_only_without_grad(imports, method, body) else None


def _object_used_only_without_grad(imports, method: cst.FunctionDef, body: list) -> bool:
    """`with torch.no_grad(): out = self.net(obs)`, then `return out.cpu().numpy()`: every use of the object (its
    layers, its parameters) is in a block run under no_grad, so no graph of its weights is recorded."""
    params = method.params.params
    owner = params[0].name.value if params else None
    if owner is None:
        return False
    blocks = 0
    for statement in body:
        if type(statement) is cst.With and all(grad_effect(imports, i.item) == "free" for i in statement.items):
            blocks += 1
        elif any(type(node) is cst.Name and node.value == owner for node in iter_nodes(statement)):
            return False
    return blocks > 0


def switches_itself(statement) -> bool:
    """`self.eval()` (or `self.train(False)`) as a statement."""
    call = statement.body[0].value if type(statement) is cst.SimpleStatementLine and len(statement.body) == 1 \
        and type(statement.body[0]) is cst.Expr else None
    return type(call) is cst.Call and mode_of_call(call) == "eval" and dotted(call.func.value) == "self"


def _body(method: cst.FunctionDef) -> list:
    return [statement for statement in (method.body.body if type(method.body) is cst.IndentedBlock else ())
            if not _docstring(statement)]


def _docstring(statement) -> bool:
    return type(statement) is cst.SimpleStatementLine and len(statement.body) == 1 \
        and type(statement.body[0]) is cst.Expr and type(statement.body[0].value) in (cst.SimpleString,
                                                                                      cst.ConcatenatedString)


def constructor_turns_grad_off(flow, cls) -> cst.Call | None:
    """`torch.set_grad_enabled(False)` as a statement of the class's own `__init__`: autograd is off for
    the whole process once an object exists, so in every method that object runs (an inference wrapper)."""
    cache = flow.__dict__.setdefault("_grad_off_by_constructor", {})
    if cls not in cache:
        cache[cls] = None
        init = flow.collector.constructor(cls)
        body = init.node.body.body if init is not None and type(init.node.body) is cst.IndentedBlock else ()
        for statement in body:
            for small in statement.body if type(statement) is cst.SimpleStatementLine else ():
                call = small.value if type(small) is cst.Expr else None
                if type(call) is cst.Call and flow.imports.qualify(call.func) in api.SET_GRAD_ENABLED \
                        and grad_effect(flow.imports, call) == "free":
                    cache[cls] = call
    return cache[cls]


def module_turns_grad_off(flow) -> cst.Call | None:
    """`torch.set_grad_enabled(False)` as a statement of the module itself (an inference library's top): it runs
    when the file is imported, before any of its functions can, so a function only other files call starts
    with autograd off (unless a later module-level statement turns it back on)."""
    cache = flow.__dict__
    if "_grad_off_by_module" not in cache:
        found = None
        for statement in flow.collector.module_node.body:
            for small in statement.body if type(statement) is cst.SimpleStatementLine else ():
                call = small.value if type(small) is cst.Expr else None
                if type(call) is cst.Call and flow.imports.qualify(call.func) in api.SET_GRAD_ENABLED:
                    found = call if grad_effect(flow.imports, call) == "free" else None
        cache["_grad_off_by_module"] = found
    return cache["_grad_off_by_module"]


def returned_grad_context(imports, function) -> str | None:
    """"free" for a function of the file every `return` of which hands back a grad-disabling context, or a neutral
    one on some path (`def grad_off(): return torch.no_grad() if new_torch else contextlib.suppress()`):
    `with grad_off():` runs its body under no_grad."""
    cache = function.__dict__
    if "_returned_grad_context" not in cache:
        from modelint.facts.returned_closures import own_returns

        effects = set()
        for returned in own_returns(function.node):
            value = returned.value
            effects.add("keep" if type(value) is cst.Call and imports.qualify(value.func) in api.NEUTRAL_CONTEXTS
                        else branch_grad_effect(imports, value) if value is not None else None)
        cache["_returned_grad_context"] = "free" if "free" in effects and effects <= {"free", "keep"} else None
    return cache["_returned_grad_context"]
