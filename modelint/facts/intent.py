"""What a forward is for, from where its output goes.

The mode flow keeps, for every local name, the forward calls its value may derive
from (`State.values`: name -> {(forward call, level)}): DIRECT (the output, or tensor
operations on it), OPAQUE (through a call we cannot see into: a metric, a helper) or
DETACHED (through something that leaves autograd: `.item()`, `.detach()`, `.argmax()`,
a comparison, numpy; such a value can no longer feed a backward pass).

`OutputUses.expression` evaluates an expression bottom-up against that map and
records, for each forward it reaches, how the output is used:

- TRAIN: it reaches `.backward()` (of itself, of a loss, through `scaler.scale()`, `accelerator.backward(loss)`)
  or `torch.autograd.grad`, even detached on the way (a GAN's fakes for the discriminator, a teacher's targets).
- EVAL: predictions and metrics: `.item()`, `.cpu().numpy()`, `argmax`, `softmax`, numpy; drawn in a figure
  (`ax.imshow(pred)`, see modelint.facts.plots); COMPARED (`out == y`) mostly the same (see uses).
- RETURN: a graph-carrying value is returned: what it is for is up to the callers.
- STORE: kept in an attribute, where another method may use it.
- ESCAPE: handed to a call we cannot see into, whose result is dropped.
- HANDED: handed to a helper that hands it on to a library function (a transform:
  `self._postprocess(out)` running NMS), and the helper's result goes on
  (`[0].cpu().numpy()`): the uses of that result decide; with none, it counts as
  escaped. A helper handing it to a callable it holds (a hook) makes it ESCAPE.
- WEAK: printed, logged or handed to a metric/writer/list method. DISCARD: the output is not used at all
  (warm-up, benchmark, calibration). CHECKED: it reaches an `assert` (a self-test of the module: no evaluation).
- SAMPLED: a distribution it parametrises is sampled (`Categorical(probs).sample()`): a policy acting or a
  generator drawing data. A draw is no prediction or metric of the model, and whether the draws feed
  training later (a rollout's experience) is beyond the data flow.
- DETACH (with the others): cut from its graph on purpose (`.detach()`, `.data`) while it still carried it:
  whoever wrote it knew autograd was recording, and did not want it.
- FEEDS (not a use): its output, as it is, is another forward's input.
- FED (not a use): the forward's input is another forward's output: a loss, a head, a second stage, whose graph
  continues the first one's.

`intent_of` (modelint.facts.uses) turns the uses into "training", "returned", "unknown", "escaped", "shape" (only
its shape read), "evaluation" or "inference" (only dropped, printed or logged). A function's parameters that reach
a backward are found the same way (their values are origins too), so a call of `backward(loss, scaler)` trains on
`loss`. Shape checks (`.shape`, `.size()`, `len()`) are metadata: they are no use of the values.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.value_calls import (BACKWARD_METHODS, DATASET_CONSUMERS, DETACHING_ATTRIBUTES, DETACHING_BUILTINS,
                                        DETACHING_METHODS, EVAL_FUNCTIONS, EVAL_METHODS, GRADIENT_FUNCTIONS,
                                        GRAPH_READERS, METADATA_ATTRIBUTES, METADATA_BUILTINS, METADATA_METHODS,
                                        MODULE_ONLY_METHODS, STOP_GRADIENT_METHODS)
from modelint.facts.names import dotted
from modelint.facts.hidden_backward import HiddenBackward
from modelint.facts.statement_uses import StatementUses
from modelint.facts.value_nodes import (COMPREHENSIONS, comp_for_clauses, iterated_elements, value_children,
                                        value_nodes)
from modelint.facts.uses import (AFTER, BUILT, COMPARED, DETACH, DETACHED, DIRECT, ESCAPE, EVAL, FED, FEEDS, GRAPH,
                                 HANDED, META, NONE, OPAQUE, Origins, SAMPLED, TRAIN, WEAK, detached,
                                 graph_handed_to_update, held_on, is_parameter, opaque)
from modelint.facts.walk import iter_nodes


def _beside_other_data(call: cst.Call, result: dict) -> bool:
    """Does the call get, among its positional arguments, one that is no forward's output at all (a batch's
    targets) beside the one that is (`crit(y_pred, labels)`): a criterion, scoring an output against data."""
    positional = [arg.value for arg in call.args if arg.keyword is None and not arg.star]
    if len(positional) < 2:
        return False
    return any(not any(not is_parameter(origin) for origin, _ in result.get(value, NONE)) for value in positional)


class OutputUses(StatementUses, HiddenBackward):
    """Evaluates expressions against the names' origins and records each forward's uses."""

    def __init__(self, imports, forwards) -> None:
        self.imports = imports
        self.forwards = forwards  # token -> record, filled by the mode flow before the statement is evaluated
        self.uses: dict[object, set[str]] = {}  # by token: the forward call, or (call, phase) in a phase loop
        self.feeds_into: dict[object, set] = {}  # token -> the forwards whose input its output is
        self.compares: set = set()  # tokens of forwards that set another forward's output beside other data
        self.given_back: set = set()  # calls of helpers that give back a result cut from a forward's output
        self.tag: tuple = ()
        # The arguments of a call that its callee back-propagates (set by the interpreter, from summaries).
        # What a callee does with its arguments (see modelint.facts.helper_arguments); None: no summary.
        self.argument_uses = lambda call: None
        # Is an optimizer among a call's arguments (one we cannot see into), and a model with it? Then it
        # may run the update on the graph it is handed (`loss_scaler(loss, optimizer)`); see the interpreter.
        self.update_call = lambda call: None
        # The models the object a call runs was built with (see the interpreter): outputs of theirs handed to
        # it may be back-propagated by its hooks (a Grad-CAM extractor).
        self.models_held_by = lambda call: frozenset()
        # The names handed to a call we cannot see into, which may be models (see the interpreter).
        self.models_handed = lambda call: frozenset()
        # Is a method called a figure's or an axes' (`ax.imshow`: see modelint.facts.plots)? Set by the interpreter.
        self.draws_on = lambda func: False
        self.of_inputs_only = lambda call: False  # an input's gradient (input_gradients.gradients_of_inputs_only)

    def use(self, origins: Origins, kind: str, level: int = DETACHED) -> None:
        """Record `kind` for every forward reaching here at least this directly."""
        for call, reached in origins:
            if reached >= level:
                self.uses.setdefault(call, set()).add(kind)

    def expression(self, expr: cst.BaseExpression | None, values: dict[str, Origins]) -> Origins:
        """The origins of `expr`'s value; uses met inside it are recorded on the way."""
        if expr is None:
            return NONE
        return self._evaluate(expr, values).get(expr, NONE)

    def _evaluate(self, expr: cst.BaseExpression, values: dict[str, Origins]) -> dict[cst.CSTNode, Origins]:
        """The origins of every value sub-expression of `expr` (empty when nothing can derive)."""
        if not values and not self._has_forward(expr):
            return {}
        nodes = value_nodes(expr)
        if not self._may_derive(nodes, values):
            return {}
        if any(type(node) in COMPREHENSIONS for node in nodes):
            values = self._comprehension_targets(nodes, values)
        result: dict[cst.CSTNode, Origins] = {}
        for node in reversed(nodes):  # children before their parents
            result[node] = self._node(node, result, values)
        return result

    def _may_derive(self, nodes: list, values: dict[str, Origins]) -> bool:
        """Can any of these nodes hold a forward's output: a name (or attribute) with origins, a forward, a
        helper's result cut from one? (Most expressions a flow meets touch no output at all.)"""
        forwards, given_back, tag = self.forwards, self.given_back, self.tag
        # (a comprehension's names derive from its iterables, nodes of this list too)
        for node in nodes:
            kind = type(node)
            if kind is cst.Name:
                if node.value in values:
                    return True
            elif kind is cst.Call:
                token = (node, tag) if tag else node
                if token in forwards or token in given_back:
                    return True
                func = node.func
                if type(func) is cst.Attribute and type(func.value) is cst.Name and values \
                        and held_on(func.value, values):
                    return True  # (a method of an object outputs were stored on)
            elif kind is cst.Attribute:
                if dotted(node) in values:  # (`self.out`; else its value, a node of its own, decides)
                    return True
        return False

    def _comprehension_targets(self, nodes: list, values: dict[str, Origins]) -> dict[str, Origins]:
        """`[p.detach().numpy() for p in predicted]`: each name a comprehension binds holds what its iterable
        derives from (outer comprehensions first: an inner one may iterate over an outer one's name)."""
        values = dict(values)
        for comprehension in (node for node in nodes if type(node) in COMPREHENSIONS):
            for clause in comp_for_clauses(comprehension.for_in):
                # (`for i, p in zip(best, probs)`: `i` holds no output)
                for part, source in iterated_elements(clause.iter, clause.target) or [(clause.target, clause.iter)]:
                    origins = self.expression(source, values)
                    values.update((t.value, origins) for t in iter_nodes(part) if type(t) is cst.Name)
        return values

    def _has_forward(self, expr: cst.BaseExpression) -> bool:
        if not self.forwards:
            return False
        tag = self.tag
        return any(type(node) is cst.Call and ((node, tag) if tag else node) in self.forwards
                   for node in iter_nodes(expr, skip_lambdas=True))

    def _children(self, node: cst.CSTNode, result: dict) -> Origins:
        out: set = set()
        for child in value_children(node):
            found = result.get(child)
            if found:
                out |= found
        return frozenset(out)

    def _node(self, node: cst.CSTNode, result: dict, values: dict[str, Origins]) -> Origins:
        kind = type(node)
        if kind is cst.Name:
            return values.get(node.value, NONE)
        if kind is cst.Attribute:
            attr = node.attr.value
            if attr in METADATA_ATTRIBUTES:
                self.use(result.get(node.value, NONE), META)
                return NONE
            key = dotted(node)
            inner = values.get(key, NONE) if key is not None and key in values else result.get(node.value, NONE)
            if attr in DETACHING_ATTRIBUTES and inner:
                self.use(inner, DETACH, DIRECT)
                return detached(inner)
            return inner
        if kind is cst.Call:
            return self._call(node, result, values)
        if kind is cst.Comparison:
            inner = self._children(node, result)
            if inner:
                self.use(inner, COMPARED)
            return detached(inner)
        if kind is cst.Lambda:
            return NONE
        if kind in COMPREHENSIONS:
            # `[x.detach().numpy() for x in scores]`: the elements, which hold what the iterable gives through
            # the names bound to it (the iterable itself is not in the value: the list holds no graph here)
            elements = (node.key, node.value) if kind is cst.DictComp else (node.elt,)
            return frozenset().union(*(result.get(element, NONE) for element in elements))
        return self._children(node, result)

    def _call(self, call: cst.Call, result: dict, values: dict[str, Origins]) -> Origins:
        value = self._call_value(call, result, values)
        token = (call, self.tag) if self.tag else call
        if token in self.given_back:  # a helper's result cut from its forward's output (see ForwardUse)
            value = value | {(token, DETACHED)}
        return value

    def _call_value(self, call: cst.Call, result: dict, values: dict[str, Origins]) -> Origins:
        func = call.func
        args = set()
        for arg in call.args:
            args |= result.get(arg.value, NONE)
        args = frozenset(args)
        token = (call, self.tag) if self.tag else call
        if token in self.forwards:
            feeding = [origin for origin, level in args if level == DIRECT and origin != token
                       and not is_parameter(origin)]
            if any(origin != token and not is_parameter(origin) for origin, _ in args):
                self.uses.setdefault(token, set()).add(AFTER)
            if not self.forwards[token].mode.certain:  # (a module of ours is a second stage, not an extractor)
                self._escape_to_holder(call, result)
            if feeding:  # (not its own earlier output, as in generation; not a parameter)
                self.uses.setdefault(token, set()).add(FED)
                if _beside_other_data(call, result):
                    self.compares.add(token)
                for origin in feeding:
                    self.uses.setdefault(origin, set()).add(FEEDS)
                    self.feeds_into.setdefault(origin, set()).add(token)
            return frozenset({(token, DIRECT)}) | args
        summary = self.argument_uses(call)
        trained, handed, evaluated, hooked, cut = summary or ((), (), (), (), ())
        if cut:  # (`self.distill(out, t_old)` detaching the teacher's logits: the result carries `out`'s graph only)
            args = frozenset().union(*(detached(origins) if arg.value in cut else origins
                                       for arg in call.args if (origins := result.get(arg.value, NONE))))
        for arg in trained:  # a helper that runs backward() on what it is given (its graph, unless detached first)
            self.use(result.get(arg, NONE), TRAIN)
            if arg not in cut:
                self.use(result.get(arg, NONE), GRAPH, level=OPAQUE)
        for arg in handed:  # a helper that hands it on to a library function (a transform: NMS, decoding)
            self.use(result.get(arg, NONE), HANDED, level=OPAQUE)
        for arg in hooked:  # a helper that hands it to a callable it holds (a registered hook: may train)
            self.use(result.get(arg, NONE), ESCAPE, level=OPAQUE)
        for arg in evaluated:  # a helper that turns it into metrics, a saved image, a printout
            self.use(result.get(arg, NONE), EVAL)
        if not (trained or handed or evaluated or hooked):
            self._escape_to_holder(call, result)
        if summary is None:
            self._handed_with_its_model(call, result)
        if evaluated and (type(func) is cst.Name or self.imports.qualify(func) is not None) \
                and not (trained or handed or hooked) \
                and all(arg.value in evaluated for arg in call.args if result.get(arg.value)):
            return detached(args)  # (what it gives back, `get_numpy(out)`, carries no graph)
        update = self.update_call(call)
        if update is not None and graph_handed_to_update(args, update == "optimizer and model"):
            self.use(args, TRAIN)
            self.use(args, GRAPH, level=OPAQUE)
            return NONE
        # (a receiver holding outputs is a local value, whatever module an import of the same name binds:
        # `loss = dice + ce`, then `loss.backward()` beside `from utils import loss`)
        holds_outputs = type(func) is cst.Attribute and bool(result.get(func.value, NONE))
        qualified = self.imports.qualify(func) if not holds_outputs else None
        if qualified in GRADIENT_FUNCTIONS and self.of_inputs_only(call):
            self.use(args, TRAIN)  # (an input's gradient: autograd needed, no model trained)
            return NONE
        if qualified is not None:  # a function of torch, numpy, a library or the project
            return self._function_result(qualified, args) if args else NONE
        if type(func) is cst.Attribute:
            # (and what was stored on the object's attributes, `storage.ret[i] = ret`: its methods may hand that
            # back, `storage.extract(["q", "ret"])` feeding the loss)
            receiver = result.get(func.value, NONE) | held_on(func.value, values)
            method = func.attr.value
            if method in BACKWARD_METHODS:
                # Every output that fed the loss is part of training, detached or not (a GAN's fakes,
                # a teacher's targets under no_grad).
                self.use(receiver | args, TRAIN)
                self.use(receiver | args, GRAPH, level=OPAQUE)
                return NONE
            if not receiver:  # a method of something else, given outputs: `metric(out)`, `self.loss(out, y)`
                return opaque(args)
            if method in MODULE_ONLY_METHODS:
                self.use(receiver, BUILT)
                return NONE
            if method in METADATA_METHODS and not (method == "type" and call.args):  # (`.type(torch.DoubleTensor)` casts)
                self.use(receiver, META)
                return NONE
            if method in DETACHING_METHODS:
                self.use(receiver, EVAL)
                return detached(receiver) | args
            if method == "sample":  # (not `rsample()`: reparameterised draws carry the graph on)
                self.use(receiver, SAMPLED)
                return detached(receiver) | args
            if method in STOP_GRADIENT_METHODS:
                self.use(receiver, DETACH, DIRECT)
                return detached(receiver) | args
            if method in EVAL_METHODS:
                self.use(receiver, EVAL)
            return receiver | args  # a tensor method of the output
        if type(func) is cst.Name:
            name = func.value
            if name in METADATA_BUILTINS:
                self.use(args, META)
                return NONE
            if name in DETACHING_BUILTINS:
                self.use(args, EVAL)
                return detached(args)
            if name == "print":
                self.use(args, WEAK)
                return NONE
        return opaque(args)

    def _function_result(self, qualified: str, args: Origins) -> Origins:
        if qualified in DATASET_CONSUMERS:
            # `DataLoader(self.handler(X, Y))`: what the call made is a dataset, no output. (Features a forward
            # computed, cut from its graph and put in a dataset, were still computed by that forward.)
            self.use(args, BUILT, level=OPAQUE)
            return NONE
        if qualified in GRADIENT_FUNCTIONS or qualified in GRAPH_READERS:
            # (`make_dot(y)` renders the graph itself: it needs autograd on, like a gradient does)
            self.use(args, TRAIN)
            self.use(args, GRAPH, level=OPAQUE)
            return NONE
        if qualified.startswith(("numpy.", "math.")) or qualified in ("torch.argmax", "torch.argmin"):
            self.use(args, EVAL)  # (`math.log(prediction)`: a Python number, as NumPy's functions make arrays)
            return detached(args)
        if qualified in EVAL_FUNCTIONS:
            self.use(args, EVAL)
            return args
        if qualified.startswith("torch."):
            return args  # a tensor operation keeps the graph
        return opaque(args)
