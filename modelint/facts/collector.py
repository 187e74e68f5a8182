"""The engine's one pass over a file's tree.

`Collector` walks the libcst tree once and files every node a rule or a later
analysis may ask about (calls, expression statements, with-items, attribute
assignments, classes, functions) together with where it sits: its enclosing
function, class and statement, and the `for`/`if` guards around it. Rules read
these indexes instead of walking the tree again. What it files about assignments:
modelint.facts.assignments.
"""

from __future__ import annotations

import re

import libcst as cst

from modelint.facts.names import head_name, ImportTable, dotted, handed_at, literal_value, value_key
from modelint.facts.scopes import AttributeAssign, CallSite, ClassInfo, FunctionInfo, ScriptPhases, Site
from modelint.facts.assignments import AssignmentRecords
from modelint.facts.walk import FastVisitor, iter_nodes

STATEMENT_TYPES = (
    cst.SimpleStatementLine, cst.If, cst.For, cst.While, cst.With, cst.Try, cst.TryStar,
    cst.FunctionDef, cst.ClassDef, cst.Match,
)
_STATEMENT_SET = frozenset(STATEMENT_TYPES)
_SMALL_SET = frozenset(
    {cst.Expr, cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return, cst.Raise, cst.Pass, cst.Break,
     cst.Continue, cst.Del, cst.Global, cst.Nonlocal, cst.Import, cst.ImportFrom, cst.Assert}
    | ({cst.TypeAlias} if hasattr(cst, "TypeAlias") else set())
)


_GRADIENT_METHODS = frozenset({"backward", "requires_grad_", "retain_grad", "register_hook"})
_GRADIENT_TRANSFORMS = ("torch.autograd.grad", "torch.autograd.functional.", "torch.func.", "functorch.")
_MODE_METHODS = frozenset({"eval", "train", "step", "backward", "from_pretrained"})
_DUNDER = re.compile(r"__\w+__")


