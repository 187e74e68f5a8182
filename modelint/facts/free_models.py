"""Models a function uses without binding them: module-level globals and an enclosing function's names.

A script builds `net = Net()` at the top and `def evaluate(): ... net(x)` reaches it as a
global; a closure `def step(): model(x)` reaches its enclosing function's `model`. The
mode flow follows such names through the function's summary, as if they were parameters
bound by name at each call.

A module-level name counts as a global model when its constructor is known to build a
module with weights, or, built where this file cannot see (`project_models.Net(...)`),
when the script or a function reaching it as the global uses it as a module
(`model.parameters()`, `model.eval()`).
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.collector import Collector
from modelint.facts.scopes import FunctionInfo
from modelint.facts.modules import ModuleTable, unwrap_chain
from modelint.facts.names import dotted, key_root


# What unpickles a module saved whole (`torch.save(model, path)`) or a TorchScript module: in its saved mode.
_LOADERS = frozenset({"torch.load", "torch.jit.load"})


class FreeModels:
    def __init__(self, collector: Collector, modules: ModuleTable) -> None:
        self.collector = collector
        self.modules = modules

    @cached_property
    def loaded_modules(self) -> frozenset[tuple]:
        """(scope, name) for names bound to what `torch.load` unpickles (`model = torch.load(path)`; a
        TorchScript module from `torch.jit.load`), or to an item of it picked by a literal key (`decoder =
        checkpoint["decoder"]`), that the code calls on something: a callable unpickled whole is a module, in
        whatever mode it was saved. (A checkpoint of state dicts is never called.)"""
        loads = {(site.function, key) for key, value, site in self.collector.call_assigns
                 if "." not in key and self.collector.imports.qualify(value.func) in _LOADERS}
        bound = set(loads)
        for key, item, site in self.collector.item_assigns:
            base = item.value
            if (type(base) is cst.Call and self.collector.imports.qualify(base.func) in _LOADERS) or (
                    type(base) is cst.Name and (site.function, base.value) in loads):
                bound.add((site.function, key))
        # (`model(x)`, or `model.forward(x)` written out)
        called = {(site.site.function, func.value if type(func) is cst.Name else func.value.value)
                  for site in self.collector.calls if site.node.args and (
                      type(func := site.node.func) is cst.Name
                      or (type(func) is cst.Attribute and func.attr.value == "forward" and type(func.value) is cst.Name))}
        out = set()
        for scope, name in bound:
            if (scope, name) in called or (scope is None and any(
                    function is not None and called_name == name and name not in function.param_set
                    for function, called_name in called)):
                out.add((scope, name))
        return frozenset(out)

    @cached_property
    def global_models(self) -> frozenset[str]:
        """Module-level names bound to a module (`net = Net()` at the top of a script); not a loss or
        another module without weights (`criterion = nn.CrossEntropyLoss()`): running it is no forward."""
        weightless: dict[str, bool] = {}
        for key, value, site in self.collector.call_assigns:
            # (also one a function binds for the module, `global model` then `model = Net()`: a loader)
            if ((site.function is None and site.cls is None) or self._declared_global(site.function, key)) \
                    and "." not in key:
                construction = self.modules.module_expression(value)[0]
                if construction is not None:
                    weightless[key] = weightless.get(key, True) and construction.parameterless
                elif self._built_by_a_builder(value) is not None:
                    weightless[key] = False  # `model = load_model()`, a function here returning the model it builds
                elif key in self._used_as_modules_globally:
                    # `model = project_models.Net(...).to(device)`, built where this file cannot see,
                    # then `optim.Adam(model.parameters())` or `model.eval()` in a function using it.
                    weightless.setdefault(key, False)
        loaded = {name for scope, name in self.loaded_modules if scope is None}
        return frozenset(key for key, none in weightless.items() if not none) | loaded

    def _built_by_a_builder(self, value: cst.BaseExpression):
        """How mode-dependent the module is that a builder function of this file returns, for `load_model()`
        (through `.to(device)`-like chains); None when `value` calls none."""
        call = unwrap_chain(value)[0]
        return self.modules.layer_dependence(call) if type(call) is cst.Call else None

    @cached_property
    def global_dependences(self) -> dict:
        """Module-level model -> how much it depends on the mode, from every binding of it (`model = TinyVAE()`,
        a class of Linear layers only: INDEPENDENT); UNKNOWN when any binding is not a construction seen here."""
        from modelint.facts.modules import Dependence

        out: dict = {}
        for key, value, site in self.collector.call_assigns:
            if key in self.global_models and "." not in key and (
                    (site.function is None and site.cls is None) or self._declared_global(site.function, key)):
                construction = self.modules.module_expression(value)[0]
                found = construction.dependence if construction is not None else \
                    self._built_by_a_builder(value) or Dependence.UNKNOWN
                out[key] = max(out.get(key, found), found)
        for key in self.global_models:
            if key not in out or (None, key) in self.loaded_modules:
                out[key] = Dependence.UNKNOWN
        return out

    def _declared_global(self, function: FunctionInfo | None, name: str) -> bool:
        """Does a top-level function declare `global name`: what it binds to `name` is the module's?"""
        return function is not None and function.outer is None and function.cls is None \
            and name in self.collector.declared_elsewhere.get(function, ())

    @cached_property
    def _used_as_modules_globally(self) -> frozenset[str]:
        """Names used as an nn.Module at module level, or in a function that neither binds them nor takes
        them as a parameter (so there they are the global)."""
        bound = self.bound_by_calls
        out: set[str] = set()
        for entry in self.modules.names.module_names:
            if not isinstance(entry, tuple):
                continue
            scope, name = entry
            if scope is None or (isinstance(scope, FunctionInfo) and name not in scope.param_set
                                 and (scope, name) not in bound):
                out.add(name)
        return frozenset(out)

    def globals_of(self, function: FunctionInfo) -> frozenset[str]:
        """The module-level models a function uses without binding them itself."""
        if not self.global_models:
            return frozenset()
        return self._global_uses.get(function, frozenset())

    def global_parts(self, function: FunctionInfo, calls) -> dict[str, str]:
        """`pair = Pair(head_a, head_b)` at module level, a module class of this file keeping what it is handed
        (`self.first = first`), in a function using the global `head_a` and `pair` (as a global, or as a
        parameter every call here hands `pair`): `pair.first` is another name of `head_a`, so `pair.train()`
        there puts `head_a` back in training mode (State.put)."""
        uses = self.globals_of(function)
        if not uses or not self._module_level_parts:
            return {}
        holders = {name: name for name in uses}
        for param, passed in self._handed_globals(function, calls).items():
            holders[param] = passed
        out = {}
        for alias, held in self._module_level_parts.items():
            holder, _, attribute = alias.partition(".")
            for name, global_name in holders.items():
                if global_name == holder and held in uses:
                    out[f"{name}.{attribute}"] = held
        return out

    def _handed_globals(self, function: FunctionInfo, calls) -> dict[str, str]:
        """The positional parameters that every call here hands the same global model (`train(env, policy)`)."""
        out = {}
        for index, param in enumerate(function.positional_params if calls else ()):
            passed = set()
            for call in calls:
                args = [a for a in call.args if a.keyword is None and not a.star]
                keyword = next((a for a in call.args if a.keyword is not None and a.keyword.value == param), None)
                value = keyword.value if keyword is not None else args[index].value if index < len(args) else None
                passed.add(value.value if type(value) is cst.Name else None)
            if len(passed) == 1 and (name := passed.pop()) in self.global_models:
                out[param] = name
        return out

    @cached_property
    def _module_level_parts(self) -> dict[str, str]:
        from modelint.facts.summary_effects import bind_arguments  # (it reads the flow's summaries: a cycle)

        out: dict[str, str] = {}
        names = self.modules.names
        for key, value, site in self.collector.call_assigns:
            func = value.func
            info = self.modules.classes.get(func.value) if type(func) is cst.Name and site.function is None \
                and site.cls is None and "." not in key and func.value not in self.collector.imports.bindings else None
            kept = names.kept_from_the_creator(info) if info is not None else None
            if not kept:
                continue
            bound = bind_arguments(next(iter(kept.values()))[0].params, True, value)
            for attribute, (_init, param) in kept.items():
                held = bound.get(param)
                if type(held) is cst.Name and held.value in self.global_models:
                    out[f"{key}{attribute[4:]}"] = held.value
        return out

    def propagate_globals(self, callers_of: dict) -> None:
        """A function that calls one of this file's functions using a global model uses it too, unless it binds
        that name itself (`calc_loss(sent)` calling `calc_scores(hist)`, which runs the global `model`)."""
        uses = self._global_uses
        bound = self.bound_by_calls
        waiting = list(uses)
        while waiting:
            callee = waiting.pop()
            for caller in callers_of.get(callee, ()):
                if caller is None or caller is callee:
                    continue
                names = {name for name in uses.get(callee, ()) if name not in caller.param_set
                         and ((caller, name) not in bound or self._declared_global(caller, name))}
                if not names <= uses.get(caller, frozenset()):
                    uses[caller] = uses.get(caller, frozenset()) | names
                    waiting.append(caller)

    def parameters_holding_globals(self, function: FunctionInfo, calls) -> dict[str, str]:
        """`def val(net, data)` that uses the global `crnn` too, where every call here is `val(crnn, ...)`:
        `net` is another name of `crnn` (its `net.eval()` puts the global in eval mode)."""
        used = self.globals_of(function) if function.outer is None and function.cls is None else frozenset()
        if not used or not calls:
            return {}
        return {param: name for param, name in self._handed_globals(function, calls).items()
                if name in used and name != param}

    def parameters_holding_attributes(self, function: FunctionInfo, calls, caller_of) -> dict[str, str]:
        """`def test_(self, data, model)` that runs `self.model` too, where every call of it here is the
        object's own and hands it that module: `self.test_(data, self.model)`, or `self.model = best` then
        `self.test_(data, best)`. `model` is another name of `self.model` (its `model.eval()` switches the
        module the method runs). `caller_of(call)`: the function a call is made in."""
        from modelint.facts.summary_effects import bind_arguments

        cache = self.__dict__.setdefault("_held_attributes", {})  # (syntax only: the same in every round)
        if function in cache:
            return cache[function]
        out = cache[function] = {}
        if function.cls is None or not calls or any(
                type(call.func) is not cst.Attribute or dotted(call.func.value) != "self" for call in calls):
            return out
        read = None
        for param in function.params[1:]:
            passed = set()
            for call in calls:
                value = bind_arguments(function.params, True, call).get(param)
                passed.add(self._attribute_handed(value, call, caller_of(call)) if value is not None else None)
                if len(passed) > 1 or None in passed:
                    break
            key = passed.pop() if len(passed) == 1 else None
            if key is not None and key in (read := read if read is not None else _attributes_read(function)):
                out[param] = key
        return out

    def _attribute_handed(self, value: cst.BaseExpression, call: cst.Call, caller: FunctionInfo | None) -> str | None:
        """The object's attribute `value` is at `call`: `self.model`, or a name the caller set it to before the
        call and did not bind again (`self.model = model_max`, then `self.test_(loader, model_max)`)."""
        key = dotted(value)
        if key is not None and key.startswith("self.") and key.count(".") == 1:
            return key
        if type(value) is not cst.Name or caller is None:
            return None
        set_by = self.__dict__.setdefault("_attributes_set_to_names", {})
        if caller not in set_by:  # (the caller's `self.<attr> = <name>` statements, once)
            set_by[caller] = {assign.value.value for assign in self.collector.attribute_assigns
                              if assign.site.function is caller and type(assign.value) is cst.Name}
        return _attribute_set_before(value.value, call, caller) if value.value in set_by[caller] else None

    def parameters_defaulting_to_models(self, function: FunctionInfo, calls) -> dict[str, str]:
        """`def train_metrics(self, model=None): if model is None: model = self.model` (or `== None`), where
        no call here hands a model: `model` is another name of `self.model` (its `model.eval()` switches
        the object's)."""
        from modelint.facts.phases import defaults_to_none
        from modelint.facts.summary_effects import bind_arguments

        out = {}
        body = function.node.body.body if type(function.node.body) is cst.IndentedBlock else ()
        for statement in body:
            if type(statement) is not cst.If or statement.orelse is not None or len(statement.body.body) != 1:
                continue
            test, inner = statement.test, statement.body.body[0]
            assigned = inner.body[0] if type(inner) is cst.SimpleStatementLine and len(inner.body) == 1 else None
            if not (type(test) is cst.Comparison and type(test.left) is cst.Name and len(test.comparisons) == 1
                    and type(test.comparisons[0].operator) in (cst.Is, cst.Equal)
                    and dotted(test.comparisons[0].comparator) == "None"
                    and type(assigned) is cst.Assign and len(assigned.targets) == 1
                    and dotted(assigned.targets[0].target) == test.left.value):
                continue
            param, default = test.left.value, dotted(assigned.value)
            if default is None or not defaults_to_none(function, param) or any(
                    dotted(passed) != "None" for call in calls
                    if (passed := bind_arguments(function.params, function.cls is not None, call).get(param))
                    is not None):
                continue
            out[param] = default
        for param, default in self._defaults_naming_globals(function).items():
            if not any(bind_arguments(function.params, function.cls is not None, call).get(param) is not None
                       for call in calls):
                out[param] = default  # `def predict(seq, network=shared_network)`, never handed another one
        return out

    def _defaults_naming_globals(self, function: FunctionInfo) -> dict[str, str]:
        """Parameters whose default value is a module-level model (`network=shared_network`)."""
        if not self.global_models:
            return {}
        params = function.node.params
        return {p.name.value: p.default.value for p in (*params.params, *params.kwonly_params)
                if type(p.default) is cst.Name and p.default.value in self.global_models}

    def free_models(self, function: FunctionInfo) -> frozenset[str]:
        """The names a closure calls or calls methods of (`model(x)`, `model.eval()`) that an enclosing
        function binds: the enclosing function's models, bound by name when the closure is called."""
        if function.outer is None or function.cls is not None:
            return frozenset()
        return self._free_uses.get(function, frozenset())

    @cached_property
    def bound_by_calls(self) -> set[tuple]:
        """(function, name) for every `name = <call>` in it (None: module level)."""
        return {(site.function, key) for key, _value, site in self.collector.call_assigns}

    @cached_property
    def _free_uses(self) -> dict[FunctionInfo, frozenset[str]]:
        bound = self.bound_by_calls
        used: dict[FunctionInfo, set[str]] = {}
        for site in self.collector.calls:
            function = site.site.function
            if function is None or function.outer is None or function.cls is not None:
                continue
            # What it calls (`model(x)`, `model.eval()`), and what it hands a call (`predict(model, x)`).
            heads = [(site.text or "").split(".")[0]]
            heads.extend(arg.value.value for arg in site.node.args if type(arg.value) is cst.Name)
            for head in heads:
                if not head or head in function.param_set or (function, head) in bound:
                    continue
                scope = function.outer
                while scope is not None:
                    if head in scope.param_set or (scope, head) in bound:
                        used.setdefault(function, set()).add(head)
                        break
                    scope = scope.outer
        return {f: frozenset(names) for f, names in used.items()}

    @cached_property
    def _global_uses(self) -> dict[FunctionInfo, frozenset[str]]:
        used: dict[FunctionInfo, set[str]] = {}
        bound = self.bound_by_calls
        models = self.global_models
        for site in self.collector.calls:
            function = site.site.function
            if function is None:
                continue
            head = (site.text or "").split(".")[0]
            if head in models and head not in function.param_set \
                    and ((function, head) not in bound or self._declared_global(function, head)):
                used.setdefault(function, set()).add(head)
        for function in self.collector.functions:
            defaults = set(self._defaults_naming_globals(function).values())
            if defaults:
                used.setdefault(function, set()).update(defaults)
        return {f: frozenset(names) for f, names in used.items()}


