"""What the layers a module builds say about it, beyond whether its mode matters (modules.py):

- `may_sample`: can it be random in training mode (modelint.facts.sampling_layers)?
- `holds_no_weights`: a module class of the file with no weights whose forward compares two inputs (a loss, a
  metric written as an `nn.Module`), keeps fixed buffers (a mel spectrogram) or fills tensors it makes (a label-
  smoothing target): calling it is no model's forward; its graph is the graph of its inputs.

Both look through the file's classes, their project bases and the file's builder functions; what the file cannot
see counts as "may sample" and "may hold weights".
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.collector import Collector
from modelint.facts.sampling_layers import SamplingLayers
from modelint.facts.scopes import ClassInfo
from modelint.facts.settings_attributes import computed_with
from modelint.facts.names import BUILTIN_NAMES, NOT_LITERAL, dotted, literal_value
from modelint.facts.walk import calls_in, iter_nodes

_WEIGHT_CALLS = frozenset({"torch.nn.Parameter", "torch.nn.parameter.Parameter"})
_REGISTERING = frozenset({"register_parameter", "register_module", "add_module"})
_PARAMETER_CONTAINERS = frozenset({"torch.nn.ParameterList", "torch.nn.ParameterDict"})
_WRITTEN_OUT = (cst.List, cst.Tuple, cst.Dict, cst.ListComp, cst.DictComp, cst.GeneratorExp)
_MODULE_RETURNING = frozenset({"torch.load", "torch.compile"})  # `torch.ones(...)` and the like make tensors
_AUTOGRAD_FUNCTIONS = frozenset({"torch.autograd.Function", "torch.autograd.function.Function"})
_PLAIN_MIXINS = frozenset({"abc.ABC", "object", "typing.Generic"})
_NO_MODULE_MAKERS = (api.FUNCTIONAL + ".", "torch.distributions.")  # (`Uniform(0.9, 1.1)`: a distribution)


class LayerKinds(SamplingLayers):
    def __init__(self, table, collector: Collector) -> None:
        self.table = table
        self.collector = collector
        self.imports = collector.imports
        self._samples: dict[str, bool] = {}
        self._weightless: dict[str, bool] = {}
        self._library_mode: dict[str, bool] = {}
        # class name -> (value, method) of every `self.attribute = value` in the class's methods
        self._stored: dict[str, list[tuple[cst.BaseExpression, cst.BaseExpression | None, object]]] = {}
        for assign in table.self_assigns:
            value = assign.value
            if value is None and type(assign.node) is cst.Assign and type(assign.node.value) is cst.Call:
                value = assign.node.value  # `self.info, self.layers = create_modules(cfg)`: one item of what it returns
            self._stored.setdefault(assign.site.cls.name, []).append((assign.target, value, assign.site.function))

    # -- torch's own mode layers ---------------------------------------------------------
    def holds_library_mode_layers(self, info: ClassInfo) -> bool:
        """Does the class hold a Dropout or BatchNorm of torch (or a layer we cannot see), at any depth? Not
        when its only mode dependence is a layer of this file reading `self.training` for a purpose of its
        own (a NoisyNet layer's exploration noise)."""
        name = info.name
        if name not in self._library_mode:
            self._library_mode[name] = False  # recursion guard
            self._library_mode[name] = self.table.has_foreign_base(info) or any(
                self.holds_library_mode_layers(base) for base in map(self.table.project_class, info.bases)
                if base is not None) or any(map(self._library_mode_layer, info.calls))
        return self._library_mode[name]

    def _library_mode_layer(self, call: cst.Call) -> bool:
        from modelint.facts.modules import Dependence

        project = self.table.project_class(call.func)
        if project is not None:
            return self.holds_library_mode_layers(project)
        inside = self.table.builder_calls(call.func)
        if inside is not None:
            visiting = self.__dict__.setdefault("_builders_visited", set())
            if call.func.value in visiting:
                return False  # (`def maybe_to_torch(d): ... maybe_to_torch(i) ...`: what it builds is counted once)
            visiting.add(call.func.value)
            try:
                return any(map(self._library_mode_layer, inside))
            finally:
                visiting.discard(call.func.value)
        built = self.table.construction(call)
        if built is None or built.dependence is Dependence.INDEPENDENT:
            return False
        qualified = self.imports.qualify(call.func) or ""
        index = self.table.index
        if index is not None and not qualified.startswith("torch.") \
                and index.sets_its_own_mode_only(qualified, self.table.path):
            return False  # (`from common.layers import NoisyLinear`)
        layer = qualified.rsplit(".", 1)[-1]
        if layer in api.CONTAINERS or layer in api.STACKS:
            return any(self._library_mode_layer(inner) for arg in call.args for inner in calls_in(arg.value)) \
                or any(arg.star or type(arg.value) in (cst.Name, cst.Attribute) for arg in call.args)
        return True

    # -- no weights -------------------------------------------------------------------
    def holds_no_weights(self, info: ClassInfo, apart_from: frozenset[str] = frozenset()) -> bool:
        """A module class whose bases are `nn.Module` or such classes of the file, that builds no layer
        with weights, makes no `nn.Parameter`, and stores nothing on itself that may be a module; with
        `apart_from`, but for the constructor parameters named there that it keeps (what each construction
        hands them decides: a loss wrapper holding the loss it is handed)."""
        name = (info.name, apart_from) if apart_from else info.name
        if name not in self._weightless:
            self._weightless[name] = False  # recursion guard
            self._weightless[name] = self._weightless_now(info, apart_from=apart_from)
        return self._weightless[name]

    def _weightless_now(self, info: ClassInfo, shown: bool = False, apart_from: frozenset[str] = frozenset()) -> bool:
        """`shown`: a subclass shows what the module does (a base class of the file, `class Act(nn.Module)` that
        only names its activations, is weightless if it builds nothing with weights)."""
        table = self.table
        if not table.is_module_class(info) \
                or (table.has_foreign_base(info) and not any(map(self._weightless_library_base, info.bases))) \
                or not (shown or self._compares(info) or _registers_buffers(info) or self._loss_base(info)
                        or self._makes_constant_tensors(info) or self._applies_tensor_functions(info)
                        or any(map(self._weightless_library_base, info.bases))
                        or any(table.construction(call) is not None for call in info.calls)):
            return False  # (a `class Net` of an exercise, its layers still to be written, is a model)
        for base in info.bases:
            project = table.project_class(base)
            if project is not None:
                if not (self.holds_no_weights(project) or self._weightless_base(project)):
                    return False
            elif self.imports.qualify(base) not in api.NN_MODULE and not self._loss_base_expr(base) \
                    and not self._weightless_library_base(base) and (self.imports.qualify(base) or dotted(base)) \
                    not in _PLAIN_MIXINS:
                return False  # (not `abc.ABC` beside `nn.Module`: it adds no weights)
        made_per_call = None
        for call in info.calls:
            func = call.func
            # (`nn.Parameter(window, requires_grad=False)`: a constant; or by a default no construction here changes)
            passed = self._passed_by_class.get(info.name, frozenset())
            requires = _requires_grad_argument(call, info.methods.get("__init__"), passed)
            if requires is True:
                if made_per_call is None:
                    forward = info.methods.get("forward")
                    made_per_call = set(iter_nodes(forward.body)) if forward is not None else set()
                if call in made_per_call:
                    requires = None  # (made anew by each `forward`, no weight: positions whose forces are asked later)
            if (self.imports.qualify(func) in _WEIGHT_CALLS and requires is not False) or requires is True or \
                    (type(func) is cst.Attribute and func.attr.value in (*_REGISTERING, "requires_grad_")):
                return False  # (`torch.zeros(n, 1, requires_grad=True)`: weights written out as tensors)
            if not self._weightless_layer(call):
                return False
        # Whatever it stores that may be a module is a submodule, with its weights (`self.module = m`).
        from modelint.facts.modules import rewraps  # (that module builds this one)

        numbers = computed_with(info, self.imports.qualify)
        # (`self.kernel = self.kernel.to(x.device)` in `forward`: the tensor it stored, moved, looked at on its own)
        return not any(self._may_be_module(value, method) and dotted(target) not in numbers
                       and not (type(value) is cst.Call and self.imports.qualify(value.func) in _PARAMETER_CONTAINERS)
                       and not rewraps(self.imports, value, dotted(target))
                       and not (type(value) is cst.Name and value.value in apart_from)
                       for target, value, method in self._stored.get(info.name, ()))

    @cached_property
    def _passed_by_class(self) -> dict[str, frozenset[str]]:
        """Class name -> the keywords its constructions in the file pass ("*" when one passes positional ones)."""
        out: dict[str, set[str]] = {}
        for site in self.collector.calls:
            if type(site.node.func) is cst.Name and site.node.args:
                out.setdefault(site.node.func.value, set()).update(
                    arg.keyword.value if arg.keyword is not None else "*" for arg in site.node.args)
        return {name: frozenset(keywords) for name, keywords in out.items()}

    def _weightless_base(self, info: ClassInfo) -> bool:
        """A base class of the file that builds nothing with weights, for a subclass that shows what it does."""
        name = f"{info.name} (as a base)"
        if name not in self._weightless:
            self._weightless[name] = False  # recursion guard
            self._weightless[name] = self._weightless_now(info, shown=True)
        return self._weightless[name]

    def _compares(self, info: ClassInfo) -> bool:
        """Its forward takes two inputs or more, as a loss or a metric compares an output with a target
        (an exercise's `class Net` whose layers are still to be written takes one, and is a model)."""
        seen = set()
        while info is not None and info.name not in seen:
            seen.add(info.name)
            # (or the `__call__` a metric written as a module overrides instead: EdgeAccuracy)
            forward = info.methods.get("forward") or info.methods.get("__call__")
            if forward is not None:
                params = forward.params
                return type(params.star_arg) is cst.Param \
                    or len([*params.posonly_params, *params.params]) >= 3  # self, prediction, target
            info = next(filter(None, map(self.table.project_class, info.bases)), None)
        return False

    def _layer_setting(self, name: str, method) -> bool:
        """Does the method hand the parameter to a torch.nn layer it builds (`nn.AvgPool1d(kernel_size=
        kernel_size)`)? Then it is a setting of that layer (a size, a rate), not a module."""
        for call in iter_nodes(method.node.body):
            if type(call) is cst.Call and (self.imports.qualify(call.func) or "").startswith("torch.nn.") \
                    and any(type(arg.value) is cst.Name and arg.value.value == name for arg in call.args):
                return True
        return False

    def _may_be_module(self, value: cst.BaseExpression | None, method) -> bool:
        """A parameter without a literal default (or an attribute of one), or a call of something other
        than torch's tensor functions and the builtins: it may hand a module over."""
        if type(value) is cst.Attribute and type(value.value) is cst.Name and value.value.value == "self":
            return False  # `self.stride = self.hop`: another attribute's value, looked at on its own
        head = value
        while type(head) is cst.Attribute:
            if head.attr.value.startswith("__") and head.attr.value.endswith("__"):
                return False  # `self.__class__.__name__`: what Python says of an object, never a module
            head = head.value
        if type(head) is cst.Name and method is not None:
            if head.value not in method.param_set:  # a local: what the method binds it to (`model = load(w)`)
                return any(self._may_be_module(bound, method) for key, bound, site in self.collector.call_assigns
                           if key == head.value and site.function is method and bound is not value)
            return not _literal_default(method, head.value) and not self._layer_setting(head.value, method) \
                and not _annotated_as_a_value(method, head.value)
        if type(value) is cst.Call:
            while type(value.func) is cst.Attribute and type(value.func.value) is cst.Call \
                    and self.imports.qualify(value.func) is None:
                value = value.func.value  # (`torch.cdist(a, b).argmin(-1)`: a method of what the inner call made)
            qualified = self.imports.qualify(value.func) or ""
            if self.table.construction(value) is not None or self.table.builder_calls(value.func) is not None:
                return not self._weightless_layer(value)
            tensor_function = (qualified.startswith("torch.") and qualified.count(".") == 1
                               and qualified not in _MODULE_RETURNING) or qualified.startswith(_NO_MODULE_MAKERS) \
                or qualified.split(".")[0] in api.NOT_MODULE_LIBRARIES or qualified in _WEIGHT_CALLS  # arrays, tensors
            return not (tensor_function or (type(value.func) is cst.Name and value.func.value in BUILTIN_NAMES)
                        or _returns_values_only(self.table, value.func, method))
        return False

    def _makes_constant_tensors(self, info: ClassInfo) -> bool:
        """Its `forward` fills tensors it makes itself (`torch.zeros(...)`, then `scatter_`) or makes them of the
        data it is handed (`torch.tensor(coords)`): a one-hot target or a featurizer written as a module, not a
        model whose layers are still to be written."""
        forward = info.methods.get("forward")
        return forward is not None and any(
            type(node) is cst.Call and (self.imports.qualify(node.func) in api.CONSTANT_TENSOR_FACTORIES
                                        or self.imports.qualify(node.func) in api.DATA_TENSOR_FACTORIES)
            for node in iter_nodes(forward.body))

    def _applies_tensor_functions(self, info: ClassInfo) -> bool:
        """Its `forward` applies torch's tensor functions (`x * torch.sigmoid(x)`, `F.gelu(x)`), or hands back
        arithmetic on its inputs (`x * self.scale`), and calls nothing of its own (`self.fc(x)`): an activation
        written as a module, not a model whose layers are still to be written."""
        forward = info.methods.get("forward")
        if forward is None:
            return False
        applies = False
        # (and the class's own methods it calls, `self.sigmoid(z)` written out as `1 / (1 + torch.exp(-z))`)
        bodies, seen = [forward], {"forward"}
        inputs = {p.name.value for p in (*forward.params.posonly_params, *forward.params.params)} - {"self"}
        while bodies:
            for node in iter_nodes(bodies.pop().body):
                if type(node) is cst.Return and type(node.value) in (cst.BinaryOperation, cst.UnaryOperation):
                    applies = applies or _of_inputs(node.value, inputs)  # (`return x * self.scale`: arithmetic)
                if type(node) is not cst.Call:
                    continue
                key = dotted(node.func) or ""
                method = key[5:] if key.startswith("self.") and key.count(".") == 1 else None
                if method in info.methods and method not in ("__call__", "__init__"):
                    if method not in seen:
                        seen.add(method)
                        bodies.append(info.methods[method])
                    continue
                if key == "self" or (key.startswith("self.") and (key.count(".") == 1 or key.endswith(".forward"))):
                    return False  # `self.fc(x)`, `self(x)`, `self.net.forward(x)` (not `self.w.t()`, a tensor's method)
                qualified = self.imports.qualify(node.func) or ""
                applies = applies or (qualified.startswith("torch.") and qualified.count(".") == 1) \
                    or qualified.startswith((api.FUNCTIONAL + ".", "numpy.")) \
                    or (self._tensor_method_of_input(node.func, inputs) and not self._keeps_what_it_is_handed(info))
                # (`numpy.`: a NumPy algorithm wrapped as a module)
        return applies

    def _keeps_what_it_is_handed(self, info: ClassInfo) -> bool:
        """It stores something other than literals and arithmetic (`self.module = m`: a wrapper around a layer,
        whose forward may only look at its inputs; `self.low = 1 - strength` is a number)."""
        # (nor a setting its constructor is handed, `self.k = k` with `k=8` or `k: int`)
        return any(literal_value(value) is NOT_LITERAL and type(value) not in (cst.BinaryOperation, cst.UnaryOperation)
                   and not (type(value) is cst.Name and method is not None and (
                       _literal_default(method, value.value) or _annotated_as_a_value(method, value.value)))
                   for _, value, method in self._stored.get(info.name, ()))

    def _tensor_method_of_input(self, func: cst.BaseExpression, inputs: set[str]) -> bool:
        """`values.max(dim=1)` on one of forward's `inputs`, or a custom autograd Function's
        `RowMax.apply(values)`: an operation written as a module (a `Flatten`, a jagged max)."""
        if type(func) is not cst.Attribute:
            return False
        if _of_inputs(func.value, inputs):
            return True
        return type(func.value) is cst.Name and func.attr.value == "apply" and any(
            (self.imports.qualify(base) or "") in _AUTOGRAD_FUNCTIONS
            for base in getattr(self.table.project_class(func.value), "bases", ()))

    def _weightless_library_base(self, base: cst.BaseExpression) -> bool:
        """A library layer without weights (`torchaudio.transforms.MelSpectrogram`: buffers only) as a base."""
        return api.is_weightless_library_layer(self.imports.qualify(base) or "")

    def _loss_base(self, info: ClassInfo) -> bool:
        """A subclass of one of torch's losses (`nn.modules.loss._Loss`, `nn.MSELoss`): a loss, not a model
        whose layers are still to be written."""
        return any(map(self._loss_base_expr, info.bases))

    def _loss_base_expr(self, base: cst.BaseExpression) -> bool:
        qualified = self.imports.qualify(base) or ""
        return qualified.startswith("torch.nn.modules.loss.") or (
            qualified.startswith("torch.nn.") and qualified.endswith("Loss"))

    def _weightless_layer(self, call: cst.Call) -> bool:
        """A call in the class body: no construction, or one of a layer without weights. (`nn.ParameterList([...])`
        holds the Parameters written in its argument, each a call of the class checked on its own.)"""
        if self.imports.qualify(call.func) in _PARAMETER_CONTAINERS and all(
                type(arg.value) in _WRITTEN_OUT for arg in call.args):
            return True
        if self.table.builder_calls(call.func) is not None:
            return self.table.layer_dependence(call) is None  # a builder of modules builds weights
        built = self.table.construction(call)
        return built is None or built.parameterless


# Tensor methods and functions whose positional arguments past the tensor are sizes, dimensions or counts.
def _returns_values_only(table, func: cst.BaseExpression, method) -> bool:
    """`self._check_range(strength)`, `self.update_once(data, centroids)`: a method of the same class that builds
    no module and hands back only literals or values it computed (`[max(1 - v, 0), 1 + v]`, `ids, new`), never
    one of the object's attributes: a setting or a tensor, never a module."""
    if method is None or method.cls is None or type(func) is not cst.Attribute or dotted(func.value) != "self":
        return False
    target = method.cls.methods.get(func.attr.value)
    if target is None:
        return False
    returned, built = [], False
    for node in iter_nodes(target.body):
        if type(node) is cst.Return:
            returned.append(node.value)
        elif type(node) is cst.Call and table.construction(node) is not None:
            built = True
    values = [e.value for value in returned for e in (value.elements if type(value) in (cst.List, cst.Tuple)
                                                      else [cst.Element(value)] if value is not None else [])]
    return bool(returned) and not built and all(
        type(value) in (cst.Name, cst.Integer, cst.Float, cst.List, cst.Tuple, cst.BinaryOperation, cst.Call)
        and not (type(value) is cst.Name and value.value == "self") for value in values)


def _of_inputs(expr: cst.BaseExpression, inputs: set[str]) -> bool:
    """Is `expr` one of `inputs`, or arithmetic, an index or an attribute of one (`(img * factor)`, `x[:, 0]`,
    `x.T`)?"""
    while type(expr) in (cst.Subscript, cst.Attribute, cst.UnaryOperation, cst.BinaryOperation):
        if type(expr) is cst.BinaryOperation:
            return _of_inputs(expr.left, inputs) or _of_inputs(expr.right, inputs)
        expr = expr.expression if type(expr) is cst.UnaryOperation else expr.value
    return type(expr) is cst.Name and expr.value in inputs


def _registers_buffers(info: ClassInfo) -> bool:
    """It keeps fixed tensors as buffers (a mel filterbank, a window, normalisation constants): a transform
    written as a module, whatever number of inputs its forward takes."""
    return any(type(call.func) is cst.Attribute and call.func.attr.value == "register_buffer" for call in info.calls)


def _literal_default(method, name: str) -> bool:
    """`gamma=2.0`, `reduction="mean"`: a parameter whose default is a literal other than None."""
    value = _default_of(method.node, name)
    return value is not NOT_LITERAL and value is not None


_VALUE_TYPES = frozenset({"int", "float", "str", "bool", "complex", "bytes"})


def _annotated_as_a_value(method, name: str) -> bool:
    """`m: float`, `name: str`, `k: Optional[int]`: a parameter annotated with a plain value type."""
    param = method.param(name)
    annotation = param.annotation.annotation if param is not None and param.annotation is not None else None
    if type(annotation) is cst.Subscript and dotted(annotation.value) in ("Optional", "typing.Optional") \
            and len(annotation.slice) == 1 and type(annotation.slice[0].slice) is cst.Index:
        annotation = annotation.slice[0].slice.value
    return dotted(annotation) in _VALUE_TYPES if annotation is not None else False


def _requires_grad_argument(call: cst.Call, init: cst.FunctionDef | None = None, passed: frozenset = frozenset()):
    """What `requires_grad=` the call passes: False for `nn.Parameter(t, requires_grad=False)` (a tensor kept with
    the module that autograd never records), or for a constructor parameter left at a default that makes it
    False (`requires_grad=trainable` with `trainable=False`, `requires_grad=not fix` with `fix=True`: a fixed
    STFT basis); None when it passes none, True for anything else."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "requires_grad":
            value, negated = arg.value, False
            if type(value) is cst.UnaryOperation and type(value.operator) is cst.Not:
                value, negated = value.expression, True
            if type(value) is cst.Name and value.value in ("False", "True"):
                return (value.value == "True") != negated
            default = _default_of(init, value.value) if type(value) is cst.Name and init is not None \
                and not passed & {value.value, "*"} else NOT_LITERAL
            return True if type(default) is not bool else default != negated
    return None


def _default_of(method: cst.FunctionDef, name: str):
    """The literal default of a parameter of `method` (NOT_LITERAL when none)."""
    for param in (*method.params.params, *method.params.kwonly_params):
        if param.name.value == name and param.default is not None:
            return literal_value(param.default)
    return NOT_LITERAL
