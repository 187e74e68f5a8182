"""Phase loops: `for phase in ("train", "val"):` with one body for both phases; and phase
parameters: `def run_epoch(model, loader, is_train)` with one body for training and validation.

The body tests the phase (`if phase == "train": loss.backward()`), picks the data
(`loaders[phase]`) and often the modes (`model.train() if phase == "train" else
model.eval()`, `torch.set_grad_enabled(phase == "train")`). The interpreter runs such
a body once per value, with the loop variable known: the tests are decided, and the
forwards of the "val" pass are told apart from those of the "train" pass. A function
whose parameter decides between training and evaluation (`if is_train: loss.backward()`,
`model.train(mode=is_train)`, `torch.set_grad_enabled(is_train)`) is run the same way,
once per value of that parameter.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import NOT_LITERAL, literal_value, tokens
from modelint.facts.walk import iter_nodes
from modelint.facts.naming import EVAL_WORDS, TRAIN_WORDS

_MAX_VALUES = 6
# The two values of an optional parameter that picks the phase (`def run_epoch(model, loader, optimizer=None)`:
# given, it trains; None, it evaluates). Strings, so summaries keep them across processes; no real literal.
GIVEN, OMITTED = "<given>", "<None>"
# A string parameter compared with the training phase's name only (`if phase == "train": loss.backward()`,
# called with "train" and with "valid"): every other value, which the comparisons all treat alike.
OTHER = "<other>"


def phase_values(stmt: cst.For, constants: dict[str, object]) -> tuple[str, tuple] | None:
    """(loop variable, its values) for `for name in ("train", "val")` (or a name bound to such a tuple)."""
    if type(stmt.target) is not cst.Name:
        return None
    values = literal_strings(stmt.iter, constants)
    if values is None or not 1 < len(values) <= _MAX_VALUES:
        return None
    words = set()
    for value in values:
        words.update(tokens(value))
    if not (words & EVAL_WORDS and words & TRAIN_WORDS):
        return None  # a loop over other strings (file names, keys): nothing to tell apart
    return stmt.target.value, values


def literal_strings(expr: cst.BaseExpression, constants: dict[str, object]) -> tuple | None:
    if type(expr) is cst.Name and isinstance(constants.get(expr.value), tuple):
        return constants[expr.value]
    if type(expr) in (cst.Tuple, cst.List):
        values = []
        for element in expr.elements:
            value = literal_value(element.value) if type(element) is cst.Element else None
            if not isinstance(value, str):
                return None
            values.append(value)
        return tuple(values)
    return None


def decide(test: cst.BaseExpression, constants: dict[str, object]) -> bool | None:
    """The value of a test that only compares known loop variables with literals, or is a literal
    (`if True:` around a block whose `else` is dead code); None otherwise."""
    if type(test) is cst.Name and test.value in ("True", "False"):
        return test.value == "True"
    if not constants:
        return None
    if type(test) is cst.Name:
        value = constants.get(test.value)
        if value in (GIVEN, OMITTED):
            return value == GIVEN  # (an optimizer, say: given or None)
        return value if isinstance(value, bool) else None
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        inner = decide(test.expression, constants)
        return None if inner is None else not inner
    if type(test) is cst.BooleanOperation:
        left, right = decide(test.left, constants), decide(test.right, constants)
        if type(test.operator) is cst.And:
            return False if False in (left, right) else (None if None in (left, right) else True)
        return True if True in (left, right) else (None if None in (left, right) else False)
    if type(test) is cst.Comparison and len(test.comparisons) == 1:
        target = test.comparisons[0]
        left, right = _known(test.left, constants), _known(target.comparator, constants)
        operator = target.operator
        if left is _UNKNOWN or right is _UNKNOWN:
            return None
        if type(operator) in (cst.Equal, cst.Is):
            return left == right
        if type(operator) in (cst.NotEqual, cst.IsNot):
            return left != right
        if type(operator) in (cst.In, cst.NotIn) and isinstance(right, tuple):
            return (left in right) == (type(operator) is cst.In)
        if type(operator) in (cst.In, cst.NotIn) and isinstance(left, str) and isinstance(right, str) \
                and right not in (GIVEN, OMITTED, OTHER):
            return (left in right) == (type(operator) is cst.In)  # (`"train" in phase`: a part of its name)
    return None


_UNKNOWN = object()
_Given = object()  # what an optional parameter holds when it is given: no literal compares equal to it


def _known(expr: cst.BaseExpression, constants: dict[str, object]):
    if type(expr) is cst.Name and expr.value in constants:
        value = constants[expr.value]
        if value == GIVEN:
            return _Given  # equal to no literal, `None` included
        return None if value == OMITTED else value
    if type(expr) is cst.Name and expr.value == "None":
        return None
    values = literal_strings(expr, {})
    if values is not None:
        return values
    value = literal_value(expr)
    return value if isinstance(value, (str, int, bool)) else _UNKNOWN


def names_evaluation_value(expr: cst.BaseExpression, constants: dict[str, object]) -> bool:
    """`loaders[phase]` while `phase` is "val": the loop runs over validation data."""
    from modelint.facts.walk import iter_nodes

    for node in iter_nodes(expr):
        if type(node) is cst.Name and isinstance(constants.get(node.value), str):
            words = set(tokens(constants[node.value]))
            if words & EVAL_WORDS and not words & TRAIN_WORDS:
                return True
    return False


_MODE_METHODS = frozenset({"train", "eval", "backward", "step", "zero_grad"})
_GRAD_SWITCHES = frozenset({"no_grad", "enable_grad", "set_grad_enabled", "inference_mode"})


def phase_parameter(function, calls=(), sites=None) -> tuple[str, tuple] | None:
    """(parameter, its values) when a parameter of `function` decides whether it trains or evaluates:
    a flag tested by an `if` whose branches set a mode, step or switch autograd, or handed to `train()`
    or `set_grad_enabled()` itself; a string compared with literals naming both phases. `calls`: the calls of
    it in its file (`run_epoch(model, val_loader, None)` makes `optimizer` as optional as a `=None` default)."""
    params = (set(function.params) - {"self", "cls"}) & function.phase_names  # (the collector's candidates)
    if not params:
        return None
    for node in function.phase_nodes:  # (the collector's `if`s, comparisons and calls naming candidates)
        if type(node) is cst.If:
            name = _flag(node.test, params)
            if name is not None and any(_mode_relevant(branch) for branch in (node.body, node.orelse) if branch):
                # (`if optimizer:` of an `optimizer=None`: given or None, so that `optimizer is None` decides too)
                optional = defaults_to_none(function, name) or _handed_none(function, name, calls, sites)
                return name, ((GIVEN, OMITTED) if optional else (True, False))
        elif type(node) is cst.Call and node.args and type(node.args[0].value) is cst.Name \
                and node.args[0].value.value in params and len(node.args) == 1:
            func = node.func
            method = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else ""
            if method in ("train", "set_grad_enabled"):
                return node.args[0].value.value, (True, False)
    found = _compared_phase(function, params)
    if found is not None:
        return found
    optional = _optional_phase(function, params, calls, sites)
    return (optional, (GIVEN, OMITTED)) if optional is not None else None


def _handed_none(function, name: str, calls, sites=None) -> bool:
    """Does some call of `function` in its file pass `None` for the parameter `name`, or hand on a parameter of
    its own that defaults to None (`self.step(x, y, opt)` in `def run(self, batches, opt=None)`)?"""
    from modelint.facts.summary_effects import bind_arguments

    for call in calls:
        passed = bind_arguments(function.params, function.cls is not None, call).get(name)
        if type(passed) is not cst.Name:
            continue
        if passed.value == "None":
            return True
        caller = sites[call].site.function if sites is not None and call in sites else None
        if hands_on_an_optional(caller, passed):
            return True
    return False


def script_phase(phases, bindings) -> tuple[str, tuple] | None:
    """(name, its values) for a module-level name the script binds once, to what it is given (`phase =
    sys.argv[1]`, `mode = args.mode`), and compares with string literals as a phase parameter would (`if phase
    == "train": loss.backward()`): the script's statements run once per value, like such a function's body.
    `phases`: the collector's module-level candidates; `bindings()`: the module's name bindings."""
    names = {node.left.value for node in phases.phase_nodes if type(node) is cst.Comparison
             and type(node.left) is cst.Name and isinstance(literal_value(node.comparisons[0].comparator), str)}
    if not names:
        return None
    bound = bindings()
    given = {name for name in names if len(bound.get(name, ())) == 1 and bound[name][0].kind == "assign"
             and literal_value(bound[name][0].value) is NOT_LITERAL and type(bound[name][0].value) is not cst.Call}
    return _compared_phase(phases, given) if given else None


def _compared_phase(function, params: set) -> tuple[str, tuple] | None:
    """A string parameter compared with literals that name both phases, or with the training phase's name by an
    `if` around a backward pass, or by one around a mode or autograd switch: (it, its values)."""
    strings: dict[str, set] = {}
    equal: dict[str, set] = {}  # the literals each name is tested `==` to
    for node in function.phase_nodes:
        if type(node) is cst.Comparison and type(node.left) is cst.Name and node.left.value in params \
                and len(node.comparisons) == 1 and type(node.comparisons[0].operator) in (cst.Equal, cst.NotEqual):
            value = literal_value(node.comparisons[0].comparator)
            if isinstance(value, str):
                strings.setdefault(node.left.value, set()).add(value)
                if type(node.comparisons[0].operator) is cst.Equal:
                    equal.setdefault(node.left.value, set()).add(value)
    for name, values in strings.items():
        words = _tokens_of(values)
        if words & EVAL_WORDS and words & TRAIN_WORDS and 1 < len(values) <= _MAX_VALUES:
            # (`if phase != "inference": ... if phase == "train": loss.backward()`: no evaluation phase is named
            # as such, and "valid", neither "inference" nor "train", is one too)
            unnamed = not _tokens_of(equal.get(name, ())) & EVAL_WORDS
            return name, (*sorted(values), OTHER) if unnamed else tuple(sorted(values))
    for name, values in strings.items():
        if all(set(tokens(value)) & TRAIN_WORDS for value in values) \
                and name in _tested_around(function, params, _around_training):
            # `if phase == "train": loss.backward()` (or `mode == "train" or mode == "train+log"`): training or not
            return name, (*sorted(values), OTHER)
    for name, values in strings.items():
        if len(values) <= _MAX_VALUES and name in _tested_around(function, params, _around_switches):
            # `if mode == "greedy": with torch.no_grad(): ...`: the branch changes the grad mode or a model's
            # mode, as a flag's would; "greedy" or any other value
            return name, (*sorted(values), OTHER)
    return None


def _tokens_of(values) -> set:
    """The words of a phase parameter's compared literals (`"train_step"`: train, step)."""
    return {word for value in values for word in tokens(value)}


