"""Which names a file shows to be nn.Modules, and where: built by a constructor (`net = Net()`),
used as one (`m.parameters()`, `m.eval()`, `m.state_dict()`), or annotated as one (`model: nn.Module`).
A name is known in the scope it was seen in: the same name in another function is another variable.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.collector import Collector
from modelint.facts.scopes import FunctionInfo
from modelint.facts.lattice import mode_of_call
from modelint.facts.modules import EVIDENCE_METHODS
from modelint.facts.names import is_torch_module, literal_value, value_key
from modelint.facts.returned_closures import own_returns


class ModuleNames:
    def __init__(self, table, collector: Collector) -> None:
        self.table = table
        self.imports = collector.imports
        self.collector = collector
        # This file's functions with the calls that surely reach them, and the attributes set only from a
        # constructor's parameters (see below): for the names passed along, and for passed_dependences().
        self.calls_of_functions = _calls_of_functions(collector)
        self.stored_parameters = _stored_parameters(collector)
        self.module_names = self._collect(collector)

    def _built_by_own_method(self, value: cst.BaseExpression, site):
        """`self.gcn = self._init_model()`, a method of the class every `return` of which builds a module of one
        class (`return GraphConv(...)`): that construction."""
        method = site.cls.methods.get(value.func.attr.value) if site.cls is not None and type(value) is cst.Call \
            and type(value.func) is cst.Attribute and value_key(value.func.value) == "self" else None
        returns = own_returns(method) if method is not None else []
        built = [self.table.module_expression(r.value)[0] if r.value is not None else None for r in returns]
        if not built or any(b is None or not b.certain for b in built) \
                or len({value_key(b.call.func) for b in built}) != 1:
            return None
        return built[0]

    def kept_from_the_creator(self, cls) -> dict[str, tuple]:
        """`self.<attr>` -> (its `__init__`, the parameter) for each attribute of the class that every assignment
        sets to one constructor parameter as it is (`def __init__(self, model): self.model = model`)."""
        cache = self.__dict__.setdefault("_kept_by_class", {})
        if cls not in cache:
            cache[cls] = {key: params[0] for (owner, key), params in self.stored_parameters.items()
                          if owner is cls and len(params) == 1}
        return cache[cls]

    def holds_a_function(self, cls, key: str) -> bool:
        """Does every assignment of `self.<attr>` in the class store a function, not call one (`self.loss =
        util.masked_mae`, a function of this file or of another file of the project)? Calling it is no
        forward, whatever its output feeds."""
        found = self.__dict__.get("_function_attributes")
        if found is None:
            found = self.__dict__["_function_attributes"] = self._function_attributes()
        return (cls, key) in found

    def referenced(self, cls, key: str) -> set[str]:
        """What the index must be asked about to tell whether `self.<attr>` holds a function (first pass)."""
        self.holds_a_function(cls, key)
        return self.__dict__["_references"].get((cls, key), set())

    def _function_attributes(self) -> set:
        local = {f.name for f in self.collector.functions if f.outer is None and f.cls is None}
        index = self.table.index
        stored, other = set(), set()
        references = self.__dict__["_references"] = {}
        for assign in self.collector.attribute_assigns:
            key = value_key(assign.target)
            if assign.site.cls is None or key is None or not key.startswith("self."):
                continue
            value = assign.value
            if type(value) is cst.Name and value.value in local and value.value not in self.imports.bindings:
                stored.add((assign.site.cls, key))
                continue
            qualified = self.imports.qualify(value) if type(value) in (cst.Name, cst.Attribute) else None
            if qualified is not None and index is not None and index.names_function(qualified, self.table.path):
                stored.add((assign.site.cls, key))
                continue
            if qualified is not None and not is_torch_module(qualified):
                references.setdefault((assign.site.cls, key), set()).add(qualified)
            other.add((assign.site.cls, key))
        return stored - other

    def _collect(self, collector: Collector) -> set:
        """Dotted names the file shows to be nn.Modules, each with the scope it was seen in.

        Entries are `(scope, key)`: a function (or None for module level) for plain
        names, the class for `self.` attributes (set in __init__, used in forward).
        The same name in another function is another variable.
        """
        names: set = set()
        weightless: set = set()  # names of losses and activations: modules, but nothing to evaluate

        def add(key: str, site) -> None:
            if key.startswith("self.") and site.cls is not None:
                names.add((site.cls, key))
            else:
                names.add((site.function, key))
            names.add(key)  # the bare key, for rules that only need "a module somewhere"

        for key, value, site in collector.call_assigns:
            built, _ = self.table.module_expression(value)
            if built is None and key.startswith("self."):
                built = self._built_by_own_method(value, site)
            if built is not None and built.certain or mode_of_call(value) is not None:
                add(key, site)  # (`self.net = torch.load(path).eval()`: only a module has a mode to switch)
                if built is not None and built.parameterless:
                    weightless.add((site.function, key))
        for site in collector.calls:
            func = site.node.func
            if type(func) is not cst.Attribute:
                continue
            receiver = value_key(func.value)
            if receiver is None:
                continue
            method = func.attr.value
            if method in EVIDENCE_METHODS or (method == "eval" and not site.node.args):
                add(receiver, site.site)
            elif method == "train" and (not site.node.args or isinstance(literal_value(site.node.args[0].value), bool)):
                if "trainer" not in receiver.lower() and "tokenizer" not in receiver.lower():
                    add(receiver, site.site)
        for function in collector.functions:
            for param in (*function.node.params.params, *function.node.params.kwonly_params):
                if param.annotation is not None and self._annotation_is_module(param.annotation.annotation):
                    names.add((function, param.name.value))
                    names.add(param.name.value)
                    qualified = self.imports.qualify(param.annotation.annotation) or ""
                    if qualified.startswith("torch.nn.") and api.PARAMETERLESS_LAYER.fullmatch(qualified.rsplit(".", 1)[-1]):
                        weightless.add((function, param.name.value))  # `criterion: _Loss`: nothing to evaluate
        self._passed_modules(collector, names, weightless)
        return names

    def _passed_modules(self, collector: Collector, names: set, weightless: set) -> None:
        """A parameter that every call of its function in this file fills with a name shown to be a module
        there (`self._predict(self.model, batch)` where `self.model.eval()` is seen) is a module too:
        the helper's `model.predict_step(x)` runs the caller's model. Repeated until nothing new, for
        helpers that hand the model on to helpers. A loss built by torch.nn is passed as a module too,
        but a helper's `criterion(out, y)` is no model to evaluate: not followed."""
        calls = self.calls_of_functions
        stored = self.stored_parameters
        while True:
            found = set()
            shown = names - weightless
            for (cls, key), params in stored.items():  # `self.model = model` in __init__, given a module
                if (cls, key) not in names and all((function, param) in shown for function, param in params):
                    found.add((cls, key))
            for function, sites in calls.items():
                for index, param in enumerate(function.positional_params):
                    if (function, param) in names or param in ("self", "cls"):
                        continue
                    passed = [_argument(call, index - skipped, param) for call, _caller, skipped in sites]
                    keys = [value_key(arg) if arg is not None else None for arg in passed]
                    if all(key is not None and _named_in(shown, key, caller)
                           for key, (_call, caller, _skipped) in zip(keys, sites)):
                        found.add((function, param))
            if not found:
                return
            names.update(found)

    def _annotation_is_module(self, annotation: cst.BaseExpression) -> bool:
        if type(annotation) is cst.SimpleString:
            return False
        project = self.table.project_class(annotation)
        if project is not None:
            return self.table.is_module_class(project)
        qualified = self.imports.qualify(annotation)
        if qualified is None:
            return False
        from modelint.facts.receivers import library_class  # (receivers builds on this table)

        known = library_class(qualified)  # `nn.Module`, `VisionEncoderDecoderModel`, a timm model...
        return bool(known is not None and known.module)

    def is_module_name(self, key: str, function: FunctionInfo | None) -> bool:
        """Is `key`, as seen in `function`, shown to be an nn.Module there (or in its class)?"""
        if key == "self":
            return function is not None and function.cls is not None and self.table.is_module_class(function.cls)
        return _named_in(self.module_names, key, function)


