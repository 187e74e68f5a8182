"""Which expressions are nn.Modules, and whether their output can depend on mode.

`ModuleTable` classifies the classes of a file (nn.Module subclasses, directly or
through other classes of the file) and constructions (`nn.Dropout(0.1)`,
`Net().to(device)`, `timm.create_model(...)`) into a `Dependence`:
mode-dependent, mode-independent (a pure Linear/ReLU stack), or unknown (a class
from elsewhere, which may hold anything and so counts as "may be dependent").
"""

from __future__ import annotations

import builtins
from dataclasses import replace

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.collector import Collector
from modelint.facts.handed_layers import HandedLayers
from modelint.facts.imported_classes import WaitingOnImports
from modelint.facts.builders import Builders, builder_functions
from modelint.facts.libraries import STANDARD_LIBRARY
from modelint.facts.local_layers import LocalLayers
from modelint.facts.module_attributes import ModuleAttributes
from modelint.facts.registries import Registries
from modelint.facts.scopes import ClassInfo, FunctionInfo
from modelint.facts.names import dotted
from modelint.facts.library_layers import LibraryLayers
from modelint.facts.torch_layers import Construction, Dependence, layer_dependence_by_name
from modelint.facts.walk import iter_nodes


# Methods that return the module they are called on.
RETURNS_SELF = frozenset({"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "train", "eval",
                          "requires_grad_", "to_empty", "share_memory", "type"})
# Calls that show their receiver is an nn.Module (tensors and optimizers lack them).
EVIDENCE_METHODS = frozenset({"parameters", "named_parameters", "state_dict", "load_state_dict", "modules",
                              "named_modules", "children", "named_children", "buffers", "named_buffers"})
_BUILTINS = frozenset(dir(builtins))


def unwrap_chain(expr: cst.BaseExpression) -> tuple[cst.BaseExpression, list[cst.Call]]:
    """`Net().to(dev).eval()` -> (`Net()`, [`.to(dev)`, `.eval()`] innermost first)."""
    applied: list[cst.Call] = []
    while (
        type(expr) is cst.Call
        and type(expr.func) is cst.Attribute
        and expr.func.attr.value in RETURNS_SELF
    ):
        applied.append(expr)
        expr = expr.func.value
    applied.reverse()
    return expr, applied


def rewraps(imports, value: cst.BaseExpression | None, key: str) -> bool:
    """Is `value` the module `key` names itself, moved (`.cuda()`, `.to(dev)`) or wrapped (`DataParallel(...)`)?
    (`ic = DataParallel(ic)`, `self.net = self.net.cuda()`: the same object.)"""
    base = unwrap_chain(value)[0]
    if type(base) is cst.Call and base.args and imports.qualify(base.func) in api.MODULE_WRAPPERS:
        base = unwrap_chain(base.args[0].value)[0]
    return dotted(base) == key


def held_from_then_on(values: list, name: str) -> list:
    """Of the values a name is bound to, the ones it may hold at its uses: the last that wraps what it held
    (`model = Scorer(model)`: the object wrapping the earlier model, from then on), else all of them."""
    wrapping = [value for value in values if type(value) is cst.Call and any(
        type(arg.value) is cst.Name and arg.value.value == name for arg in value.args)]
    return wrapping[-1:] or values


def returned_parameter(imports, function) -> str | None:
    """The first parameter, when every `return` of the function hands it back, moved or wrapped (`return
    model`, `return DistributedDataParallel(model, ...)`): a helper that wraps what it is given."""
    returns = [node for node in iter_nodes(function.node.body) if type(node) is cst.Return]
    for param in function.params[:1]:
        if returns and all(rewraps(imports, r.value, param) for r in returns):
            return param
    return None


