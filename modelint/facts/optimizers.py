"""The optimizers of a file: which names step one, which functions step one, and whose parameters
the optimizers a function builds update (`Adam(self.parameters())` -> `self`)."""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.scopes import FunctionInfo, flag_outcomes, loops_around
from modelint.facts.names import (BUILTIN_NAMES, dotted, key_prefixes, key_root, literal_value, parameter_owners,
                                  same_or_nested, value_key)
from modelint.facts.walk import iter_nodes


# What an optimizer over tensors the function made steps (no model's parameters).
MADE_TENSORS = "<tensors>"
_PARAMETER_MAKERS = frozenset({"torch.nn.ParameterList", "torch.nn.ParameterDict", "torch.nn.Parameter",
                               "torch.nn.parameter.Parameter"})
_TENSOR_COPIES = frozenset({"clone", "detach", "requires_grad_", "detach_"})
_OPTIMIZER_ATTRIBUTES = frozenset({"param_groups", "state", "defaults", "step", "zero_grad", "state_dict",
                                   "load_state_dict", "add_param_group", "optimizer"})


class Optimizers:
    """Mixed into ModeFlow (with CallGraph): `self.collector`, `self.imports` and `self._local_callees`
    come from there."""

    @cached_property
    def _optimizer_steps(self) -> set:
        """Functions that call `<optimizer>.step()` (or `step(closure)`) themselves, or hand the optimizer to
        a loss scaler's `step` (`scaler.step(optimizer)`)."""
        return {site.site.function for site in self.collector.calls
                if type(site.node.func) is cst.Attribute and site.node.func.attr.value == "step"
                and site.text and (self.is_optimizer(site.text.rsplit(".", 1)[0]) or self.handed_one_optimizer(site.node))}

    def handed_one_optimizer(self, call: cst.Call) -> bool:
        """`scaler.step(optimizer)`: handed one optimizer and nothing else."""
        if len(call.args) != 1 or call.args[0].keyword is not None or call.args[0].star:
            return False
        key = value_key(call.args[0].value)
        return key is not None and self.is_optimizer(key)

    @cached_property
    def _optimizers(self) -> frozenset[str]:
        """Names bound to a `torch.optim` optimizer (`AdamW = torch.optim.AdamW(...)`), whatever they are called."""
        names = set()
        for key, value, _site in self.collector.call_assigns:
            qualified = self.imports.qualify(value.func) if type(value) is cst.Call else None
            if qualified and api.is_optimizer_class(qualified):
                names.add(key)
        return frozenset(names)

    def is_optimizer(self, receiver: str) -> bool:
        """Does `receiver.step()` step an optimizer: named like one (not an options namespace), or bound to one?"""
        from modelint.facts.calls import is_optimizer_step

        return (is_optimizer_step(receiver) and receiver not in self._settings_named_like_optimizers) \
            or receiver in self._optimizers

    @cached_property
    def _settings_named_like_optimizers(self) -> frozenset[str]:
        """Names like an optimizer's (`opt`) that the file never steps nor zeroes, whose attributes it hands to
        calls as settings (`Adam(params, lr=opt.lr)`, `build(opt.model)`): an options namespace, no optimizer."""
        from modelint.facts.calls import is_optimizer_step

        read, stepped = set(), set()
        for site in self.collector.calls:
            func = site.node.func
            if type(func) is cst.Attribute and type(func.value) is cst.Name \
                    and func.attr.value in ("step", "zero_grad"):
                stepped.add(func.value.value)
            for arg in site.node.args:
                value = arg.value
                while type(value) is cst.Attribute and type(value.value) is cst.Attribute:
                    value = value.value  # (`opt.optim.lr`: what `opt` is asked first)
                if type(value) is cst.Attribute and type(value.value) is cst.Name \
                        and value.attr.value not in _OPTIMIZER_ATTRIBUTES:
                    read.add(value.value.value)
        return frozenset(name for name in read - stepped if is_optimizer_step(name))

    def steps_optimizer(self, function: FunctionInfo | None) -> bool:
        return function in self._optimizer_steps

    def stepped_for(self, function: FunctionInfo | None) -> bool:
        """Does an optimizer step for this function's backward elsewhere: in a function that calls it, or
        in another method of its class (a trainer's `training_step()` back-propagates, `fit()` steps)?
        Not for a function that computes gradients for their own sake: of its inputs (saliency,
        adversarial examples) or read from its parameters (Fisher information, gradient norms)."""
        if function is None or function in self._optimizer_steps or function.uses_input_gradients \
                or function.reads_grads:
            return False
        if function.cls is not None and any(other is not None and other.cls is function.cls
                                            for other in self._optimizer_steps):
            return True
        return any(caller in self._optimizer_steps for caller in self.syntactic_callers(function))

    def optimized_here(self, function: FunctionInfo | None) -> set[str] | None:
        """What the optimizers built in this function optimize (`Adam(self.parameters())` -> {"self"},
        `model.encoder.parameters()` -> {"model", "model.encoder"}); None when it builds none."""
        return self._optimized_by_function.get(function)

    @cached_property
    def _optimized_by_function(self) -> dict:
        out: dict = {}
        unknown: set = set()
        for site in self.collector.calls:
            if not (site.qualified or "").startswith("torch.optim.") or "lr_scheduler" in (site.qualified or ""):
                continue
            params = next((a.value for a in site.node.args if a.keyword is None or a.keyword.value == "params"), None)
            owners = self._owners_through_names(params, site.site.function) if params is not None else set()
            if type(params) in (cst.List, cst.Tuple):  # `[self.log_temperature]`: tensors named one by one
                named = (dotted(e.value) for e in params.elements if type(e) is not cst.StarredElement)
                owners.update(prefix for key in named if key for prefix in key_prefixes(key))
            if not owners:
                unknown.add(site.site.function)  # a list built above, a generator: it may hold anything
                continue
            out.setdefault(site.site.function, set()).update(owners)
        built = {function: found for function, found in out.items() if function not in unknown}
        # `optimizer = self._set_optimizer(cfg)`: a method of the same object builds it over `self`'s
        # parameters, and this one steps it.
        for site in self.collector.calls:
            caller = site.site.function
            func = site.node.func
            if caller in built or caller in unknown or not self.steps_optimizer(caller) \
                    or not (type(func) is cst.Attribute and type(func.value) is cst.Name
                            and func.value.value == "self"):
                continue
            owners = {key for key in built.get(self._local_callees.get(site.node), ()) if key.split(".")[0] == "self"}
            if owners:
                out.setdefault(caller, set()).update(owners)
        return {function: found for function, found in out.items() if function not in unknown}

    def _owners_through_names(self, params, function, parents: bool = True, depth: int = 0) -> set[str]:
        """parameter_owners, through the names of the function the expression reads, each bound only by plain
        assignments (`named = list(student.named_parameters())`, then groups of `[p for n, p in named if ...]`,
        then `AdamW(groups)`): the student's. Empty when a name is bound otherwise (`params += ...`) or to
        nothing whose parameters show."""
        owners = parameter_owners(params, parents=parents)
        if owners or depth > 2:
            return owners
        bindings = self._scope_bindings(function)
        for node in iter_nodes(params):
            if type(node) is not cst.Name or node.value not in bindings:
                continue
            bound = bindings[node.value]
            if not all(b.kind == "assign" and b.value is not None for b in bound):
                return set()
            if all(not any(type(inner) in (cst.Name, cst.Call) for inner in iter_nodes(b.value)) for b in bound):
                continue  # (`no_decay = ["bias", "LayerNorm.weight"]`: names of parameters, no tensors)
            for b in bound:
                found = self._owners_through_names(b.value, function, parents, depth + 1)
                if not found:
                    return set()
                owners |= found
        return owners

    def stepped_owners(self, function: FunctionInfo | None) -> set[str] | None:
        """Whose parameters the optimizers `function` itself steps update (`self.optimizer_lineval.step()`,
        bound to `Adam(self.classifier.parameters())`), when each of them is bound here to a torch.optim
        constructor naming them; None otherwise. Only those parts: stepping `self.net.classifier`'s optimizer
        trains no BatchNorm of `self.net`'s body (a head warmed up on features of a net kept in eval mode)."""
        return self._owners_of(self._stepped_receivers.get(function, ()))

    def _owners_of(self, optimizers) -> set[str] | None:
        """Whose parameters these optimizers update, when each is bound to constructors naming them; else None."""
        owners: set[str] = set()
        for receiver in optimizers:
            known = self._optimizer_owners.get(receiver)
            if not known:
                return None
            owners |= known
        return owners or None

    def stepped_only_where_not_evaluated(self, function: FunctionInfo | None, key: str, eval_sites) -> bool:
        """`if freeze_backbone: backbone.eval()` and `if not freeze_backbone: backbone_opt.step()`: one flag
        decides both whether `key` is put in eval mode here and whether an optimizer that may update it steps
        (`do_train_features = self.optimizers["features"] is not None`): where it is in eval mode, it is a
        frozen part nothing trains, not a model a validation forgot to switch back."""
        eval_flags = None
        for site in eval_sites:
            where = self.site_of_call.get(site) if type(site) is cst.Call else None
            if where is None or where.site.function is not function:
                return False
            outcomes = flag_outcomes(where.site.guards, self.unchanging_flag)
            eval_flags = outcomes if eval_flags is None else eval_flags & outcomes
        if not eval_flags:
            return False
        for receiver, sites in self._step_sites.get(function, {}).items():
            owners = self._optimizer_owners.get(receiver)
            if owners and not any(same_or_nested(key, owner) or same_or_nested(owner, key) for owner in owners):
                continue  # (the head's optimizer: says nothing of the part)
            # (every step of it here takes the other way: `self.optim.step()` on both sides is no such flag)
            if any(all((flag, not outcome) in flag_outcomes(site.site.guards, self.unchanging_flag) for site in sites)
                   for flag, outcome in eval_flags):
                return True
        return False

    def stepped_by_this_backward(self, function: FunctionInfo | None, backward) -> set[str] | None:
        """Whose parameters the optimizers stepped on this backward's gradients update: those whose `.step()` sits
        in no loop the backward is not in (not `opt_teacher` in the other phase of an alternating update), each
        bound to a constructor naming them; None when unknown or none."""
        if backward is None:
            return None
        around = set(loops_around(backward))
        return self._owners_of(receiver for receiver, sites in self._step_sites.get(function, {}).items()
                               if any(set(loops_around(site)) <= around for site in sites))

    @cached_property
    def _step_sites(self) -> dict:
        """function -> optimizer -> the sites of its `.step()` calls there (`self.optimizers["features"]` too)."""
        out: dict = {}
        for site in self.collector.calls:
            func = site.node.func
            if type(func) is cst.Attribute and func.attr.value == "step" \
                    and (receiver := value_key(func.value)) is not None and self.is_optimizer(receiver):
                out.setdefault(site.site.function, {}).setdefault(receiver, []).append(site)
        return out

    def steps_module_optimizers(self, function: FunctionInfo | None) -> bool:
        """Does the function step only optimizers of the module level it reads (`train(epoch)` stepping the
        `optimizer = Adam(student.parameters())` its script binds under `__main__`)?"""
        stepped = self._stepped_receivers.get(function) if function is not None else None
        local, module = (self._scope_bindings(function), self._scope_bindings(None)) if stepped else ({}, {})
        return bool(stepped) and all(name in module and name not in local for name in stepped)

    @cached_property
    def _stepped_receivers(self) -> dict:
        """function -> the optimizers it calls `.step()` on itself."""
        out: dict = {}
        for site in self.collector.calls:
            if type(site.node.func) is cst.Attribute and site.node.func.attr.value == "step" and site.text \
                    and "." in site.text and self.is_optimizer(site.text.rsplit(".", 1)[0]):
                out.setdefault(site.site.function, set()).add(site.text.rsplit(".", 1)[0])
        return out

    def as_kept_attributes(self, owners: set[str], function: FunctionInfo | None) -> set[str]:
        """`self.optimizer = Adam(model.parameters())` in a constructor that keeps `self.model = model`: the
        optimizer of `self.model`, the name the other methods train it by."""
        if function is None or function.cls is None or not owners:
            return owners
        kept = {param: attribute for attribute, (init, param) in self.modules.names.kept_from_the_creator(
            function.cls).items() if init is function}
        return {kept[root] + owner[len(root):] if (root := key_root(owner)) in kept else owner for owner in owners}

    def handed_parameters(self, call: cst.Call) -> bool:
        """`ProxSGD(self.model.parameters(), lr=lr)`: a call of a class torch does not define (a project's
        optimizer) handed, first, a model's parameters. Its result, stepped, is an optimizer over them."""
        params = next((a.value for a in call.args if a.keyword is None or a.keyword.value == "params"), None)
        return params is not None and bool(parameter_owners(params, parents=False))

    def builds_optimizer(self, call: cst.Call) -> bool:
        """Is this call's result an optimizer: a torch.optim class, or another class handed a model's
        parameters whose result this file steps."""
        return api.is_optimizer_class(self.imports.qualify(call.func) or "") or call in self._other_optimizers

    @cached_property
    def _stepped_names(self) -> frozenset[str]:
        return frozenset(receiver for receivers in self._stepped_receivers.values() for receiver in receivers)

    @cached_property
    def _other_optimizers(self) -> frozenset:
        """Calls of classes torch does not define, handed a model's parameters, bound to a name stepped here."""
        return frozenset(value for key, value, _site in self.collector.call_assigns
                         if key in self._stepped_names and type(value) is cst.Call and self.handed_parameters(value))

    def _parameters_held(self, params) -> bool:
        """`SGD(self.exemplars)` with every `self.exemplars = nn.ParameterList()` (or a `ParameterDict`, a
        `Parameter`) of the file: tensors being optimized (exemplar images distilled), no model's parameters."""
        key = dotted(params) if params is not None else None
        bound = [value for name, value, _site in self.collector.call_assigns if name == key] if key else []
        return bool(bound) and all(self.imports.qualify(value.func) in _PARAMETER_MAKERS for value in bound)

    def made_tensors(self, params, function) -> bool:
        """`[mask, delta]`: names this function binds to tensors it makes (`torch.zeros(..., requires_grad=True)`,
        `image.clone()`) or marks as leaves (`self.mask.requires_grad = True`): an input, a mask or a
        perturbation being optimized, not a model."""
        if type(params) not in (cst.List, cst.Tuple, cst.BinaryOperation) or not _tensor_leaves(params):
            return False
        made = self._tensors_made.get(function, set())
        return all(type(leaf) is not cst.Call and (dotted(leaf) in made or self._made_list(leaf, function)
                                                   or self._input_of_a_call(leaf, function))
                   for leaf in _tensor_leaves(params))

    def _input_of_a_call(self, leaf, function) -> bool:
        """`SGD([self.image])` with `self.model(self.image)` in the same function: the value optimized is what
        a model of ours (not torch's functions) is run on, an input being optimized (activation maximisation,
        an adversarial example), however it was made (`self.image = preprocess(img)` in another file)."""
        name = dotted(leaf)
        return name is not None and any(
            type(site.node.func) in (cst.Name, cst.Attribute)
            and not (site.qualified or "").startswith("torch.") and not (dotted(site.node.func) or "").startswith(name)
            and not (type(site.node.func) is cst.Name and site.node.func.value in BUILTIN_NAMES)
            and any(arg.keyword is None and dotted(arg.value) == name for arg in site.node.args)
            for site in self.collector.calls_made_in(function))

    def _made_list(self, leaf, function) -> bool:
        """`noises`, bound only to list displays and grown only by `noises.append(torch.randn(...))` (or by names
        of tensors made here), or each of whose elements is marked a leaf: tensors made to be optimized."""
        if type(leaf) is not cst.Name:
            return False
        bound = self._scope_bindings(function).get(leaf.value) or []
        if not bound or not all(b.kind == "assign" and type(b.value) is cst.List for b in bound):
            return False
        if any(assign.target.attr.value == "requires_grad" and literal_value(assign.value) is True and any(
                type(guard) is cst.For and dotted(guard.iter) == leaf.value
                and dotted(guard.target) == dotted(assign.target.value) for guard in assign.site.guards)
               for assign in self.collector.attribute_assigns if assign.site.function is function):
            return True  # (`for noise in noises: noise.requires_grad = True`: each made a leaf to optimize)
        made = self._tensors_made.get(function, set())
        calls = [site for site in self.collector.calls_made_in(function)
                 if (site.text or "").startswith(f"{leaf.value}.")]
        grown = [site.node.args for site in calls if site.text == f"{leaf.value}.append"]
        if len(grown) != len(calls):
            return False  # (`params.extend(model.parameters())`: grown some other way)
        return all(len(args) == 1 and (dotted(args[0].value) in made or self._makes_a_tensor(args[0].value))
                   for args in grown) and all(
            all(type(e) is cst.Element and dotted(e.value) in made for e in b.value.elements) for b in bound)

    def _makes_a_tensor(self, value) -> bool:
        """`torch.randn(...)`, `torch.zeros_like(x)`: a function of `torch` itself making a tensor."""
        qualified = self.imports.qualify(value.func) or "" if type(value) is cst.Call else ""
        return qualified.startswith("torch.") and qualified.count(".") == 1 and qualified[6:7].islower()

    @cached_property
    def _tensors_made(self) -> dict:
        """function -> plain names it binds to a torch tensor function's result or a copy of a tensor."""
        out: dict = {}
        for key, value, site in self.collector.call_assigns:
            if "." in key or type(value) is not cst.Call:
                continue
            func = value.func
            qualified = self.imports.qualify(func) or ""
            tensor = qualified.startswith("torch.") and qualified.count(".") == 1 and qualified[6:7].islower()
            copied = type(func) is cst.Attribute and func.attr.value in _TENSOR_COPIES
            # (`Variable(delta.data, requires_grad=True)`: the pre-0.4 spelling of a leaf tensor)
            leaf = qualified in api.VARIABLE_CLASSES and any(
                arg.keyword is not None and arg.keyword.value == "requires_grad" for arg in value.args)
            if tensor or copied or leaf:
                out.setdefault(site.function, set()).add(key)
        for assign in self.collector.attribute_assigns:  # `self.mask_tensor.requires_grad = True`: a leaf tensor
            if assign.target.attr.value == "requires_grad" and assign.value is not None \
                    and literal_value(assign.value) is True and (owner := dotted(assign.target.value)) is not None:
                out.setdefault(assign.site.function, set()).add(owner)
        return out

    @cached_property
    def _optimizer_owners(self) -> dict[str, set[str]]:
        """Optimizer name -> whose parameters every constructor bound to it names (empty: not all known)."""
        out: dict[str, set[str]] = {}
        for key, value, _site in self.collector.call_assigns:
            qualified = self.imports.qualify(value.func) if type(value) is cst.Call else None
            if not (qualified and api.is_optimizer_class(qualified)) \
                    and value not in self._other_optimizers:
                continue
            params = next((a.value for a in value.args if a.keyword is None or a.keyword.value == "params"), None)
            owners = self._owners_through_names(params, _site.function, parents=False) if params is not None else set()
            if not owners and (self.made_tensors(params, _site.function) or self._parameters_held(params)):
                owners = {MADE_TENSORS}  # `Adam([mask])`: it steps tensors made here, no model's parameters
            owners = self.as_kept_attributes(owners, _site.function)
            if key in out and not out[key] or not owners:
                out[key] = set()
            else:
                out.setdefault(key, set()).update(owners)
        return out


