"""The places the collector files a node under: its class, its function, its statement.

`ClassInfo` and `FunctionInfo` are a file's classes and functions with what the one
pass noticed about each (a method calling `self.model(x)`, a function using input
gradients, names that may pick a phase); `Site` is where a node sits (enclosing
function, class, statement and the `for`/`if`/`with` guards around it); `CallSite`
and `AttributeAssign` are a call and a `self.x = value` at their site.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import libcst as cst

from modelint.facts.names import NOT_LITERAL, dotted, literal_value
from modelint.summary import Params

_RECEIVERS = frozenset({"self", "cls"})


@dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    outer: "ClassInfo | None"
    methods: dict[str, cst.FunctionDef] = field(default_factory=dict)
    # Every call made anywhere in the class body: constructions of layers among them.
    calls: list[cst.Call] = field(default_factory=list)
    reads_training_flag: bool = False

    def __repr__(self) -> str:
        return f"<class {self.name}>"

    @property
    def bases(self) -> list[cst.BaseExpression]:
        """The base classes as written, a generic's parameters left out (`Model[DT]` is `Model`)."""
        return [arg.value.value if type(arg.value) is cst.Subscript else arg.value
                for arg in self.node.bases if arg.keyword is None and not arg.star]


@dataclass(eq=False)
class FunctionInfo:
    node: cst.FunctionDef
    name: str
    cls: ClassInfo | None  # the class it is a method of (directly)
    outer: "FunctionInfo | None"
    uses_gradients: bool = False  # .backward(), autograd.grad, requires_grad_ ...
    # Gradients with respect to inputs: requires_grad_(), retain_grad(), requires_grad=True, autograd.grad
    # (saliency maps, adversarial examples), not merely a training step's backward().
    uses_input_gradients: bool = False
    input_gradient_names: set = field(default_factory=set)  # the tensors it asks those gradients of (`x`, `adv`)
    reads_grads: bool = False  # `p.grad` read (Fisher information, importance scores, gradient norms)
    # Whether any call in it sets or reads mode, or runs a training step: only such
    # functions are worth the mode-flow analysis.
    mode_relevant: bool = False
    # Whether it calls a parameter (`model(x)`) or passes one on (`evaluate(model)`):
    # such functions get a summary for their callers.
    calls_params: bool = False
    calls_self_attribute: bool = False  # `self.model(x)`: a trainer's method may evaluate its model
    # Local names bound to what a parameter holds (`model = args["model"]`, `net = ctx.net`).
    param_aliases: set = field(default_factory=set)
    # Names that may pick a phase here or in a nested function (`if train:`, `phase == "val"`,
    # `model.train(flag)`): only a parameter among them can be a phase parameter (see phases.py).
    phase_names: set = field(default_factory=set)
    phase_nodes: list = field(default_factory=list)  # the `if`s, comparisons and calls that name them, in order
    # 0: the last (or only) definition of its name in its body; k: the k-th of several (see definitions.py).
    definition: int = 0

    def __repr__(self) -> str:
        return f"<function {self.name}>"

    @property
    def params(self) -> list[str]:
        p = self.node.params
        return Params((x.name.value for x in self._named_params),
                      keyword_only=len(p.kwonly_params))

    @property
    def positional_params(self) -> list[str]:
        """The parameters a call may pass by position (`self` included for a method)."""
        p = self.node.params
        return [x.name.value for x in (*p.posonly_params, *p.params)]

    def param(self, name: str) -> cst.Param | None:
        """The parameter (not `*args`/`**kwargs`) of that name, with its default and annotation."""
        return next((x for x in self._named_params if x.name.value == name), None)

    @property
    def _named_params(self) -> tuple:
        p = self.node.params
        return (*p.posonly_params, *p.params, *p.kwonly_params)

    @cached_property
    def param_set(self) -> frozenset[str]:
        return frozenset(self.params)

    @cached_property
    def owner_class(self):
        """The class whose `self` it sees: a method's, or an enclosing method's for a closure (None: none)."""
        function = self
        while function is not None and function.cls is None:
            function = function.outer
        return function.cls if function is not None else None

    @property
    def receivers(self) -> frozenset[str]:
        """`self`/`cls`, the object, in a method or a closure of one; none in a module-level function."""
        return _RECEIVERS if self.owner_class is not None else frozenset()

    @property
    def takes_input_gradients(self) -> bool:
        """It, or a function it is defined in, uses gradients with respect to inputs."""
        function = self
        while function is not None:
            if function.uses_input_gradients:
                return True
            function = function.outer
        return False

    @cached_property
    def enclosing_params(self) -> frozenset[str]:
        """Parameters of the functions around a closure: it reads them as free variables."""
        out: set[str] = set()
        outer = self.outer
        while outer is not None:
            out.update(outer.params)
            outer = outer.outer
        return frozenset(out - self.param_set - {"self", "cls"})

    @property
    def decorators(self) -> list[cst.BaseExpression]:
        return [d.decorator for d in self.node.decorators]

    @cached_property
    def is_abstract(self) -> bool:
        """Left to subclasses: `@abstractmethod`, or a body that only raises NotImplementedError."""
        if any(dotted(d) in ("abstractmethod", "abc.abstractmethod") for d in self.decorators):
            return True
        body = self.node.body
        statements = list(body.body) if type(body) is cst.IndentedBlock else [body]
        lines = [small for statement in statements
                 for small in (statement.body if type(statement) is cst.SimpleStatementLine else [statement])]
        if lines and type(lines[0]) is cst.Expr and isinstance(lines[0].value, (cst.SimpleString,
                                                                                   cst.ConcatenatedString)):
            lines = lines[1:]  # the docstring
        if len(lines) != 1 or type(lines[0]) is not cst.Raise or lines[0].exc is None:
            return False
        raised = lines[0].exc.func if type(lines[0].exc) is cst.Call else lines[0].exc
        return dotted(raised) == "NotImplementedError"