def _tested_around(function, params: set, around) -> set:
    """String parameters compared with a literal by an `if` that `around(if_node)` accepts."""
    found = set()
    for node in function.phase_nodes:
        test = node.test if type(node) is cst.If else None
        tests = [test]
        while tests and type(tests[-1]) is cst.BooleanOperation:  # (`mode == "train" or mode == "train+log"`)
            last = tests.pop()
            tests += [last.left, last.right]
        names = {t.left.value for t in tests if type(t) is cst.Comparison and type(t.left) is cst.Name}
        if len(names) == 1 and all(type(t) is cst.Comparison for t in tests) and names <= params and around(node):
            found |= names
    return found


def _around_training(node: cst.If) -> bool:
    """Its branches run a backward pass or an optimizer step (`if phase == "train":`)."""
    return any(_trains_or_switches(branch) for branch in (node.body, node.orelse) if branch)


def _around_switches(node: cst.If) -> bool:
    """Its body switches autograd or a model's mode (`if mode == "greedy": with torch.no_grad():`)."""
    return _mode_relevant(node.body)


def phase_default(function, name: str):
    """The literal default of a phase parameter (`is_train=True`, `mode="train"`), None when it has none."""
    param = function.param(name)
    value = literal_value(param.default) if param is not None and param.default is not None else None
    return value if isinstance(value, (bool, str)) else None