class Collector(AssignmentRecords, FastVisitor):
    # What on_visit/on_leave keep track of: the statement, the small statement and the lambda a node is in.
    generic_types = _STATEMENT_SET | _SMALL_SET | {cst.Lambda}

    def __init__(self) -> None:
        self.imports = ImportTable()
        self.classes: list[ClassInfo] = []
        self.functions: list[FunctionInfo] = []
        self.calls: list[CallSite] = []
        self.expression_statements: list[tuple[cst.Expr, Site]] = []
        self.with_items: list[tuple[cst.WithItem, Site]] = []
        self.attribute_assigns: list[AttributeAssign] = []
        # `name = <call>` / `self.x = <call>`: candidates for "this name is a module".
        self.call_assigns: list[tuple[str, cst.Call, Site]] = []
        # `model = checkpoint["model"]`: a name bound to an item picked by a literal key (a module pickled whole
        # into a checkpoint dict, once the name is called: modelint.facts.free_models).
        self.item_assigns: list[tuple[str, cst.Subscript, Site]] = []
        self.name_aliases: list[tuple[str, str]] = []  # `helper = base`: another name of the same object
        # `lm = Evaluator(path).nnet`, `net = agent.policy`: a name bound to what an object holds.
        self.held_reads: list[tuple[str, cst.Attribute]] = []
        # `model = BigNet() if use_big else SmallNet()`: a name bound to one of two constructions.
        self.choice_assigns: list[tuple[str, cst.IfExp, Site]] = []
        self.module_uses_gradients = False
        self.module_uses_input_gradients = False
        # Where module-level code asks for input gradients: (its top-level statement, the name it marks or
        # None). A script or notebook draws a saliency map in one place and evaluates in another.
        self.module_input_gradient_marks: list[tuple[cst.CSTNode, str | None]] = []
        self.module_mode_relevant = False
        self.module_calls_functions = False  # module-level code passes names to calls
        # Module-level names bound to a literal (`_import_structure = {...}`): no call hands a model through one.
        self._literal_globals: set[str] = set()
        self.module_phases = ScriptPhases()  # (the module-level `if`s and comparisons naming a name)
        self._stmts: list[cst.CSTNode] = []
        # Calls grouped by the small statement (or compound statement header) they run in.
        self.calls_by_owner: dict[cst.CSTNode, list[cst.Call]] = {}
        self._owners: list[cst.CSTNode] = []
        self._lambdas = 0
        self.calls_in_lambdas: set[cst.Call] = set()
        self._guards: list[cst.CSTNode] = []
        self._scopes: list[ClassInfo | FunctionInfo] = []
        # `model.eval()` / `model.train` read as a truth value (`if self.eval():`), with the `not` around it
        # (or None): a mode switch that always passes the test (MDL013).
        self.mode_tests: list[tuple[cst.BaseExpression, cst.UnaryOperation | None, Site]] = []
        self.declared_elsewhere: dict[FunctionInfo | None, set[str]] = {}  # `global x` / `nonlocal x` names
        self._tested: set[cst.CSTNode] = set()

    # -- where are we -------------------------------------------------------
    def assigns_to(self, cls: ClassInfo | None, target: str) -> list[AttributeAssign]:
        """The assignments of `target` (`self.model`) in the methods of `cls`, in order (indexed once, after the
        walk: rules and the interpreter ask for every call they meet)."""
        index = self.__dict__.get("_assigns_by_target")
        if index is None:
            index = self.__dict__["_assigns_by_target"] = {}
            for assign in self.attribute_assigns:
                index.setdefault((assign.site.cls, dotted(assign.target)), []).append(assign)
        return index.get((cls, target), []) if cls is not None else []

    def calls_made_in(self, function: FunctionInfo | None) -> list:
        """The call sites whose innermost function is `function` (indexed once, after the walk)."""
        index = self.__dict__.get("_calls_by_function")
        if index is None:
            index = self.__dict__["_calls_by_function"] = {}
            for site in self.calls:
                index.setdefault(site.site.function, []).append(site)
        return index.get(function, [])

    def assigns_in_class(self, cls: ClassInfo) -> list[AttributeAssign]:
        """The attribute assignments made in the methods of `cls` (indexed once, after the walk)."""
        index = self.__dict__.get("_assigns_by_class")
        if index is None:
            index = self.__dict__["_assigns_by_class"] = {}
            for assign in self.attribute_assigns:
                index.setdefault(assign.site.cls, []).append(assign)
        return index.get(cls, [])

    def constructor(self, cls: ClassInfo) -> FunctionInfo | None:
        """The class's own `__init__`, if it writes one."""
        return next((f for f in self.functions if f.cls is cls and f.name == "__init__"), None)

    def _function(self) -> FunctionInfo | None:
        for scope in reversed(self._scopes):
            if isinstance(scope, FunctionInfo):
                return scope
        return None

    def _class(self) -> ClassInfo | None:
        for scope in reversed(self._scopes):
            if isinstance(scope, ClassInfo):
                return scope
        return None

    def _site(self) -> Site:
        return Site(self._function(), self._class(), self._stmts[-1] if self._stmts else None, tuple(self._guards))

    def on_visit(self, node: cst.CSTNode) -> bool:
        kind = type(node)
        if kind in _STATEMENT_SET:
            self._stmts.append(node)
            self._owners.append(node)
        elif kind in _SMALL_SET:
            self._owners.append(node)
        elif kind is cst.Lambda:
            self._lambdas += 1
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        kind = type(original_node)
        if kind in _STATEMENT_SET:
            self._stmts.pop()
            self._owners.pop()
        elif kind in _SMALL_SET:
            self._owners.pop()
        elif kind is cst.Lambda:
            self._lambdas -= 1

    def leave_Call(self, original_node: cst.Call) -> None:
        # Post-order (arguments before the call), as the mode flow evaluates them.
        if not self._lambdas and self._owners:
            self.calls_by_owner.setdefault(self._owners[-1], []).append(original_node)
        elif self._lambdas:
            self.calls_in_lambdas.add(original_node)  # run when the lambda is, by whoever calls it

    # -- imports ------------------------------------------------------------
    def visit_Import(self, node: cst.Import) -> None:
        function = self._function()
        self.imports.add_import(node, function.node if function is not None else None)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        function = self._function()
        self.imports.add_import_from(node, function.node if function is not None else None)

    # -- scopes -------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        info = ClassInfo(node, node.name.value, self._class())
        self.classes.append(info)
        self._scopes.append(info)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self._scopes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        owner = self._scopes[-1] if self._scopes else None
        cls = owner if isinstance(owner, ClassInfo) else None
        if cls is not None:
            cls.methods.setdefault(node.name.value, node)
        info = FunctionInfo(node, node.name.value, cls, self._function())
        self.functions.append(info)
        self._scopes.append(info)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._scopes.pop()

    # -- guards -------------------------------------------------------------
    def visit_For(self, node: cst.For) -> None:
        self._guards.append(node)

    def leave_For(self, original_node: cst.For) -> None:
        self._guards.pop()

    def visit_If(self, node: cst.If) -> None:
        self._guards.append(node)
        self._truth_test(node.test)
        test = node.test
        if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
            test = test.expression
        if type(test) is cst.Name:
            self._phase_name(test.value, node)
        elif type(test) is cst.Comparison and type(test.left) is cst.Name and len(test.comparisons) == 1:
            self._phase_name(test.left.value, node)  # (`if flag == False:`; the comparison is filed too)
        elif type(test) is cst.BooleanOperation and type(test.left) is cst.Comparison \
                and type(test.left.left) is cst.Name:
            self._phase_name(test.left.left.value, node)  # (`if mode == "train" or mode == "train+log":`)

    def visit_Comparison(self, node: cst.Comparison) -> None:
        if type(node.left) is cst.Name and len(node.comparisons) == 1:
            self._phase_name(node.left.value, node)

    def _phase_name(self, name: str, node: cst.CSTNode) -> None:
        for scope in [s for s in self._scopes if isinstance(s, FunctionInfo)] or [self.module_phases]:
            scope.phase_names.add(name)
            scope.phase_nodes.append(node)

    def leave_If(self, original_node: cst.If) -> None:
        self._guards.pop()

    def visit_Else(self, node: cst.Else) -> None:
        self._guards.append(node)  # an `else` branch is not the `if` branch: code there is on other paths

    def leave_Else(self, original_node: cst.Else) -> None:
        self._guards.pop()

    def visit_With(self, node: cst.With) -> None:
        self._guards.append(node)

    def leave_With(self, original_node: cst.With) -> None:
        self._guards.pop()

    def visit_Global(self, node: cst.Global) -> None:
        self.declared_elsewhere.setdefault(self._function(), set()).update(item.name.value for item in node.names)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.declared_elsewhere.setdefault(self._function(), set()).update(item.name.value for item in node.names)

    # -- truth tests --------------------------------------------------------
    def visit_While(self, node: cst.While) -> None:
        self._truth_test(node.test)

    def visit_IfExp(self, node: cst.IfExp) -> None:
        self._truth_test(node.test)

    def visit_Assert(self, node: cst.Assert) -> None:
        self._truth_test(node.test)

    def visit_CompIf(self, node: cst.CompIf) -> None:
        self._truth_test(node.test)

    def visit_BooleanOperation(self, node: cst.BooleanOperation) -> None:
        # Only the left operand is always tested: `flag and model.eval()` is a conditional call, a
        # statement written for its effect, unless the whole operation is itself a test.
        self._truth_test(node.left)

    def visit_UnaryOperation(self, node: cst.UnaryOperation) -> None:
        if type(node.operator) is cst.Not:
            self._truth_test(node)

    def _truth_test(self, expr: cst.BaseExpression, negation: cst.UnaryOperation | None = None) -> None:
        """`expr` is read as a truth value: keep it when it is a mode method, called or not."""
        kind = type(expr)
        if kind is cst.BooleanOperation:
            self._truth_test(expr.left)
            self._truth_test(expr.right)
        elif kind is cst.UnaryOperation and type(expr.operator) is cst.Not:
            self._truth_test(expr.expression, expr)
        else:
            method = expr.func if kind is cst.Call else expr
            if type(method) is cst.Attribute and method.attr.value in ("eval", "train") and expr not in self._tested:
                self._tested.add(expr)
                self.mode_tests.append((expr, negation, self._site()))

    # -- facts --------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        site = self._site()
        func = node.func
        qualified = self.imports.qualify(func)
        self.calls.append(CallSite(node, qualified, dotted(func), site))
        cls = site.cls
        if cls is not None:
            cls.calls.append(node)
        attr = func.attr.value if type(func) is cst.Attribute else None
        if attr in _GRADIENT_METHODS or (attr == "grad" and "autograd" in (dotted(func) or "")):
            name = dotted(func.value) if attr != "grad" else None
            if attr == "grad":  # `torch.autograd.grad(loss, x_adv)`: gradients with respect to `x_adv`
                inputs = handed_at(node, "inputs", 1)
                for element in (inputs.elements if type(inputs) in (cst.List, cst.Tuple) else (inputs,)):
                    if element is not None:  # (an `Element` of a list, or the expression itself)
                        self._mark_gradients(inputs=True, name=dotted(element.value if isinstance(
                            element, cst.BaseElement) else element))
            # (`p.requires_grad_(False)`, or on each `p` of `net.parameters()`: freezing, unfreezing weights)
            weights = (attr == "requires_grad_" and node.args and literal_value(node.args[0].value) is False) or (
                attr in ("requires_grad_", "register_hook") and self._a_parameter(name))  # (`p.register_hook(clip)`)
            self._mark_gradients(inputs=attr != "backward" and not weights, name=name)
        elif (qualified or "").startswith(_GRADIENT_TRANSFORMS):
            self._mark_gradients(inputs=True)  # `jacobian(f, x)`, `torch.func.grad(f)(x)`: gradients of a forward
        if attr in _MODE_METHODS or attr == "set_grad_enabled":
            self._mark_mode_relevant()
        if len(node.args) == 1 and type(node.args[0].value) is cst.Name \
                and (attr or (func.value if type(func) is cst.Name else "")) in ("train", "set_grad_enabled"):
            self._phase_name(node.args[0].value.value, node)  # (`model.train(flag)`, `set_grad_enabled(flag)`)
        function = site.function
        if function is None and not self.module_calls_functions:
            # (not `get_logger(__name__)`: module metadata; nor a package's `sys.modules[__name__] =
            # _LazyModule(__name__, ..., _import_structure)`, handed a literal, its result kept by no name here;
            # `nets = build_gan(cfg)` is a factory's call all the same)
            owner = self._owners[-1] if self._owners else None
            named = type(owner) is cst.Assign and owner.value is node \
                and all(type(target.target) is cst.Name for target in owner.targets)
            self.module_calls_functions = any(
                type(arg.value) is cst.Name and not _DUNDER.fullmatch(arg.value.value)
                and (named or arg.value.value not in self._literal_globals) for arg in node.args)
        if function is not None and not function.calls_params:
            # Helpers that run or pass on a parameter (`model(x)`, `evaluate(model)`) get summaries
            # (the mode flow leaves out modules' own `forward` methods); calls into torch itself never
            # change a caller's mode.
            # (`self`/`cls` of a method is the object; of a module-level `def new_labels(self)`, a parameter)
            params = (function.param_set | function.enclosing_params | function.param_aliases) - function.receivers
            text = value_key(func) or ""
            head = text.split(".")[0].split("[")[0]
            if head == "self":  # `self.model(x)`, `self.predict(x)`, `self(x)`
                function.calls_self_attribute = True
            if head in params:
                function.calls_params = True
            elif not self.imports.is_torch_name(self.imports.qualify(func)) and any(
                head_name(arg.value) in params for arg in node.args
            ):
                function.calls_params = True  # (`evaluate(ctx.model)` passes on what `ctx` holds)
        for arg in node.args:
            if arg.keyword is not None and arg.keyword.value == "requires_grad":
                if type(arg.value) is cst.Name and arg.value.value == "True":
                    owner = self._owners[-1] if self._owners else None
                    targets = owner.targets if type(owner) is cst.Assign else ()
                    self._mark_gradients(inputs=True, name=dotted(targets[0].target) if len(targets) == 1 else None)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        name = node.attr.value
        if name == "training" and type(node.value) is cst.Name and node.value.value == "self":
            cls = self._class()
            owner = self._owners[-1] if self._owners else None
            # (`self.training = False` in `__init__` only sets the flag: the layers still decide)
            written = type(owner) is cst.Assign and any(target.target is node for target in owner.targets)
            if cls is not None and not written:
                cls.reads_training_flag = True
        elif name == "grad":
            self._mark_gradients()
            function = self._function()
            if function is not None and dotted(node.value) not in ("torch.autograd", "autograd"):
                function.reads_grads = True  # `p.grad`: gradients read, not only stepped
        elif name == "forward" and (function := self._function()) is not None:
            # (`forward = self.net.forward`, called later by that name: the net's forward pass runs here)
            head = (value_key(node.value) or "").split(".")[0]
            if head == "self":
                function.calls_self_attribute = True
            elif head in function.param_set:
                function.calls_params = True

    def _a_parameter(self, name: str | None) -> bool:
        """Is `name` the variable of an enclosing loop over a module's parameters (`for p in net.parameters()`,
        `for n, p in net.named_parameters()`)?"""
        for guard in self._guards:
            if type(guard) is cst.For and any(type(node) is cst.Name and node.value == name
                                              for node in iter_nodes(guard.target)) \
                    and any(type(node) is cst.Call and type(node.func) is cst.Attribute
                            and node.func.attr.value in ("parameters", "named_parameters")
                            for node in iter_nodes(guard.iter)):
                return True
        return False

    def _mark_gradients(self, inputs: bool = False, name: str | None = None) -> None:
        function = self._function()
        if function is None:
            self.module_uses_gradients = True
            self.module_uses_input_gradients = self.module_uses_input_gradients or inputs
            if inputs and self._stmts:
                self.module_input_gradient_marks.append((self._stmts[0], name))
        else:
            function.uses_gradients = True
            function.uses_input_gradients = function.uses_input_gradients or inputs
            if inputs and name is not None:
                function.input_gradient_names.add(name)

    def _mark_mode_relevant(self) -> None:
        function = self._function()
        if function is None:
            self.module_mode_relevant = True
        else:
            function.mode_relevant = True

    def visit_Expr(self, node: cst.Expr) -> None:
        self.expression_statements.append((node, self._site()))

    def visit_WithItem(self, node: cst.WithItem) -> None:
        self.with_items.append((node, self._site()))