@dataclass(eq=False)
class Site:
    """Where a node sits: the enclosing function (None: module level), class and statement."""

    function: FunctionInfo | None
    cls: ClassInfo | None
    stmt: cst.CSTNode
    guards: tuple[cst.CSTNode, ...]  # enclosing For/If/Else/With nodes, outermost first


@dataclass(eq=False)
class ScriptPhases:
    """What FunctionInfo.phase_names/phase_nodes are for a function, for the module-level statements."""

    phase_names: set = field(default_factory=set)
    phase_nodes: list = field(default_factory=list)


@dataclass(eq=False)
class CallSite:
    node: cst.Call
    qualified: str | None  # callee's qualified name, if it names an import
    text: str | None  # callee's dotted text (`self.model.eval`)
    site: Site


@dataclass(eq=False)
class AttributeAssign:
    target: cst.Attribute
    value: cst.BaseExpression | None  # None for augmented/annotated without value
    node: cst.CSTNode
    site: Site


def loops_around(site: "CallSite | None") -> list:
    """The `for`/`while` loops around a call site, outermost first (none for an unknown site)."""
    return [g for g in site.site.guards if type(g) in (cst.For, cst.While)] if site is not None else []


# String methods that only read their receiver: `mode.endswith("-da2")` tested twice gives one answer.
_PURE_TESTS = frozenset({"startswith", "endswith", "isdigit", "isalpha", "islower", "isupper"})