def defaults_to_none(function, name: str) -> bool:
    """`optimizer=None`: a parameter the caller may leave out."""
    param = function.param(name) if name in function.param_set else None
    return param is not None and type(param.default) is cst.Name and param.default.value == "None"


def hands_on_an_optional(caller, passed: cst.BaseExpression | None) -> bool:
    """`step(x, y, opt)` in `def run(batches, opt=None)`: the caller hands on a parameter of its own that may
    hold None."""
    return type(passed) is cst.Name and caller is not None and defaults_to_none(caller, passed.value)


def _optional_phase(function, params: set, calls=(), sites=None) -> str | None:
    """A parameter defaulting to None (or handed None by a call) whose being given decides whether the body
    trains: `if optimizer is not None: loss.backward()`, or through a local (`is_train = optimizer is not None`)."""
    optional = {name for name in params
                if defaults_to_none(function, name) or _handed_none(function, name, calls, sites)}
    if not optional:
        return None
    derived: dict[str, str] | None = None  # local -> the optional parameter it tests (found when first needed)
    for node in function.phase_nodes:
        if type(node) is not cst.If:
            continue
        tested = _tests_given(node.test, optional)
        if tested is None and type(node.test) in (cst.Name, cst.UnaryOperation):
            inner = node.test.expression if type(node.test) is cst.UnaryOperation else node.test
            if type(inner) is cst.Name:
                derived = _derived_tests(function, optional) if derived is None else derived
                tested = derived.get(inner.value)
        if tested is not None and any(_trains_or_switches(branch) for branch in (node.body, node.orelse) if branch):
            return tested
    return None


