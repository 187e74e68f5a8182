"""What a file's analysis asked the project index, and a digest of the answers it got.

A file analysed with the index (the second phase) depends on the other files only through the
questions it asks there. Its analysis is a function of its text, its rules and those answers, so
once the index changes (a later round, helpers' summaries that changed), the file needs analysing
again only if one of the same questions now gets another answer: the runner asks them again
(`answers_digest`) and compares. The questions depend on the file, not on a guess made before it
was analysed, which is why a re-analysis of a file whose helpers changed somewhere it never looks
is skipped (a model file importing a base class from a file whose loss helper changed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from dataclasses import dataclass

# The index's questions that the facts ask (modelint.summary.ProjectIndex); each answer is a plain
# value, a summary or a class shape, compared by value.
QUESTIONS = (
    "resolve", "resolve_class", "resolve_shape", "names_function", "needs_input_gradients", "class_handed",
    "submodule_dependence", "sets_its_own_mode_only", "runs_loaded_modules", "holds_no_weights",
    "plain_class_chain", "forward_without_grad", "forward_without_grad_in_eval", "shape_in",
    "frozen_at_construction", "free_branch_flag", "factory_constructions", "fresh_dependence",
    "grad_wrapper", "built_in_eval", "only_dependent_part",
)

# The questions about one reference as a file imports it: (reference, that file's path).
_REFERENCE_QUESTIONS = frozenset({"resolve", "resolve_class", "resolve_shape", "names_function"})


@dataclass(frozen=True)
class Asked:
    """The questions one analysis asked, in the order first asked, and the digest of their answers."""

    questions: tuple[tuple, ...]
    digest: bytes


class AskingIndex:
    """The project index as one file's analysis sees it: each question goes to the index and is recorded
    with its answer. Only the questions of QUESTIONS exist here, so a fact reading the index another way
    fails loudly in the tests instead of depending on what no digest covers."""

    def __init__(self, index) -> None:
        self._index = index
        self._answers: dict[tuple, object] = {}

    def __getattr__(self, name: str):
        if name not in QUESTIONS:
            raise AttributeError(f"the facts may ask the project index only its questions, not {name!r}")
        ask = getattr(self._index, name)

        def asked(*args):
            key = (name, *args)
            if key not in self._answers:
                self._answers[key] = ask(*args)
            return self._answers[key]

        setattr(self, name, asked)  # (made once per question kind: later lookups find it without __getattr__)
        return asked

    def references(self, path: str) -> set[str]:
        """The references to other files' functions and classes that `path` asked about."""
        return {args[0] for name, *args in self._answers if name in _REFERENCE_QUESTIONS and args[1] == path}

    def asked(self) -> Asked:
        questions = tuple(self._answers)
        return Asked(questions, _digest((self._answers[q] for q in questions), _memo(self._index)))


def answers_digest(asked: Asked, index) -> bytes:
    """The digest of the answers `index` gives to the questions an analysis asked."""
    return _digest((getattr(index, name)(*args) for name, *args in asked.questions), _memo(index))


def same_answers(asked: Asked | None, index) -> bool:
    """Would an analysis that asked `asked` get the same answers from `index`? (None: it asked nothing yet,
    as in the first phase, which runs without an index.)"""
    return asked is not None and answers_digest(asked, index) == asked.digest


def _digest(answers, memo: dict) -> bytes:
    # Sets are pickled in hash order, which changes with every process's hash seed: sort them first.
    return hashlib.sha256(pickle.dumps([_canonical_answer(answer, memo) for answer in answers])).digest()


def _memo(index) -> dict:
    """Where an index keeps the canonical form of its answers: many files' questions get the same summary or
    class shape, which is made canonical once (the index's answers do not change once made)."""
    try:
        return index.__dict__.setdefault("_canonical_answers", {})
    except AttributeError:
        return {}


def _canonical_answer(answer, memo: dict):
    if type(answer) is tuple:  # (a class shape, its file)
        return tuple(_canonical_answer(part, memo) for part in answer)
    if not dataclasses.is_dataclass(answer) or isinstance(answer, type):
        return canonical(answer)
    found = memo.get(id(answer))
    if found is None or found[0] is not answer:  # (the answer is kept with it: its id is not reused)
        found = memo[id(answer)] = (answer, canonical(answer))
    return found[1]


def canonical(value):
    """`value` with every set (and dataclass field holding one) turned into a sorted tuple."""
    if isinstance(value, (set, frozenset)):
        return tuple(sorted((canonical(v) for v in value), key=repr))
    if isinstance(value, (list, tuple)):
        return tuple(canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((canonical(k), canonical(v)) for k, v in value.items()), key=repr))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,) + tuple(canonical(getattr(value, f.name)) for f in dataclasses.fields(value))
    return value
