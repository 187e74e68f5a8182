"""A forward that picks a grad-free branch by a flag its constructor was handed.

`if not self.trainable: return self.inference(x)` first in `forward`, with `self.trainable = trainable`
in `__init__` and `inference` decorated `@torch.no_grad()`: a model built `Net(trainable=False)` (or
with that default) records no graph when called, whatever its training branch does (the YOLO family's
detectors, built for inference by their demo and evaluation scripts).
"""

from __future__ import annotations

from typing import NamedTuple

import libcst as cst

from modelint.facts.names import NOT_LITERAL, dotted, handed_at, literal_value
from modelint.facts.regions import method_grad
from modelint.facts.scopes import ClassInfo


class FreeBranchFlag(NamedTuple):
    param: str  # the constructor's parameter
    position: int  # among the positional parameters after `self` (-1: keyword only)
    picks: bool  # the truth value that takes the grad-free branch
    default: object  # its default, when `defaulted`
    defaulted: bool  # it has a literal default (picklable: the summary of its file carries it to other files)


def picks_grad_free(cls: ClassInfo, call: cst.Call, imports, wrappers, kept_from_the_creator: dict) -> bool:
    """Does `call`, a construction of `cls`, hand the flag the value that sends every forward down a branch
    that records no graph (a method run without autograd, `wrappers` the file's decorators that turn it off;
    `kept_from_the_creator`: the class's `self.<attr>` kept as a constructor parameter hands it,
    modelint.facts.module_names)?"""
    return flag_picks(free_branch_flag(cls, imports, wrappers, kept_from_the_creator), call)


def flag_picks(flag: FreeBranchFlag | None, call: cst.Call) -> bool:
    """Does `call`, a construction of a class whose forward branches on `flag`, take the grad-free branch?"""
    if flag is None or any(arg.star for arg in call.args):
        return False
    passed = handed_at(call, flag.param, flag.position)
    value = literal_value(passed) if passed is not None else flag.default if flag.defaulted else NOT_LITERAL
    return value is not NOT_LITERAL and bool(value) is flag.picks


def free_branch_flag(cls: ClassInfo, imports, wrappers, kept_from_the_creator: dict) -> FreeBranchFlag | None:
    forward = cls.methods.get("forward")
    body = forward.body.body if forward is not None and type(forward.body) is cst.IndentedBlock else ()
    first = body[0] if body else None
    if type(first) is not cst.If:  # (an `else:` after it or not: the branch taken returns)
        return None
    test, picks = first.test, True
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test, picks = test.expression, False
    attribute = dotted(test)
    returned = first.body.body[0].body[0] if len(first.body.body) == 1 and type(first.body.body[0]) is \
        cst.SimpleStatementLine and len(first.body.body[0].body) == 1 else None
    value = returned.value if type(returned) is cst.Return else None
    if attribute is None or not attribute.startswith("self.") or attribute.count(".") != 1 or type(value) is not \
            cst.Call or type(value.func) is not cst.Attribute or dotted(value.func.value) != "self":
        return None
    target = cls.methods.get(value.func.attr.value)
    if target is None or method_grad(imports, target, wrappers) != "free":
        return None
    kept = kept_from_the_creator.get(attribute)  # (`self.trainable = trainable`, its only assignment)
    if kept is None:
        return None
    init, param = kept
    positional = init.positional_params[1:]
    found = init.param(param)
    default = literal_value(found.default) if found is not None and found.default is not None else NOT_LITERAL
    return FreeBranchFlag(param, positional.index(param) if param in positional else -1, picks,
                          None if default is NOT_LITERAL else default, default is not NOT_LITERAL)
