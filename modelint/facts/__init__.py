"""Facts about one file, computed once and shared by every rule.

`FileFacts` holds the parsed module and the collector's indexes; the costlier
analyses (`modules`, `flow`) are computed on first use, so a run that selects
only syntactic rules never pays for them.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts.collector import Collector
from modelint.facts.definitions import Definitions
from modelint.facts.scopes import FunctionInfo, Site
from modelint.facts.flow import ModeFlow
from modelint.facts.naming import is_evaluation_name, is_test_file
from modelint.facts.regions import grad_wrappers, imported_decorators, lexically_grad_free
from modelint.facts.modules import ModuleTable
from modelint.facts.input_gradients import spread_to_callers
from modelint.facts.positions import Positions
from modelint.facts.names import ImportTable, dotted
from modelint.facts.walk import iter_nodes
from modelint.source import physical_lines
from modelint.summary import ProjectIndex


class FileFacts:
    def __init__(self, module: cst.Module, path: str, index: ProjectIndex | None = None,
                 lines: list[str] | None = None, text: str | None = None) -> None:
        self.module = module
        self.text = text
        self.path = path
        self.index = index
        self.lines = lines if lines is not None else physical_lines(module.code)
        self.collector = Collector()
        self.collector.walk(module)
        self.collector.imports.settle()
        self.collector.module_node = module
        spread_to_callers(self.collector)  # (a method differentiating by its inputs: its callers need autograd)
        # (before any summary is named: a redefined function's earlier definitions are keyed apart)
        self.collector.definitions = Definitions(self.collector)

    def release(self) -> None:
        """Let go of everything computed, once the file's findings and summary are made. The facts refer to one
        another (the flow asks this object's `is_module_class`, the module table's parts their table, the
        collector's definitions their collector): left to themselves they would keep the file's tree alive
        in those cycles until the cycle collector walked it, a tenth of a cold run; let go of, reference
        counting frees the tree at once."""
        for part in (self.__dict__.get("flow"), self.__dict__.get("modules"), self.collector):
            if part is not None:
                part.__dict__.clear()
        self.__dict__.clear()

    @cached_property
    def positions(self) -> Positions:
        """Where nodes are (libcst `CodeRange`s), placed only when something must be located."""
        return Positions(self.module, self.module.code if self.text is None else self.text)

    def locate(self, node: cst.CSTNode) -> tuple[int, int, int, int] | None:
        span = self.positions.get(node)
        if span is None:
            return None
        return span.start.line, span.start.column + 1, span.end.line, span.end.column + 1

    @property
    def imports(self) -> ImportTable:
        return self.collector.imports

    @cached_property
    def modules(self) -> ModuleTable:
        return ModuleTable(self.collector, index=self.index, path=self.path)

    @cached_property
    def flow(self) -> ModeFlow:
        return ModeFlow(self.collector, self.modules, self.path, index=self.index, module_class=self.is_module_class,
                        maybe_module_class=self.may_be_module_class, grad_wrappers=self.grad_wrappers,
                        raising_calls=self.raising_calls)

    @cached_property
    def receivers(self):
        """What a receiver is (an nn.Module? of which class?): see modelint.facts.receivers."""
        from modelint.facts.receivers import Receivers

        return Receivers(self)

    @cached_property
    def frozen_models(self) -> frozenset[str]:
        """Models whose parameters the file freezes: see modelint.facts.freezing."""
        from modelint.facts.freezing import frozen_models

        return frozen_models(self)

    @cached_property
    def optimized_by_scope(self) -> dict:
        """Scope -> (models its optimizers are built over, whether all are named): see
        modelint.facts.optimized_scopes."""
        from modelint.facts.optimized_scopes import optimized_by_scope

        return optimized_by_scope(self)

    @cached_property
    def grad_wrappers(self) -> frozenset[str]:
        """The file's own decorators that run what they wrap under no_grad (`@nograd`), and those it imports
        from the project's other files that the index knows do (`@make_nograd_func`)."""
        own = grad_wrappers(self.collector)
        if self.index is None:
            return own
        imported = {written for written, references in imported_decorators(self.collector).items()
                    if any(self.index.grad_wrapper(reference, self.path) for reference in references)}
        return own | imported if imported else own

    @cached_property
    def bound_names(self) -> frozenset[str] | None:
        """Every name the file binds (None: a star import may bind any): see modelint.facts.scope_names."""
        from modelint.facts.scope_names import bound_names

        return bound_names(self.module)

    @cached_property
    def raising_calls(self) -> frozenset:
        """Statements that always raise, so the path ends there: a mode call on a name bound nowhere,
        a torch function that does not exist, a call that ends the process."""
        from modelint.facts.scope_names import process_exits

        return self.unbound_mode_receivers | frozenset(self.misspelled_torch_calls) | process_exits(self.collector)

    @cached_property
    def misspelled_torch_calls(self) -> dict:
        """`torch.<near miss>(...)` call -> the torch name meant: see modelint.facts.scope_names."""
        from modelint.facts.scope_names import misspelled_torch_calls

        return misspelled_torch_calls(self.collector)

    @cached_property
    def unbound_mode_receivers(self) -> frozenset:
        """`mode.train()` on a name the file binds nowhere: see modelint.facts.scope_names."""
        from modelint.facts.scope_names import unbound_mode_receivers

        return unbound_mode_receivers(self.collector, self.module)

    def is_module_class(self, cls) -> bool:
        """Is this class of the file an nn.Module? Its bases in this file, or, for a base defined elsewhere
        (`class Emu3VQVAE(PreTrainedModel)`), what the project index knows of it."""
        if self.modules.is_module_class(cls):
            return True
        return self.modules.has_foreign_base(cls) and self.receivers.of_class(cls).module is True

    def may_be_module_class(self, cls) -> bool:
        """A module class, or one whose base elsewhere may be one (the index does not say it is not)."""
        return self.is_module_class(cls) or (self.modules.has_foreign_base(cls)
                                             and self.receivers.of_class(cls).module is not False)

    @cached_property
    def call_sites(self) -> dict:
        """Call node -> its CallSite (where it sits)."""
        return {site.node: site for site in self.collector.calls}

    def in_module_class(self, site: Site) -> bool:
        """Is this inside a method of an nn.Module subclass (at any nesting)?"""
        cls = site.cls
        while cls is not None:
            if self.modules.is_module_class(cls):
                return True
            cls = cls.outer
        return False

    @cached_property
    def forward_reachable(self) -> set:
        """Methods of nn.Module classes that `forward` runs: itself and the methods it calls on `self`, and
        the file's module-level functions it calls, transitively."""
        return self._reachable_from_forward(self.modules.is_module_class)

    @cached_property
    def maybe_forward_reachable(self) -> set:
        """The same for classes that may be modules (a base elsewhere may be one; one that defines
        `forward` is taken for one without asking the index about its base)."""
        return self._reachable_from_forward(lambda cls: "forward" in cls.methods or self.may_be_module_class(cls))

    def _reachable_from_forward(self, module_class) -> set:
        methods: dict = {}
        judged: dict = {}  # class -> module_class(class), asked once and only for a class with a forward
        for function in self.collector.functions:
            cls = function.cls
            if cls is None or not ("forward" in cls.methods or "__call__" in cls.methods):
                continue
            if cls not in judged:
                judged[cls] = module_class(cls)
            if judged[cls]:
                methods.setdefault(cls, {})[function.name] = function
        if not methods:
            return set()
        calls_in: dict = {}
        for site in self.collector.calls:
            calls_in.setdefault(site.site.function, []).append(site.node)
        # The file's module-level helpers a forward calls (`_calculate_mask(x, self.head)`) compute part of it.
        helpers = {f.name: f for f in self.collector.functions if f.cls is None and f.outer is None
                   and f.name not in self.imports.bindings}
        inherited = self._methods_of_subclasses()
        reachable: set = set()
        for cls, named in methods.items():
            todo = [named[name] for name in ("forward", "__call__") if name in named]
            while todo:
                function = todo.pop()
                if function in reachable:
                    continue
                reachable.add(function)
                owner = function.params[0] if function.params else None
                for call in calls_in.get(function, ()):
                    func = call.func
                    if type(func) is cst.Attribute and dotted(func.value) == owner and func.attr.value != "__init__":
                        if func.attr.value in named:
                            todo.append(named[func.attr.value])
                        # (a template's `forward` calling `self.forward_test(...)`, which each subclass writes)
                        todo.extend(inherited.get((function.cls, func.attr.value), ()))
                    elif type(func) is cst.Name and func.value in helpers:
                        todo.append(helpers[func.value])
        return reachable

    def _methods_of_subclasses(self) -> dict:
        """(class, method name) -> that method as the file's subclasses of the class (at any depth) write it."""
        classes = {info.name: info for info in self.collector.classes}
        parents = {info: [classes[name] for base in info.bases if (name := dotted(base)) in classes]
                   for info in self.collector.classes}
        out: dict = {}
        for function in self.collector.functions:
            if function.cls is None or function.outer is not None:
                continue
            seen, todo = set(), list(parents.get(function.cls, ()))
            while todo:
                ancestor = todo.pop()
                if ancestor in seen:
                    continue
                seen.add(ancestor)
                out.setdefault((ancestor, function.name), []).append(function)
                todo.extend(parents.get(ancestor, ()))
        return out

    def is_test_function(self, function: FunctionInfo | None) -> bool:
        """A unit test (pytest `test_*` in a test file, or a `unittest.TestCase` method): it checks the
        model, it does not evaluate it."""
        return self._is_test_function(function, frozenset())

    def _is_test_function(self, function: FunctionInfo | None, seen: frozenset) -> bool:
        while function is not None:
            # (pytest collects module-level functions and methods, not a `test_loop_fn` nested in a script's main)
            # (pytest collects `test*` methods of `Test*` classes only: `TranslatorTest.test()` runs inference)
            collected = function.cls is None or function.cls.name.startswith("Test")
            if function.name.startswith("test") and function.outer is None and collected and (
                    is_test_file(self.path) or (function.name.startswith("test_") and _asserts(function)
                                                and (not function.params or _asserts_shapes(function)))) \
                    and (_asserts(function) or function.cls is not None or not self._run_by_the_script(function, seen)):
                # (a pytest-style `test_tagger()` checking shapes with `assert`, wherever it lives; a `test_*`
                # method of a `Test*` class stays a test when the file's own bottom lines call it too)
                return True
            if function.cls is not None and self._is_test_case(function.cls):
                return True
            if is_test_file(self.path) and function not in seen:
                # A helper of a test file that only tests call (`compare_2d()` of `test_training()`).
                callers = self.flow.syntactic_callers(function)
                if callers and None not in callers and all(self._is_test_function(c, seen | {function})
                                                           for c in callers):
                    return True
            function = function.outer
        return False

    def _run_by_the_script(self, function: FunctionInfo, seen: frozenset) -> bool:
        """`test()` that the file's own script or `main()` calls each epoch (a `*_test.py` training script of
        a benchmark), asserting nothing: a helper of that script, not a test pytest collects (pytest calls
        those, the file does not; a check that asserts stays a check, whoever runs it, and so does one in a
        file that trains nothing)."""
        if function in seen:
            return False
        if not self._file_trains:
            # (a test file running its own checks at the bottom trains nothing; but one whose bottom lines hand it
            # the arguments its parameters need, `test(obj_names, data_path, ckpt)`, is an evaluation script:
            # pytest would look for fixtures of those names)
            script_calls = self._script_calls(function)
            if script_calls and ((bool(function.params) and any(call.args for call in script_calls))
                                 or self._script_builds_objects):
                return True
            # (or one that the script's `main(args)` hands its arguments: `test(args, loader, model)` of a
            # `cityscapes_test.py` evaluation script)
            return bool(function.params) and any(
                caller is not None and not self._is_test_function(caller, seen | {function})
                and any(call.args for call in self._script_calls(caller))
                for caller in self.flow.syntactic_callers(function))
        callers = self.flow.syntactic_callers(function)
        return any(caller is None or not self._is_test_function(caller, seen | {function}) for caller in callers)

    def _script_calls(self, function: FunctionInfo) -> list:
        """The calls of the function the file's module-level code makes."""
        return [call for call in self.flow._calls_of.get(function, ())
                if self.flow.site_of_call[call].site.function is None]

    @cached_property
    def _script_builds_objects(self) -> bool:
        """Does the file's module-level code bind a name to what a call returns (`args = parser.parse_args()`,
        `model = torch.load(path)`): a script with its own set-up, not a test file calling its tests by hand?"""
        return any(type(stmt) is cst.SimpleStatementLine and any(type(small) is cst.Assign and type(small.value)
                                                                 is cst.Call for small in stmt.body)
                   for stmt in self.module.body)

    @cached_property
    def _file_trains(self) -> bool:
        """Does the file back-propagate anywhere (`loss.backward()`)?"""
        from modelint.facts.value_calls import BACKWARD_METHODS

        return any(type(site.node.func) is cst.Attribute and site.node.func.attr.value in BACKWARD_METHODS
                   for site in self.collector.calls)

    def _is_test_case(self, cls) -> bool:
        seen = set()
        while cls is not None and cls.name not in seen:
            seen.add(cls.name)
            for base in cls.bases:
                qualified = self.imports.qualify(base) or ""
                # unittest's, or a project's base named as unittest names them (`AllenNlpTestCase`,
                # `TorchTestCase`): the naming is what pytest and unittest themselves go by
                if qualified in ("unittest.TestCase", "unittest.case.TestCase") or qualified.endswith("TestCase"):
                    return True
            bases = [self.modules.classes.get(getattr(b, "value", "")) for b in cls.bases]
            cls = next((b for b in bases if b is not None), None)
        return False

    def uses_input_gradients(self, function: FunctionInfo | None, call: cst.Call | None = None) -> bool:
        """Whether `function` asks autograd for gradients with respect to inputs (saliency, adversarial
        examples). Module-level code, for `call` in it: only the top-level statement that asks, and calls
        handed a tensor it marked (`x.requires_grad_()` in one cell, `model(x)` in the next)."""
        if function is not None:
            return function.takes_input_gradients
        marks = self.collector.module_input_gradient_marks
        if call is None or not marks:
            return bool(marks)
        marked = {name for _stmt, name in marks if name is not None}
        if marked and any(dotted(node) in marked for arg in call.args for node in iter_nodes(arg.value)
                          if type(node) in (cst.Name, cst.Attribute)):
            return True
        return call in self._calls_beside_input_gradients

    @cached_property
    def _calls_beside_input_gradients(self) -> frozenset:
        """The calls of the module-level statements that ask for input gradients (walked once per file)."""
        statements = {id(stmt): stmt for stmt, _name in self.collector.module_input_gradient_marks}
        return frozenset(node for stmt in statements.values() for node in iter_nodes(stmt) if type(node) is cst.Call)

    def is_evaluation_function(self, function: FunctionInfo | None) -> bool:
        while function is not None:
            if is_evaluation_name(function.name, self.path):
                return True
            function = function.outer
        return False

    def in_grad_free_region(self, site: Site) -> bool:
        """Lexically inside `with torch.no_grad()` or a grad-disabling decorator."""
        return lexically_grad_free(self.imports, site, self.grad_wrappers)


def _asserts(function: FunctionInfo) -> bool:
    """Does the function's own body check something with `assert` (a test written pytest-style)?"""
    found = function.__dict__.get("_asserts")
    if found is None:
        from modelint.facts.walk import iter_nodes

        found = function.__dict__["_asserts"] = function.cls is None and any(
            type(node) is cst.Assert for node in iter_nodes(function.node.body, skip_lambdas=True))
    return found


def _asserts_shapes(function: FunctionInfo) -> bool:
    """Does every `assert` of the function check shapes (`out.shape == x.shape`, `y.size(0) == n`, `len(...)`)?
    A test handed its inputs (`test_tagger_shapes(inputs, n_words)`), not an evaluation handed a model."""
    from modelint.facts.walk import iter_nodes

    asserts = [node for node in iter_nodes(function.node.body, skip_lambdas=True) if type(node) is cst.Assert]
    return bool(asserts) and all(any(
        (type(node) is cst.Attribute and node.attr.value in ("shape", "ndim"))
        or (type(node) is cst.Call and ((type(node.func) is cst.Attribute and node.func.attr.value in ("size", "dim"))
                                        or (type(node.func) is cst.Name and node.func.value == "len")))
        for node in iter_nodes(check.test)) for check in asserts)