def _named_in(names: set, key: str, function: FunctionInfo | None) -> bool:
    """Is `key` in `names` as `function` sees it: a `self.` attribute of its class, or a name of its scope
    or of an enclosing one that no parameter hides?"""
    if key.startswith("self."):
        cls = function.cls if function is not None else None
        return cls is not None and (cls, key) in names
    scope = function
    head = key.split(".")[0]
    while True:
        if (scope, key) in names:
            return True
        if scope is None or head in scope.param_set:
            return False  # a parameter hides the names of the enclosing scopes
        scope = scope.outer  # closures see the enclosing function's names (and the module's)


def _argument(call: cst.Call, index: int, name: str) -> cst.BaseExpression | None:
    """What a call passes for the parameter at `index` (among the arguments the call writes) named `name`."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    positional = [arg for arg in call.args if arg.keyword is None]
    return positional[index].value if 0 <= index < len(positional) else None


def _calls_of_functions(collector: Collector) -> dict:
    """This file's functions called in it, each with its calls: (call, calling function, how many leading
    parameters the call does not write: 1 for `self`). Only calls that surely reach the function:
    `name(...)` of a top-level function and `self.name(...)` of a method of the caller's own class."""
    top = {f.name: f for f in collector.functions if f.outer is None and f.cls is None}
    methods = {(f.cls, f.name): f for f in collector.functions if f.cls is not None}
    constructors = {f.cls.name: f for f in collector.functions if f.name == "__init__" and f.cls is not None
                    and f.cls.outer is None}
    shadowed = set(collector.imports.bindings)
    out: dict = {}
    for site in collector.calls:
        func = site.node.func
        caller = site.site.function
        if type(func) is cst.Name and func.value in top and func.value not in shadowed:
            callee, skipped = top[func.value], 0
        elif type(func) is cst.Name and func.value in constructors and func.value not in shadowed:
            callee, skipped = constructors[func.value], 1  # `EvalUtility(batch, model)` runs its __init__
        elif type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self" \
                and caller is not None and caller.cls is not None and (caller.cls, func.attr.value) in methods:
            callee, skipped = methods[(caller.cls, func.attr.value)], 1
        else:
            continue
        out.setdefault(callee, []).append((site.node, caller, skipped))
    # A function some call reaches with `*args`/`**kwargs` hands on what we cannot see: left alone.
    return {f: sites for f, sites in out.items()
            if not any(arg.star for call, _caller, _skipped in sites for arg in call.args)}