def left_by_the_script(flow, function: FunctionInfo | None, key: str):
    """A global model as the module-level code leaves it, for a function nothing here calls (a demo's
    `predict(image)` handed to a UI, a callback; a route handler an app factory defines and registers, `@app.route`
    in `create_app()`): it runs after the script has set up its globals. Only a mode the script surely left
    (built, loaded, switched), and no function here switches it."""
    if function is None or function.cls is not None or flow.has_callers(function):
        return None
    head = key_root(key)
    if head not in flow.free.globals_of(function) or head in function.param_set:
        return None
    script = next((other for other in flow.flows if other.function is None), None)
    if script is None or script.exit_state is None:
        return None
    fact = script.exit_state.models.get(key) or script.exit_state.models.get(head)
    if fact is None or not (fact.definitely_train or fact.definitely_eval) \
            or any(head in summary.effects for summary in flow.summaries.values()):
        return None
    return fact


def _attributes_read(function: FunctionInfo) -> frozenset[str]:
    """The `self.<name>` a method's body names."""
    from modelint.facts.walk import iter_nodes

    return frozenset(key for node in iter_nodes(function.node.body) if type(node) is cst.Attribute
                     and (key := dotted(node)) is not None and key.startswith("self.") and key.count(".") == 1)


def _attribute_set_before(name: str, call: cst.Call, caller: FunctionInfo) -> str | None:
    """The `self.<attr>` the caller sets to `name` last before `call`, with `name` not bound again since."""
    from modelint.facts.walk import iter_nodes

    last = None
    for node in iter_nodes(caller.node.body):  # (in the order of the text)
        if node is call:
            return last
        if type(node) is cst.Assign and type(node.value) is cst.Name and node.value.value == name \
                and len(node.targets) == 1 and (set_to := dotted(node.targets[0].target)) is not None \
                and set_to.startswith("self.") and set_to.count(".") == 1:
            last = set_to
        elif type(node) in (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.For) and any(
                type(target) is cst.Name and target.value == name for target in _targets(node)):
            last = None
    return None


def _targets(node) -> list:
    if type(node) is cst.Assign:
        return [t.target for t in node.targets]
    return [node.target]