def _derived_tests(function, optional: set) -> dict[str, str]:
    """`is_train = optimizer is not None`: local -> the optional parameter it tests."""
    derived: dict[str, str] = {}
    for node in iter_nodes(function.node.body):
        if type(node) is cst.Assign and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name:
            tested = _tests_given(node.value, optional)
            if tested is not None:
                derived[node.targets[0].target.value] = tested
    return derived


def _tests_given(test: cst.BaseExpression, optional: set) -> str | None:
    """`p is None`, `p is not None` (or `p != None`), `p`, `not p` for an optional parameter `p`: `p`."""
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test = test.expression
    if type(test) is cst.Name:
        return test.value if test.value in optional else None
    if type(test) is cst.Comparison and len(test.comparisons) == 1 and type(test.left) is cst.Name \
            and test.left.value in optional \
            and type(test.comparisons[0].operator) in (cst.Is, cst.IsNot, cst.Equal, cst.NotEqual) \
            and type(test.comparisons[0].comparator) is cst.Name and test.comparisons[0].comparator.value == "None":
        return test.left.value
    return None


def _trains_or_switches(branch) -> bool:
    """A branch that runs a backward pass or puts a model in training mode (not a scheduler's `step()`,
    not an `eval()` before encoding an optional prompt)."""
    for node in iter_nodes(branch):
        if type(node) is cst.Call and type(node.func) is cst.Attribute \
                and node.func.attr.value in ("backward", "train", "zero_grad"):
            return True
    return False


def argument_phase(values, passed: cst.BaseExpression | None, default, caller=None, constants=None):
    """The phase value a call picks for a helper's phase parameter: the literal it passes (`eval=True`),
    for an optional one whether it passes something (None and nothing are `OMITTED`; the caller's own
    optional parameter, which may hold None, is unknown); None: unknown."""
    if GIVEN in values:
        if passed is None:
            return OMITTED
        if hands_on_an_optional(caller, passed):
            return None  # (`negative_prompt=negative_prompt`, handed on from the caller's `negative_prompt=None`)
        return OMITTED if type(passed) is cst.Name and passed.value == "None" else GIVEN
    if passed is None:
        return default
    value = literal_value(passed)
    if value is NOT_LITERAL and type(passed) is cst.Name and constants:
        value = constants.get(passed.value, NOT_LITERAL)  # `step(model, phase)` in the caller's phase loop
    if OTHER in values and isinstance(value, str) and value not in values:
        return OTHER
    return value if isinstance(value, (bool, str)) and value not in (GIVEN, OMITTED, OTHER) else None


def call_picks_other_phase(function, call: cst.Call, phase: tuple, caller=None) -> bool:
    """Does `call` of `function` pick another value of its phase parameter than `phase` ((name, value),)
    names? (`loss_batch(model, xb, yb)` with no optimizer, for the pass that steps one.)"""
    from modelint.facts.summary_effects import bind_arguments

    if not phase or phase[0][0] not in function.param_set:
        return False
    name, value = phase[0]
    values = (GIVEN, OMITTED) if value in (GIVEN, OMITTED) else ()
    passed = bind_arguments(function.params, function.cls is not None, call).get(name)
    picked = argument_phase(values, passed, phase_default(function, name), caller)
    return picked is not None and picked != value


def describe_value(value) -> str:
    """How a finding names a phase value: `'val'`, `False`, `None`, `given`, `another phase`."""
    return "None" if value == OMITTED else "given" if value == GIVEN else \
        "not the training phase" if value == OTHER else repr(value)


def _flag(test: cst.BaseExpression, params: set) -> str | None:
    """`if flag:`, `if not flag:`, `if flag == False:`, `if flag is True:`: the parameter tested."""
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test = test.expression
    if type(test) is cst.Comparison and len(test.comparisons) == 1 \
            and type(test.comparisons[0].operator) in (cst.Equal, cst.NotEqual, cst.Is, cst.IsNot) \
            and isinstance(literal_value(test.comparisons[0].comparator), bool):
        test = test.left
    return test.value if type(test) is cst.Name and test.value in params else None


def _mode_relevant(branch) -> bool:
    for node in iter_nodes(branch):
        if type(node) is cst.Call:
            func = node.func
            name = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else ""
            if name in _MODE_METHODS or name in _GRAD_SWITCHES:
                return True
    return False


def step_phase(flow, function, values) -> tuple:
    """((phase parameter, value),) for a training step that runs in one pass of its function only (`values`:
    the passes it runs in); () otherwise."""
    found = flow._phase_parameters.get(function) if function is not None else None
    return ((found[0], next(iter(values))),) if found is not None and len(values) == 1 else ()