class ModuleTable(WaitingOnImports, LocalLayers, Registries, ModuleAttributes, Builders, LibraryLayers, HandedLayers):
    def __init__(self, collector: Collector, index=None, path: str = "") -> None:
        self.index = index
        self.path = path
        self._collector = collector
        self.imports = collector.imports
        self.classes: dict[str, ClassInfo] = {}
        for info in collector.classes:
            self.classes.setdefault(info.name, info)
        self._is_module: dict[str, bool] = {}
        self._foreign_base: dict[str, bool] = {}  # derives from a class defined elsewhere (through this file's too)
        self._dependence: dict[str, Dependence] = {}
        # A class defined more than once (see definitions.py): each definition's (is it a module, its dependence).
        self._each_definition: dict[ClassInfo, tuple[bool, Dependence]] = {}
        self._builders = builder_functions(collector)
        # `self.x = value` in the classes' methods, once for every reader (see own_layer, layer_kinds).
        self.self_assigns = [assign for assign in collector.attribute_assigns if assign.site.cls is not None
                             and type(assign.target.value) is cst.Name and assign.target.value.value == "self"]
        # ... by attribute name, in any class of the file (classes rarely share one).
        self._self_attributes: dict[str, list] = {}
        self._following: set[str] = set()
        for assign in self.self_assigns:
            self._self_attributes.setdefault(assign.target.attr.value, []).append(assign.value)
        self._built: dict[str, Dependence | None] = {}
        self._assumed: set[str] | None = None  # (see waiting_on_imports: classes of other files, taken as independent)
        # Bases of other files that leave a class of this file undecided (see _solve), and classes of other files
        # that a plain container's elements are built from (containers._puts_module): asked of the index.
        self.undecided_bases: set[str] = set()
        self._solved = False
        self.loaded_classes: frozenset[str] = frozenset()  # (see loaded_parts; known once the rest is)
        self._solve()
        self._solved = True
        from modelint.facts.layer_kinds import LayerKinds  # (both read this table's answers)
        from modelint.facts.module_names import ModuleNames

        self.kinds = LayerKinds(self, collector)

        self.names = ModuleNames(self, collector)
        from modelint.facts.loaded_parts import classes_running_loaded_modules

        self.loaded_classes = classes_running_loaded_modules(self, collector)

    # -- classes ------------------------------------------------------------
    def project_class(self, func: cst.BaseExpression) -> ClassInfo | None:
        if type(func) is cst.Name and func.value not in self.imports.bindings:
            return self.classes.get(func.value)
        return None

    def is_module_class(self, info: ClassInfo) -> bool:
        return self._is_module.get(info.name, False)

    def class_dependence(self, info: ClassInfo) -> Dependence:
        return self._dependence.get(info.name, Dependence.INDEPENDENT)

    def built_with_mode_layers(self, info: ClassInfo) -> bool:
        """Is every construction of the class in this file handed a module with Dropout or BatchNorm
        (`SoftmaxNN(CNNEncoder(...), n)`, its encoder handed in), at least one of them, while its own layers
        have none?"""
        found = self.__dict__.setdefault("_built_with_mode_layers", {})
        if self.class_dependence(info) is Dependence.DEPENDENT:
            return False  # (its own layers say: see LayerKinds.holds_library_mode_layers)
        if info.name not in found:
            built = [self.construction(site.node) for site in self._collector.calls
                     if type(site.node.func) is cst.Name and site.node.func.value == info.name]
            found[info.name] = bool(built) and all(
                b is not None and b.dependence is Dependence.DEPENDENT for b in built)
        return found[info.name]

    def _base_kind(self, base: cst.BaseExpression) -> tuple[bool, Dependence]:
        project = self.project_class(base)
        if project is not None:
            if not self._is_module.get(project.name, False):
                # `class LoRALinearRef(nn.Linear, LoRALayer)`: a plain mixin of this file whose `__init__` builds
                # `self.lora_dropout = nn.Dropout(p)` adds its layers to the module that derives from it
                built = (self.layer_dependence(call) for call in project.calls)
                return False, Dependence.DEPENDENT if Dependence.DEPENDENT in built else Dependence.INDEPENDENT
            return True, self._dependence.get(project.name, Dependence.INDEPENDENT)
        qualified = self.imports.qualify(base)
        if qualified is None:
            return False, Dependence.INDEPENDENT
        if qualified in api.MODULE_BASES:
            return True, Dependence.INDEPENDENT  # (a ScriptModule is a Module whose methods TorchScript compiles)
        if qualified.startswith("torch.nn."):
            return True, layer_dependence_by_name(qualified.rsplit(".", 1)[-1], None)
        if qualified.startswith("torch.") and not qualified.startswith("torch.nn.") \
                or qualified.startswith(api.NOT_TORCH_PREFIXES):
            return False, Dependence.INDEPENDENT  # torch.utils.data.Dataset and friends, MegEngine's M.Module
        if qualified.startswith(api.MODE_FREE_LIBRARY_LAYERS):
            return True, Dependence.INDEPENDENT  # (`class SMPL(smplx.SMPL)`: a body model with extra buffers)
        if qualified.startswith(api.MODULE_BASE_PREFIXES) and not qualified.startswith("torch.") \
                and api.NOT_MODULE_BASE.search(qualified.rsplit(".", 1)[-1]):
            return False, Dependence.INDEPENDENT  # `transformers.Trainer`, `pl.Callback`: no module
        if qualified.startswith(api.MODULE_BASE_PREFIXES):
            # LightningModule adds no layers; a transformers/timm base brings its own.
            lightning = qualified.startswith(("pytorch_lightning.", "lightning."))
            return True, Dependence.INDEPENDENT if lightning else Dependence.DEPENDENT
        if not self._is_foreign(qualified):
            return False, Dependence.INDEPENDENT
        # A base of another file of the project (`class Net(BaseModule)`): the index knows it, or this
        # file's summary waits on it (ProjectIndex.resolve_class settles the class once it does).
        known = self.index.resolve_class(qualified, self.path) if self.index is not None else None
        if known is not None:
            return True, Dependence(known)
        if self._assumed is not None:
            self._assumed.add(qualified)
            return True, Dependence.INDEPENDENT
        return False, Dependence.UNKNOWN

    def _defines_own(self, owner: cst.BaseExpression, method: str) -> bool:
        """Is `owner` a class of the project (this file, or another one the index knows) defining `method`?"""
        local = self.project_class(owner)
        if local is not None:
            return method in local.methods
        qualified = self.imports.qualify(owner)
        if qualified is None or self.index is None:
            return False
        found = self.index.resolve_shape(qualified, self.path)
        return found is not None and method in found[0].defines

    def _plain_class_elsewhere(self, qualified: str) -> bool:
        """Is `qualified` a class another file of the run defines with no base but `object` (or plain classes
        of the project, up the chain)?"""
        found = self.index.resolve_shape(qualified, self.path) if self.index is not None else None
        return found is not None and (all(base in ("object", "builtins.object") for base in found[0].bases)
                                      or self.index.plain_class_chain(qualified, self.path))

    def _answer_may_matter(self, info: ClassInfo) -> bool:
        """Could this file's findings or summary change with the answer to "is this class a module"? Only if the
        class builds something in its methods, or this file builds one: not for an abstract model base that
        only sets up weights (`BertPreTrainedModel`, whose subclasses here define `forward`), nor for an output
        record (`BertOutput(ModelOutput)`, built in forwards)."""
        if any((call.func.value if type(call.func) is cst.Name else call.func.attr.value
                if type(call.func) is cst.Attribute else "")[:1].isupper() for call in info.calls):
            return True  # (`nn.Linear(...)`, `Block(...)`: it builds what may be layers)
        return any(type(site.node.func) is cst.Name and site.node.func.value == info.name
                   and not self._in_a_forward(site.site.function) for site in self._collector.calls)

    @staticmethod
    def _in_a_forward(function) -> bool:
        return function is not None and function.name == "forward" and function.cls is not None

    def _is_foreign(self, qualified: str) -> bool:
        """Imported from outside the stdlib: we cannot see what it holds."""
        head = qualified.lstrip(".").split(".")[0]
        return head not in STANDARD_LIBRARY

    def _solve(self) -> None:
        # (a notebook writing `class Net` again in a later cell, or two factories each defining their own: every
        # definition counts, and where they disagree on the mode layers, which one a construction builds is open)
        definitions = [info for info in self._collector.classes if info.name in self.classes]
        again = self._collector.definitions.classes_defined_again
        for _ in range(len(self.classes) + 1):
            changed = False
            found: dict[str, tuple[bool, Dependence]] = {}
            for info in definitions:
                name = info.name
                is_module = False
                dependence = Dependence.INDEPENDENT
                unknown_base = False
                for base in info.bases:
                    base_module, base_dependence = self._base_kind(base)
                    is_module = is_module or base_module
                    unknown_base = unknown_base or (not base_module and base_dependence is Dependence.UNKNOWN)
                    project = self.project_class(base)
                    if project is not None and self._foreign_base.get(project.name):
                        unknown_base = True  # a base of this file that itself derives from a class elsewhere
                    dependence = max(dependence, base_dependence)
                self._foreign_base[name] = unknown_base
                if not is_module and unknown_base and "forward" in info.methods:
                    is_module = True  # a subclass of some module base defined elsewhere
                elif not is_module and unknown_base and self.index is None and self._answer_may_matter(info):
                    # `class Decolorize(DecomposablePhysics)`, with no forward of its own: a module only if that
                    # base is one. The file is analysed again once the index can say (the summary asks about it).
                    self.undecided_bases.update(q for base in info.bases if self.project_class(base) is None
                                                and (q := self.imports.qualify(base)) is not None
                                                and self._is_foreign(q))
                if is_module:
                    if info.reads_training_flag:
                        dependence = Dependence.DEPENDENT
                    dependence = max(dependence, self._layers_dependence(info))
                else:
                    dependence = Dependence.INDEPENDENT
                if name in again:  # (stored once every definition of the name is in: see below)
                    self._each_definition[info] = (is_module, dependence)
                    module_before, before = found.get(name, (is_module, dependence))
                    found[name] = (is_module or module_before, before if before == dependence else Dependence.UNKNOWN)
                    continue
                changed = self._settle(name, is_module, dependence) or changed
            for name, (is_module, dependence) in found.items():
                changed = self._settle(name, is_module, dependence) or changed
            if not changed:
                break

    def _settle(self, name: str, is_module: bool, dependence: Dependence) -> bool:
        """Record what the class of this name is; did that change?"""
        if self._is_module.get(name) == is_module and self._dependence.get(name) == dependence:
            return False
        self._is_module[name] = is_module
        self._dependence[name] = dependence
        return True

    def _layers_dependence(self, info: ClassInfo, skipped: frozenset = frozenset()) -> Dependence:
        """How mode-dependent the layers the class builds itself are: not those in containers each construction
        fills (what it hands them: _handed_layers), nor a layer nothing runs, nor `skipped`."""
        contained, unread = self._parameter_containers(info), self.unread_layers(info)
        found = [self.layer_dependence(call) for call in info.calls
                 if call not in contained and call not in unread and call not in skipped]
        return max((d for d in found if d is not None), default=Dependence.INDEPENDENT)

    def has_foreign_base(self, info: ClassInfo) -> bool:
        """It derives (maybe through this file's classes) from a class defined elsewhere, which may be a module."""
        return self._foreign_base.get(info.name, False)

    # -- constructions ------------------------------------------------------
    def construction(self, call: cst.Call, _nested: dict | None = None) -> Construction | None:
        """What module `call` builds, if it builds one. `_nested`: containers' dependences already worked out
        during this call (see _nested_dependence)."""
        if type(call) is not cst.Call:
            return None  # (what a chain unwraps to, `self.model` of `self.model.cuda()`: no construction)
        func = call.func
        project = self.project_class(func) or self._collector.definitions.class_of_cls(call)
        if project is not None:
            chosen = self._collector.definitions.class_in_force(call) if self._each_definition else None
            if chosen is not None:
                project = chosen  # (the definition in force there: the factory's own `class neuralnet`)
            is_module, dependence = self._each_definition.get(project) or (
                self._is_module.get(project.name, False), self._dependence.get(project.name, Dependence.INDEPENDENT))
            if not is_module:
                return None
            handed = self._handed_layers(project, call, _nested) if dependence is not Dependence.DEPENDENT else None
            return Construction(call, dependence if handed is None else max(dependence, handed),
                                parameterless=self._solved and (self.kinds.holds_no_weights(project) if handed is None
                                                                else self.handed_only_weightless(project, call)),
                                runs_loaded=project.name in self.loaded_classes,
                                starts_in_eval=self.built_in_eval(project))
        if type(func) is cst.Attribute and func.attr.value == "load_from_checkpoint" \
                and not self._defines_own(func.value, "load_from_checkpoint"):
            # Lightning's classmethod builds the class (`cls(**hparams)`, in training mode) and loads its weights:
            # what calling the class builds.
            built = self.construction(call.with_changes(func=func.value), _nested)
            return replace(built, call=call) if built is not None else None
        if type(func) is cst.Attribute and func.attr.value == "from_pretrained":
            if self._defines_own(func.value, "from_pretrained"):
                return None  # the project's own classmethod (nanoGPT's `GPT.from_pretrained`): its summary says
            if api.from_pretrained_loads(dotted(func.value) or ""):
                return Construction(call, Dependence.DEPENDENT, starts_in_eval=True)
            return None
        if type(func) is cst.Attribute and func.attr.value == "from_config" \
                and (owner := self.imports.qualify(func.value) or "").startswith(("transformers.", "diffusers.")) \
                and api.from_pretrained_loads(owner):
            # `AutoModel.from_config(cfg)`: the architecture with new weights, in training mode (its Dropout on)
            return Construction(call, Dependence.DEPENDENT)
        qualified = self.imports.qualify(func)
        if qualified is not None:
            if qualified in api.MODULE_WRAPPERS:  # `weight_norm(nn.Conv1d(...))`, `DataParallel(Net())`
                return self.module_expression(call.args[0].value)[0] if call.args else None
            handled, built = self.library_layer(call, qualified, _nested)
            if handled:
                return built
            if qualified.startswith(("torch.", *api.NOT_TORCH_PREFIXES)):
                return None  # (`caffe.Net(proto)`, `cv2.dnn.DetectionModel(path)`: another framework's network)
            tail = qualified.rsplit(".", 1)[-1]
            if not tail[:1].isupper():  # a function, as a rule; a class the index knows (`class net(nn.Module)`)
                known = self.index.resolve_class(qualified, self.path) \
                    if self.index is not None and self._is_foreign(qualified) else None
                return self.indexed_construction(call, qualified, known) if known is not None else None
            if self.index is not None and self.index.names_function(qualified, self.path):
                return None  # `Encoder(...)`, a builder function of another file: its summary says what it returns
            if self._is_foreign(qualified):
                known = self.index.resolve_class(qualified, self.path) if self.index is not None else None
                if known is not None and (known != Dependence.UNKNOWN or self._assumed is None):
                    return self.indexed_construction(call, qualified, known)
                if known is None and self._plain_class_elsewhere(qualified):
                    return None  # (`MMDetWrapper(cfg)`, a class of another file with no base: an object, no module)
                if self._assumed is not None:
                    self._assumed.add(qualified)
                    return Construction(call, Dependence.INDEPENDENT, certain=False, origin=qualified)
                return Construction(call, Dependence.UNKNOWN, certain=False, origin=qualified)
            return None
        if type(func) is cst.Call and dotted(func.func) == "getattr" and len(func.args) >= 2 \
                and api.builds_library_model((self.imports.qualify(func.args[0].value) or "?") + "."):
            return Construction(call, Dependence.DEPENDENT)  # `getattr(torchvision.models, opt.arch)(...)`
        if type(func) is cst.Subscript:
            library = self._library_namespace(func)
            if library is not None:  # `models.__dict__[args.arch](pretrained=True)`: a torchvision model
                return Construction(call, Dependence.DEPENDENT)
            return self.registered(call)  # `ARCHS[cfg["type"]](cfg)`
        name = dotted(func)
        if type(func) is cst.Name and name not in _BUILTINS and name[:1].isupper() and name not in self.classes \
                and (name not in self._builders or name in self.imports.bindings) \
                and not self._bound_to_a_function(name) and not self.element_run_not_built(name, call):
            # (`def WNConv1d(...)`: a builder; `Variable = lambda ...`; `E = emb_l[k]` in a method)
            return self._star_imported(call, name) or Construction(call, Dependence.UNKNOWN, certain=False)
        return None

    def layer_dependence(self, call: cst.Call, known: dict | None = None) -> Dependence | None:
        """How the layer a model's definition builds with `call` depends on the mode: a construction's,
        or a builder function's of this file (`def conv_bn(c_in, c_out): return nn.Sequential(...)`)."""
        built = self.construction(call, known)
        if built is not None:
            return built.dependence
        name = self._builder_name(call.func)
        return self._builder_dependence(name, call) if name is not None else None

    def module_expression(self, expr: cst.BaseExpression) -> tuple[Construction | None, list[cst.Call]]:
        """The module `expr` builds (through `.to(dev)`-like chains and wrappers such as DataParallel)."""
        base, applied = unwrap_chain(expr)
        outer = applied  # the chain applied to the whole expression, returned when nothing is built
        while type(base) is cst.Call:
            if self.imports.qualify(base.func) in api.MODULE_WRAPPERS and base.args:
                # `nn.DataParallel(model)` wraps the module it is given: what it builds is that one's.
                base, more = unwrap_chain(base.args[0].value)
                applied = more + applied
                continue
            built = self.construction(base)
            if built is not None:
                return built, applied
            break
        return None, outer

    # -- names --------------------------------------------------------------
    def is_module_name(self, key: str, function: FunctionInfo | None) -> bool:
        """Is `key`, as seen in `function`, shown to be an nn.Module there (or in its class)?"""
        return self.names.is_module_name(key, function)