def condition_key(test: cst.BaseExpression) -> tuple[str, str] | None:
    """(a key naming the condition, the name or attribute chain it reads) for a test that two `if`s can share:
    a flag (`args.eval_only`), a comparison of one with literals (`args.phase == "test"`), or a string method
    reading one (`mode.endswith("-da2")`). None for anything else."""
    if type(test) in (cst.Name, cst.Attribute):
        flag = dotted(test)
        return (flag, flag) if flag is not None else None
    if type(test) is cst.Comparison and len(test.comparisons) == 1 and type(test.left) in (cst.Name, cst.Attribute):
        subject, other = dotted(test.left), test.comparisons[0].comparator
        operator = type(test.comparisons[0].operator).__name__
    elif type(test) is cst.Call and type(test.func) is cst.Attribute and test.func.attr.value in _PURE_TESTS \
            and type(test.func.value) in (cst.Name, cst.Attribute) and len(test.args) <= 1:
        subject, operator = dotted(test.func.value), test.func.attr.value
        other = test.args[0].value if test.args else cst.Name("None")
    else:
        return None
    literal = literal_value(other)
    if literal is NOT_LITERAL and type(other) in (cst.Tuple, cst.List, cst.Set):
        values = tuple(literal_value(e.value) for e in other.elements if type(e) is cst.Element)
        literal = values if len(values) == len(other.elements) and NOT_LITERAL not in values else NOT_LITERAL
    if subject is None or literal is NOT_LITERAL:
        return None
    return f"{subject} {operator} {literal!r}", subject


def flag_outcomes(guards: tuple, unchanging) -> frozenset:
    """The (flag, outcome) pairs a site's enclosing `if`s require (`if flag:` body: True; its `else`, an
    `elif` after it, or `if not flag:` body: False), for the flags `unchanging(flag)` accepts: a name or an
    attribute chain nothing reassigns (modelint.facts.branches), a builder's parameter (builders); a
    comparison or a string test of such a flag too (condition_key)."""
    found = set()
    for position, guard in enumerate(guards):
        if type(guard) is not cst.If:
            continue
        test, outcome = guard.test, True
        if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
            test, outcome = test.expression, False
        condition = condition_key(test)
        if condition is None or not unchanging(condition[1]):
            continue
        flag = condition[0]
        following = guards[position + 1] if position + 1 < len(guards) else None
        if following is not None and following is guard.orelse:
            outcome = not outcome
        found.add((flag, outcome))
    return frozenset(found)


def flags_gating(body: cst.CSTNode, flags: set[str], hit, flag_of=None) -> frozenset[str] | None:
    """The flags (of `flags`) under whose `if flag:` alone the nodes `hit` accepts occur in `body`; None when one
    occurs outside any such test. (An empty set: none occurs.) A forward's `if register_hook:` around its hooks,
    `if is_training:` around its dropout. `flag_of` names the flag an `if` tests (by default a plain name)."""
    from modelint.facts.walk import child_list

    gates: set[str] = set()
    stack = [(body, None)]
    while stack:
        node, gate = stack.pop()
        if type(node) is cst.If and (flag := (flag_of or _tested_name)(node.test)) in flags:
            stack.append((node.body, flag))
            if node.orelse is not None:
                stack.append((node.orelse, gate))
            continue
        if hit(node):
            if gate is None:
                return None
            gates.add(gate)
        stack.extend((child, gate) for child in child_list(node))
    return frozenset(gates)


def _tested_name(test: cst.BaseExpression) -> str | None:
    return test.value if type(test) is cst.Name else None


def own_attribute(function, key: str | None) -> bool:
    """Is `key` an attribute of a method's own object (`self.model` in a method)?"""
    return key is not None and function is not None and function.cls is not None and key.startswith("self.") \
        and key.count(".") == 1


def builds_its_class(classes: dict, func: cst.Attribute) -> bool:
    """`Cls.from_pretrained(...)`, or a classmethod of one of `classes` (the file's: `Cls.from_checkpoint(path)`):
    a construction of `Cls` itself (a classmethod handing back `cls(...)`, weights loaded into it)."""
    if func.attr.value == "from_pretrained":
        return True
    info = classes.get(func.value.value) if type(func.value) is cst.Name else None
    method = info.methods.get(func.attr.value) if info is not None else None
    return method is not None and any(dotted(d.decorator) == "classmethod" for d in method.decorators)

