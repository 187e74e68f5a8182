"""Which function a call runs, from what the file imports and what the project index knows.

- a function or method of this file (`evaluate(...)`, `self.validate()`): its summary here,
  its `self` the call's receiver;
- an imported function (`from utils import evaluate`, `utils.evaluate(...)`), or one a star
  import brings in (`from util import *`): the index's summary of the file that defines it;
- a method of a model built from an imported class (`model.predict(x)`): that class's
  method, as its own file summarises it;
- a template method's hook left to subclasses (`self.train_epoch()` in a base class): the one
  subclass of the file that writes it.

In the first pass (no index yet) what could not be resolved is recorded, so that the runner
analyses the file again once the other files are summarised.
"""

from __future__ import annotations


import libcst as cst

from modelint.facts.libraries import STANDARD_LIBRARY
from modelint.facts.names import BUILTIN_NAMES, dotted, is_super_call, is_torch_module
from modelint.facts.scopes import FunctionInfo
from modelint.facts.summaries import qualname
from modelint.summary import FunctionSummary



class CallResolution:
    """Mixed into ModeFlow: `self.imports`, `self.index`, `self.path`, `self.summaries`, `self.local_functions`,
    `self.modules`, `self.unresolved`, `self.last_unresolved`, `self.local_callee`, `self.collector`,
    `self._subclasses`."""

    def runs_local(self, call: cst.Call, enclosing: FunctionInfo | None) -> str | None:
        """The qualname of this file's function whose summary the call runs: its `local_callee`, or for a
        template method's hook left to subclasses (`self.train_epoch()` in a base class whose own raises
        NotImplementedError, or has none), the one subclass of the file that writes it."""
        cache = self.__dict__.setdefault("_runs_local", {})  # (asked for each call, in every round)
        if call in cache:
            return cache[call]
        local = self.local_callee(call, enclosing)
        function = self.local_functions.get(local) if local is not None else None
        if local is None or (function is not None and function.is_abstract):
            overrides = self.overriders(call, enclosing)
            if len(overrides) == 1:
                local = overrides[0]
        cache[call] = local
        return local

    def overriders(self, call: cst.Call, enclosing: FunctionInfo | None) -> list[str]:
        """`self._valid_epoch()` in a base class: the subclasses' methods of that name in this file, which
        the call runs on their instances (a template method and its hooks)."""
        func = call.func
        if not (type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self"):
            return []
        while enclosing is not None and enclosing.cls is None:
            enclosing = enclosing.outer
        if enclosing is None:
            return []
        name = func.attr.value
        return [f"{sub}.{name}" for sub in self._subclasses.get(enclosing.cls.name, ())
                if f"{sub}.{name}" in self.local_functions]

    def resolve(self, call: cst.Call, enclosing: FunctionInfo | None) -> tuple[FunctionSummary | None, str | None]:
        """The summary of the function a call runs, and the receiver its `self` maps to."""
        func = call.func
        local = self.runs_local(call, enclosing)
        if local is not None:
            # A method's `self` is its receiver: `self` for `self.validate()`, `self.policy_old` for
            # `self.policy_old.act(x)` (the only attribute calls local_callee resolves).
            # (`teacher(x)` running `EMATeacher.__call__`: the object called is its `self`)
            receiver = (func.value if local.endswith(".__call__") else None) if type(func) is cst.Name \
                else None if type(func) is not cst.Attribute else "self" if is_super_call(func.value) \
                else dotted(func) if local.endswith(".__call__") and func.attr.value != "__call__" \
                else dotted(func.value)  # (`self.recorder(x)`: the object `self.recorder` holds is its `self`)
            return self.summaries.get(local), receiver
        if type(func) is cst.Attribute and (is_super_call(func.value) or (
                type(func.value) is cst.Name and func.value.value == "self")):
            # (`self.predict_box(x)` in a subclass of another file's class that defines it: that base's method)
            return self._resolve_inherited(func.attr.value, enclosing), "self"
        if type(func) is cst.Name:
            qualified = self.imports.bindings.get(func.value)
            if qualified is not None:
                # (`Detector(model)`, a class of another file: what its constructor does to what it is handed)
                return self._resolve_imported(qualified) or (self._resolve_imported(f"{qualified}.__init__")
                                                             if func.value[:1].isupper() else None), None
            return self._resolve_star_imported(func.value), None
        if type(func) is cst.Attribute:
            receiver = dotted(func.value)
            if receiver is not None and receiver != "self":
                qualified = self.imports.qualify(func)
                if qualified is not None and not self.imports.is_torch_name(qualified):
                    # (a module imported under any name, `from . import common as U`, or a class of one)
                    if receiver.split(".")[0] in self.imports.bindings or "." in receiver:
                        return self._resolve_imported(qualified), None
        return None, None

    def _resolve_inherited(self, method: str, enclosing: FunctionInfo | None) -> FunctionSummary | None:
        """`super().predict_data_mgr(loader)` in a class deriving from another file's `Predictor`: that base's
        method, as its file summarises it (its `self` is this object)."""
        while enclosing is not None and enclosing.cls is None:
            enclosing = enclosing.outer
        if enclosing is None:
            return None
        for qualified in self.bases_elsewhere(enclosing.cls.name):
            summary = self.resolve_method_of(qualified, method)
            if summary is not None:
                return summary
            self.ask_the_index_later()  # (the index may know that base)
        return None

    def bases_elsewhere(self, cls_name: str) -> list[str]:
        """The bases of the class (and of its bases in this file) that other files of the project define, as
        imported here (not torch's)."""
        out = []
        for name in self.class_and_bases(cls_name):
            info = self.modules.classes.get(name)
            for base in info.bases if info is not None else ():
                qualified = self.imports.qualify(base)
                if qualified is not None and self.modules.project_class(base) is None \
                        and not self.imports.is_torch_name(qualified):
                    out.append(qualified)
        return out

    def _resolve_star_imported(self, name: str) -> FunctionSummary | None:
        """`do_eval(...)` after `from util import *`: the star-imported module that defines it, if the index
        knows one (first pass: each is asked about)."""
        if not self.imports.star_modules or name in self.local_functions or name in self.modules.classes \
                or name in BUILTIN_NAMES:
            return None
        for module in self.imports.star_modules:
            summary = self._resolve_imported(f"{module}.{name}")
            if summary is not None:
                return summary
            if self.index is None:
                self.unresolved.add(f"{module}.{name}")
        return None

    def constructor_of(self, call: cst.Call) -> FunctionSummary | None:
        """`eval_mode(actor, critic, no_grad=True)` building an object of a class of the project: the summary of
        that class's `__init__`, which says what the object does as a context manager (see mode_contexts)."""
        func = call.func
        if type(func) is cst.Name and func.value in self.modules.classes and func.value not in self.imports.bindings:
            return self.summaries.get(f"{func.value}.__init__")
        qualified = self.imports.qualify(func) if type(func) in (cst.Name, cst.Attribute) else None
        if qualified is None or self.imports.is_torch_name(qualified):
            return None
        return self._resolve_imported(f"{qualified}.__init__")

    def resolve_method_of(self, origin: str, method: str, from_path: str | None = None) -> FunctionSummary | None:
        """`model.predict(x)` on a model built from an imported class (`origin`, as imported here or in
        `from_path`): that class's method, as its own file summarises it (`self` is the receiver)."""
        return self._resolve_imported(f"{origin}.{method}", from_path)

    def class_handed_to(self, function: FunctionInfo | None, param: str, method: str) -> tuple[str, str] | None:
        """(class, as imported in the file calling it) of the models every call in other files hands this
        top-level function's parameter (`evaluate(model, ...)` called with a `SASRec` by train.py), whose
        `method` it calls; None where unknown. Each pass notes what it asks (`evaluate|model|0|predict`), for the
        second phase and for what its result depends on."""
        if function is not None and function.cls is not None and param.startswith("self.") and param.count(".") == 1:
            return self._class_handed_to_constructor(function.cls.name, param[5:], method)
        if function is None or function.outer is not None or param not in function.param_set \
                or param in ("self", "cls"):
            return None
        position = function.params.index(param)
        self.asked_handed.add(f"{qualname(function)}|{param}|{position}|{method}")
        if self.index is None:
            return None
        return self.index.class_handed(self.path, qualname(function), param, position)

    def _class_handed_to_constructor(self, cls: str, attribute: str, method: str) -> tuple[str, str] | None:
        """`self.model.finetune(x)` in a trainer whose `__init__` (its own or a base's of this file) keeps the
        parameter `model` as `self.model`: the class every call building a `cls` in other files hands it."""
        lineage = self.class_and_bases(cls)
        kept = next((assign.value.value for assign in self.collector.attribute_assigns
                     if assign.site.cls is not None and assign.site.cls.name in lineage
                     and assign.site.function is not None and assign.site.function.name == "__init__"
                     and dotted(assign.target) == f"self.{attribute}" and type(assign.value) is cst.Name
                     and assign.value.value in assign.site.function.param_set), None)
        init = next((self.local_functions.get(f"{name}.__init__") for name in lineage
                     if f"{name}.__init__" in self.local_functions), None)
        if kept is None or init is None or kept not in init.positional_params:
            return None
        position = init.positional_params.index(kept) - 1  # (the call's arguments start after `self`)
        self.asked_handed.add(f"{cls}|{kept}|{position}|{method}")
        if self.index is None:
            return None
        return self.index.class_handed(self.path, cls, kept, position)

    def ask_the_index_later(self) -> None:
        """First pass only: the reference the last resolution could not settle is recorded, for the second
        phase to look up in the project index."""
        if self.index is None and self.last_unresolved is not None:
            self.unresolved.add(self.last_unresolved)

    def _resolve_imported(self, qualified: str, from_path: str | None = None) -> FunctionSummary | None:
        head = qualified.lstrip(".").split(".")[0]
        if is_torch_module(qualified) or (not qualified.startswith(".") and head in STANDARD_LIBRARY):
            return None
        self.last_unresolved = qualified
        if self.index is None:
            return None
        return self.index.resolve(qualified, from_path or self.path)
