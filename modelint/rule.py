"""The shape of a rule: a small class that reads facts and yields reports.

A rule never parses, prints or reads configuration: the engine gives it a
`FileFacts` and turns its `Report`s into positioned, suppressible `Finding`s.
Like Fixit's rules it carries its own docs (the class docstring, in ruff's
"What it does / Why is this bad? / Example / Use instead / Fix safety /
References" shape) and points at the fixtures that demonstrate it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Iterator

import libcst as cst

from modelint.facts import FileFacts
from modelint.finding import Location, Related



@dataclass(frozen=True)
class NodeEdit:
    """An edit named by the node it touches; the engine turns it into positions.

    where: "replace" the node's text; insert "before"/"after" it; "line_before" /
    "line_after" insert `content` as a whole line (indented like the node's first
    line) above it / below its last line; "delete_lines" removes its lines.
    """

    node: cst.CSTNode
    content: str = ""
    where: str = "replace"


@dataclass(frozen=True)
class NodeFix:
    message: str
    edits: tuple[NodeEdit, ...]
    applicability: str = "safe"  # "safe" | "unsafe" (needs --unsafe-fixes)


@dataclass
class Report:
    node: cst.CSTNode | None  # what to underline (None: `elsewhere` says where)
    message: str
    stmt: cst.CSTNode | None = None  # its statement: `# noqa` on the first line counts
    fix: NodeFix | None = None
    # Other places in this file that prove the finding: (node, what happened there).
    notes: tuple[tuple[cst.CSTNode, str], ...] = ()
    related: tuple[Related, ...] = ()  # places in other files, already positioned
    # A finding about a call in another file: (path, ordinal of the call there).
    elsewhere: tuple[str, int] | None = None
    # A guess about callers no one can see (a helper's qualname): the runner drops it when another
    # file of the run calls that function, whose caller is then judged with the helper's summary.
    unless_called: str | None = None
    # A method no caller of which is in sight (or only methods of its class that nothing here calls): the
    # runner drops the report when the run's files call a method of these names (comma-separated) on objects
    # they cannot place, and only under no_grad: likely its callers. A name may carry the literal of the method's
    # phase parameter the finding's pass runs with (`update(eval=True)`): only calls handing it count.
    method_callers_unseen: str | None = None
    # A method reached from module-level functions of its file that nothing there calls (`eval_model(model,
    # data)` calling `model.predict(batch)`): their names. The runner drops the report when the run's other
    # files call each of them, and only under no_grad.
    function_callers_unseen: tuple[str, ...] = ()
    # A module's own inference method whose class never calls `self.eval()`: the runner drops the report when
    # the run's other files call a method of this name only after putting its receiver in eval mode.
    method_callers_switch: str | None = None
    # A model its class's creators hand to the constructor (`self.model = model`): (the classes, the parameter,
    # its position). The runner drops the report when every creator in the run's other files hands a model
    # without Dropout or BatchNorm there.
    held_from_creators: tuple | None = None
    # A model of a class this file cannot see (a parameter, an attribute handed in): the runner drops an
    # evaluation-with-autograd report when a module class of the run takes input gradients in its `forward`
    # (forces as -dE/dx): such a project's models may need autograd to run at all.
    model_class_unseen: bool = False
    # A guess about the users of an object (MDL003: another public method may leave the model in eval mode before
    # this one trains): (the class, the methods that may leave it in eval mode, the methods that may train it).
    # The runner drops the report when the run's other files build objects of the class and run no method of
    # the first kind before one of the second on any of them (ProjectIndex.run_after).
    users_elsewhere: tuple | None = None
    # The classes or factories of other files that build the model evaluated with autograd on (MDL002), as
    # imported: the runner drops the report when the finished index says every one needs input gradients (a
    # relevance model whose attention layer, two files away, hooks its maps).
    built_by: tuple | None = None


def evidence(sites, message: str, limit: int = 1) -> dict:
    """`notes`/`related` keyword arguments for a Report, from mode-setting sites.

    Sites are nodes of this file or `RemoteSite`s in other functions and files.
    """
    from modelint.summary import RemoteSite

    notes: list[tuple[cst.CSTNode, str]] = []
    related: list[Related] = []
    remote = sorted((s for s in sites if isinstance(s, RemoteSite)), key=lambda s: (s.path, s.call))
    local = [s for s in sites if not isinstance(s, RemoteSite)]
    for site in remote[:limit]:
        related.append(Related(site.path, Location(0, 0), f"{message} (`{site.text}`)", call=site.call))
    for site in local[: max(0, limit - len(related))]:
        notes.append((site, message))
    return {"notes": tuple(notes), "related": tuple(related)}


def helper_report(facts, record, message: str, caller_note: str, proof: dict) -> Report:
    """A finding about a helper's forward or training step (`record.via`) that a caller's mode makes
    wrong: reported at the helper's line, in this file or in the helper's, with the caller as a note."""
    via = record.via
    node = via.node if via.path == facts.path else None
    if node is not None:
        hops = tuple((call, "reached through this call") for call in getattr(via, "chain", ()))
        return Report(node, message, notes=((record.call, caller_note), *hops, *proof["notes"]),
                      related=proof["related"])
    where = facts.locate(record.call)
    related = (Related(facts.path, Location(where[0], where[1]), caller_note),) if where else ()
    return Report(None, message, related=related + proof["related"], elsewhere=(via.path, via.call))


def wrapped_forward_notes(facts, forward, notes: tuple, related: tuple) -> tuple[tuple, tuple]:
    """Notes for a call whose value is a helper's forward output: where that forward runs."""
    via = forward.via
    if via is None:
        return notes, related
    text = f"the forward pass runs here, in `{forward.callee.shown_name}()`"
    if via.node is not None and via.path == facts.path:
        hops = tuple((call, "reached through this call") for call in via.chain)
        return ((via.node, text), *hops, *notes), related
    if via.call >= 0:
        return notes, (Related(via.path, Location(0, 0), text, call=via.call), *related)
    return notes, related


class Rule:
    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[str]  # "error" | "warning"
    summary: ClassVar[str]
    fix_safety: ClassVar[str] = "none"  # "safe" | "unsafe" | "none"
    # Folder under fixtures/ whose bug_*.py / clean_*.py files demonstrate the rule.
    fixtures: ClassVar[str] = ""

    def check(self, facts: FileFacts) -> Iterator[Report]:
        raise NotImplementedError

    @classmethod
    def docs(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or cls.summary)

    @classmethod
    def url(cls) -> str:
        from modelint.registry import rule_url

        return rule_url(cls.code)