def _stored_parameters(collector: Collector) -> dict:
    """(class, `self.x`) -> the (__init__, parameter) pairs it is assigned from, for attributes that every
    assignment in the class sets to a parameter of the constructor as it is (`self.model = model`, or moved:
    `model.to(device)`)."""
    out: dict = {}
    other: set = set()
    for assign in collector.attribute_assigns:
        cls, function = assign.site.cls, assign.site.function
        key = value_key(assign.target)
        if cls is None or key is None or not key.startswith("self.") or key.count(".") != 1:
            continue
        value = assign.value
        while type(value) is cst.Call and type(value.func) is cst.Attribute and value.func.attr.value in api.MOVES:
            value = value.func.value  # (`self.actor = actor.to(device)`: the same module, moved)
        if function is not None and function.name == "__init__" and type(value) is cst.Name \
                and value.value in function.param_set and type(assign.node) is cst.Assign:
            out.setdefault((cls, key), []).append((function, value.value))
        else:
            other.add((cls, key))
    return {key: params for key, params in out.items() if key not in other}


def passed_dependences(flow) -> dict:
    """(class, `self.x`) -> how mode-dependent the modules its constructions in this file hand to the
    constructor parameter stored there are (`GaussianDiffusion(model)` with `model = Unet(...)`): UNKNOWN
    for anything we cannot see built."""
    from modelint.facts.modules import Dependence

    names = flow.modules.names
    out: dict = {}
    for (cls, key), params in names.stored_parameters.items():
        handed = stored_arguments(names, params)
        found = Dependence.INDEPENDENT if handed else Dependence.UNKNOWN
        for value, caller in handed:
            found = max(found, _dependence_of(flow, value, caller))
        out[(cls, key)] = found
    return out


def stored_arguments(names: ModuleNames, params: list) -> list[tuple]:
    """(argument or None, calling function) for each call of this file that runs the constructor storing an
    attribute from its parameter (`GaussianDiffusion(model, ...)` runs its __init__), for each (`__init__`,
    parameter) pair of `params` (ModuleNames.stored_parameters)."""
    init = params[0][0]  # (every such assignment is in the class's __init__)
    out = []
    for _init, param in params:
        index = init.positional_params.index(param) if param in init.positional_params else -1
        for call, caller, skipped in names.calls_of_functions.get(init, []):
            out.append((_argument(call, index - skipped, param), caller))
    return out


def _dependence_of(flow, value, function):
    """The dependence of the module an argument is: built right there, or bound to a construction in the
    caller's scope."""
    from modelint.facts.modules import Dependence

    if value is None:
        return Dependence.UNKNOWN
    if type(value) is cst.Name:
        bindings = flow._scope_bindings(function).get(value.value) or []
        values = [b.value for b in bindings if b.kind == "assign"]
        if not values or len(values) != len(bindings):
            return Dependence.UNKNOWN
    else:
        values = [value]
    found = Dependence.INDEPENDENT
    for item in values:
        built = flow.modules.module_expression(item)[0]
        found = max(found, built.dependence if built is not None else Dependence.UNKNOWN)
    return found
