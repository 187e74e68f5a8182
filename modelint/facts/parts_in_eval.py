"""Parts a module class puts in eval mode as it builds them: `self.backbone = resnet18().eval()`.

A model built from such a class is, until something calls its `train()`, as mode-dependent as its
other layers: the part stays in eval mode (a frozen feature extractor, a pretrained scorer kept
for inference). A class that calls `train()` anywhere, or reads its own `self.training`, is not
read this way. The same holds for parts whose construction hands them back in eval mode (a Hugging Face
`from_pretrained` backbone, `lpips.LPIPS(...)`), and for such a class of another file, through the index.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.names import dotted
from modelint.facts.scopes import ClassInfo
from modelint.facts.torch_layers import Dependence
from modelint.facts.walk import iter_nodes


def parts_built_in_eval(info: ClassInfo) -> frozenset[cst.Call]:
    """The calls of the class that build a part and end in `.eval()` (`Net().to(dev).eval()`): the built call
    and each call of its chain. Empty when the class switches something to training mode itself."""
    from modelint.facts.modules import unwrap_chain  # (that module asks this one)

    if any(type(c.func) is cst.Attribute and c.func.attr.value == "train" for c in info.calls):
        return frozenset()
    out: set[cst.Call] = set()
    for call in info.calls:
        if type(call.func) is not cst.Attribute or call.func.attr.value != "eval" or call.args:
            continue
        built, chain = unwrap_chain(call)
        if type(built) is cst.Call:
            out.update(chain)
            out.add(built)
    return frozenset(out)


def fresh_dependence(table, call: cst.Call) -> Dependence | None:
    """`Model(path)`, a module class of this file (or, through the index, of another) whose constructor builds a
    part in eval mode or loads one handed back so: how mode-dependent the model is as built, before anything
    calls its `train()` (its other layers: those parts stay in eval mode). None: as dependent as
    `table.construction` says."""
    project = table.project_class(call.func)
    if project is None and table.index is not None \
            and (qualified := table.imports.qualify(call.func)) is not None and table._is_foreign(qualified):
        found = table.index.fresh_dependence(qualified, table.path)  # (a class of another file)
        return Dependence(found) if found is not None else None
    if project is None or not table._is_module.get(project.name, False) or project.reads_training_flag \
            or any(table._base_kind(base)[1] is not Dependence.INDEPENDENT for base in project.bases):
        return None
    loaded = parts_built_in_eval(project) | {
        c for c in project.calls if (built := table.construction(c)) is not None and built.starts_in_eval}
    return table._layers_dependence(project, loaded) if loaded else None


def fresh_classes(table) -> dict[str, int]:
    """The module classes of the file whose dependence as built differs (fresh_dependence), for other files."""
    out = {}
    for name in table.classes:
        found = fresh_dependence(table, cst.Call(cst.Name(name))) if table._is_module.get(name, False) else None
        if found is not None:
            out[name] = int(found)
    return out


def attributes_built_in_eval(table, call: cst.Call) -> dict[str, cst.Call]:
    """`module = TaggerModule.load_from_checkpoint(ckpt)` (or `TaggerModule(...)`), a module class of this file
    whose `__init__` sets `self.model = AutoModel.from_pretrained(name)` (or `Net().eval()`) and that switches
    nothing to training mode itself: `self.<attr>` -> the call building that part in eval mode. The model as
    built has those parts in eval mode, whatever its own flag says, until something calls its `train()`."""
    func = call.func
    if type(func) is cst.Attribute and func.attr.value == "load_from_checkpoint":
        func = func.value
    project = table.project_class(func) if type(func) is cst.Name else None
    if project is None or project.reads_training_flag or not table._is_module.get(project.name, False) \
            or any(type(c.func) is cst.Attribute and c.func.attr.value == "train" for c in project.calls):
        return {}
    in_eval = parts_built_in_eval(project)
    out = {}
    for assign in table._collector.attribute_assigns:
        method, value = assign.site.function, assign.value
        if assign.site.cls is not project or method is None or method.name != "__init__" or type(value) is not cst.Call \
                or type(assign.target.value) is not cst.Name or assign.target.value.value != "self" \
                or assign.site.guards:  # (built so on one branch only: the other's part may be in training mode)
            continue
        if value in in_eval or ((built := table.construction(value)) is not None and built.starts_in_eval):
            out[f"self.{assign.target.attr.value}"] = value
    return out


def only_dependent_part(table, collector, info: ClassInfo) -> str | None:
    """The attribute (`model`) of a module class of the file that holds every layer of it whose mode matters:
    its other attributes build layers that do not depend on the mode, or no module, and it reads no
    `self.training` of its own. `ranker.model.eval()` switches such a `ranker` whole (a wrapper around one
    encoder with its loss and scoring)."""
    if not table._is_module.get(info.name, False) or info.reads_training_flag \
            or table._dependence.get(info.name) is Dependence.INDEPENDENT \
            or any(table._base_kind(base)[1] is not Dependence.INDEPENDENT for base in info.bases):
        return None
    init = info.methods.get("__init__")
    params = {p.name.value for p in init.params.params} if init is not None else set()
    called = {dotted(call.func) for call in info.calls}
    parts: dict[str, list] = {}
    for assign in collector.assigns_in_class(info):
        target = dotted(assign.target) if assign.value is not None else None
        if target is not None and target.startswith("self.") and target.count(".") == 1:
            parts.setdefault(target[5:], []).append(assign.value)
    # (the layers whose mode matters, as `_layers_dependence` counts them: all built on one attribute)
    skipped = set(table._parameter_containers(info)) | set(table.unread_layers(info))
    dependent = {call for call in info.calls if call not in skipped
                 and (found := table.layer_dependence(call)) is not None and found is not Dependence.INDEPENDENT}
    whole = [name for name, values in parts.items()
             if dependent <= {node for value in values for node in iter_nodes(value) if type(node) is cst.Call}]
    if len(whole) != 1:
        return None
    # (a module its creator hands it, `self.encoder = encoder` run as `self.encoder(x)`: its layers are unseen)
    handed = [name for name, values in parts.items() if name != whole[0] and f"self.{name}" in called
              and any(type(value) is cst.Name and value.value in params for value in values)]
    return None if handed else whole[0]
