"""Which functions of a file the mode flow interprets (modelint.facts.flow).

Most functions of a model file never touch a mode: a module's own `forward`, its
constructor, tokenisers, shape helpers. The flow interprets only the functions whose
code can set, read or depend on a mode or a grad mode, and those whose interpretation
gives the others what they start with (a closure's enclosing function, a caller that
runs one of them under no_grad).
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.modules import returned_parameter
from modelint.facts.torch_api import GRAD_DISABLING
from modelint.facts.regions import lexically_grad_free
from modelint.facts.scopes import FunctionInfo
from modelint.facts.value_calls import FILE_WRITERS


def select_targets(flow) -> list[FunctionInfo | None]:
    """The functions worth interpreting: they set or read a mode, train, build a model, run what a call
    returned, use a global model, hand one on; the functions their closures live in; the callers that run
    them under no_grad (None: the module-level script)."""
    collector, modules = flow.collector, flow.modules

    def module_forward(f: FunctionInfo) -> bool:
        if f.cls is None or not _is_forward_like(f.name):
            return False
        if flow.defines_forward(f.cls):
            return True  # a module, or one in all but name (no need to ask the index about its base)
        if f.name == "__init__":
            # What this file shows, without asking the index about a base elsewhere: a constructor
            # that builds nothing worth a second pass over the file once the base is known.
            return flow.modules.is_module_class(f.cls)
        return flow.is_module_class(f.cls)

    forwards: dict[FunctionInfo, bool] = {}

    def in_a_forward(function: FunctionInfo | None) -> bool:
        """Is this a module's own `forward`? It computes tensors: a class it calls that is only probably a
        module (`return BaseModelOutput(...)`, `cache = DynamicCache()`, imported) builds its output."""
        if function is None or function.name != "forward":
            return False
        if function not in forwards:
            forwards[function] = module_forward(function)
        return forwards[function]

    # (not a loss built to be called at once, `loss_fct = CrossEntropyLoss()` in a model's `forward`: no weights)
    built = {id(value): found for _key, value, site in collector.call_assigns
             if (found := modules.module_expression(value)[0]) is not None
             and (found.certain or not in_a_forward(site.function))}
    weightless = {key_value for key_value, found in built.items() if found.parameterless}
    constructing = {site.function for _key, value, site in collector.call_assigns
                    if id(value) in built and id(value) not in weightless}
    # `return nn.Sequential(...)`, `return {"embeddings": nn.Embedding(n, d), ...}`: a factory, whose summary says
    # what it hands out.
    constructing.update(site.site.function for site in collector.calls
                        if type(site.site.stmt) is cst.SimpleStatementLine
                        and any(type(small) is cst.Return and _returned_whole_or_entry(small.value, site.node)
                                for small in site.site.stmt.body)
                        and (found := modules.module_expression(site.node)[0]) is not None
                        and (found.certain or not in_a_forward(site.site.function)))
    # `return load_from_checkpoint(torch.load(path))`: a factory handing back what another of this file returns
    # (a model zoo's named entry points), whose summary says so in turn
    constructing.update(site.site.function for site in collector.calls
                        if site.site.function is not None and type(site.site.stmt) is cst.SimpleStatementLine
                        and any(type(small) is cst.Return and small.value is site.node for small in site.site.stmt.body)
                        and flow.local_reference(site.node.func, site.site.function) is not None)
    # `return Retriever(Encoder())`: an object of a class of this file built holding a model made for it, whose
    # mode is what the object's methods start from (modelint.facts.object_starts).
    constructing.update(site.site.function for site in collector.calls
                        if site.site.function not in constructing and site.node.args
                        and modules.project_class(site.node.func) is not None
                        and any(type(arg.value) is cst.Call and modules.module_expression(arg.value)[0] is not None
                                for arg in site.node.args))
    using_globals = {site.site.function for site in collector.calls
                     if type(site.node.func) is cst.Name and site.node.func.value in flow.global_models}
    if flow.global_models:
        # (and through this file's helpers: `calc_loss(sent)` calling `calc_scores(hist)`, which runs `model`)
        flow.free.propagate_globals(flow._syntactic_callers)
        using_globals.update(f for f in collector.functions if flow.free.globals_of(f))
    # `gen = load_generator(path)` then `gen(z)`: a value a call returned is run as a model.
    # (not in a module's own `forward`, which computes tensors, `key = repeat_kv(key, n)`, unless the call
    # builds a module there)
    returned = {(site.function, key) for key, value, site in collector.call_assigns if id(value) not in weightless
                and (id(value) in built or not in_a_forward(site.function))}
    # (`bundle = load_embeddings(path)`, `encoder = bundle["embeddings"]`: an entry of it, run by its own name)
    returned.update((site.function, name) for name, item, site in collector.item_assigns
                    if type(item.value) is cst.Name and (site.function, item.value.value) in returned)
    calling_results = {site.site.function for site in collector.calls
                       if (site.site.function, site.text) in returned}
    calling_results.update(scope for scope, _name in flow.free.loaded_modules)  # (`model.forward(x)` too)
    # `backbone = make_backbone(args)`, then `probe(backbone, ...)`, one of this file's functions: what it hands
    # is a model in the mode the factory left it; `runner = Runner()`, then `runner.fit(data)`, a method of this
    # file: the order the object's methods run in is in sight.
    calling_results.update(site.site.function for site in collector.calls if site.node in flow._local_callees
                           and (any(type(arg.value) is cst.Name and (site.site.function, arg.value.value) in returned
                                    for arg in site.node.args)
                                or (site.site.function, (site.text or "").rpartition(".")[0]) in returned))
    targets: list[FunctionInfo | None] = [
        f for f in collector.functions
        if f.mode_relevant or f in constructing or f in using_globals or f in calling_results
        or ((f.calls_params or (f.calls_self_attribute and f.cls is not None)) and not module_forward(f))
        or (f.cls is None and f.outer is None and returned_parameter(flow.imports, f) is not None)
        # (`def grad_of(self, loss): torch.autograd.grad(loss, flow.params)`: its summary says it
        # differentiates what it is handed, so the forward feeding it is no evaluation)
        or (f.uses_gradients and len(f.params) > (1 if f.cls is not None else 0))
        # (a context manager written as a class: its `__init__` takes what a `with` hands it, see mode_contexts)
        or (f.name == "__init__" and f.cls is not None and f"{f.cls.name}.__enter__" in flow.local_functions)
    ]
    if collector.module_mode_relevant or None in constructing or collector.module_calls_functions \
            or None in calling_results or any(site.site.function is None and site.node in flow._local_callees
                                              for site in collector.calls):
        targets.append(None)  # (a script calling this file's functions and methods: their order is in view)
    # The function a chosen closure is defined in runs too: its calls of the closure carry the grad mode and
    # the models' modes the closure starts with (`predict(frame)` in `cv2_demo()`, called under no_grad).
    chosen = set(targets)
    for function in list(targets):
        enclosing = function.outer if function is not None and function.cls is None else None
        while enclosing is not None and enclosing not in chosen:
            chosen.add(enclosing)
            targets.append(enclosing)
            enclosing = enclosing.outer if enclosing.cls is None else None
    # A helper they call that reads numbers out of what it is handed (`accuracy(out, y)`, ending in `.item()`):
    # its summary says it evaluates those values, and so what the forward that made them is for.
    # (or writes them to a file: a trainer's `self.write_images(outputs)` ending in `save_image`)
    reading = {site.site.function for site in collector.calls
               if (type(site.node.func) is cst.Attribute and site.node.func.attr.value in _READS_NUMBERS)
               or site.qualified in FILE_WRITERS}
    # One that cuts what it is handed from the graph (`.detach()`, under no_grad): a distillation loss
    # detaching the teacher's logits. Its summary says which arguments its result carries the graph of, and so
    # which forwards a backward of that result trains.
    reading.update(site.site.function for site in collector.calls
                   if (type(site.node.func) is cst.Attribute and site.node.func.attr.value in _CUTS_GRAPH)
                   or site.qualified in GRAD_DISABLING)
    for site in collector.calls:
        callee = flow._local_callees.get(site.node)
        if callee is not None and callee not in chosen and callee in reading and site.site.function in chosen \
                and len(callee.params) > (1 if callee.cls is not None else 0):
            chosen.add(callee)
            targets.append(callee)
    # Whoever calls one of them under no_grad (`with torch.no_grad(): detect(images)` in `main()`) runs too:
    # the grad mode at that call is what the callee's forwards run with.
    for site in collector.calls:
        caller = site.site.function
        if caller not in chosen and flow._local_callees.get(site.node) in chosen \
                and lexically_grad_free(flow.imports, site.site, flow.grad_wrappers):
            chosen.add(caller)
            targets.append(caller)
    return targets


_READS_NUMBERS = frozenset({"item", "tolist", "numpy"})
_CUTS_GRAPH = frozenset({"detach", "detach_"})


def _is_forward_like(name: str) -> bool:
    return name == "forward" or name.startswith(("forward_", "_forward")) or name in ("__init__", "__call__")


def _returned_whole_or_entry(returned, node) -> bool:
    """Is `node` what a `return` hands back, or an item or entry of the tuple or dict it hands back?"""
    if returned is node:
        return True
    if type(returned) in (cst.Tuple, cst.List):
        return any(type(element) is cst.Element and element.value is node for element in returned.elements)
    if type(returned) is cst.Dict:
        return any(type(element) is cst.DictElement and element.value is node for element in returned.elements)
    return False


def interpreted_names(flow) -> frozenset[str]:
    """The names of this file's functions the flow interprets (select_targets: the others can set, read or
    depend on no mode, so handing them a model changes nothing)."""
    found = flow.__dict__.get("_interpreted_names")
    if found is None:
        from modelint.facts.summaries import qualname

        found = flow.__dict__["_interpreted_names"] = frozenset(qualname(f) for f in flow._targets if f is not None)
    return found