def stepped_parts_in_training(key: str, stepped: set[str] | None, step) -> bool:
    """`net.start_training()` putting `net.head` back in training mode, with `Adam(net.head.parameters())` the
    only optimizer a function steps (`stepped`): the parts of `net` its step updates are in training mode,
    whatever the rest of `net` (a frozen backbone) is in."""
    parts = [part for part in stepped or () if part != key and same_or_nested(key, part)]
    return bool(parts) and len(parts) == len(stepped) and all(
        (fact := step.models.get(part)) is not None and fact.definitely_train for part in parts)


def _tensor_leaves(params) -> list:
    """What an optimizer's `params` is built from: the elements of lists and tuples, both sides of `+`, the
    "params" of parameter groups (`[{"params": [latent], "lr": 0.01}, {"params": noises}]`); empty when
    anything else shows (a call, a comprehension, a starred element)."""
    if type(params) is cst.BinaryOperation and type(params.operator) is cst.Add:
        left, right = _tensor_leaves(params.left), _tensor_leaves(params.right)
        return left + right if left and right else []
    if type(params) in (cst.List, cst.Tuple):
        leaves = []
        for element in params.elements:
            inner = _tensor_leaves(element.value) if type(element) is cst.Element else []
            if not inner:
                return []
            leaves += inner
        return leaves
    if type(params) is cst.Dict:
        groups = [e.value for e in params.elements if type(e) is cst.DictElement and literal_value(e.key) == "params"]
        return _tensor_leaves(groups[0]) if len(groups) == 1 else []
    return [params] if type(params) in (cst.Name, cst.Attribute) else []
