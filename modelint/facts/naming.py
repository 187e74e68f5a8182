"""Names, used only to break ties.

What a forward is for is decided from where its output goes (modelint.facts.intent);
when data flow cannot tell (an output returned to callers nobody sees, a forward whose
output is thrown away), the names of the function and of the data it loops over say
what the author meant.
"""

from __future__ import annotations

import re

import libcst as cst

from modelint.facts.names import tokens
from modelint.facts.walk import iter_nodes

EVAL_WORDS = frozenset({"eval", "evaluate", "evaluation", "evaluating", "validate", "validation", "validating",
                        "valid", "val", "test", "testing", "predict", "prediction", "predictions", "infer",
                        "inference", "inferring"})
TRAIN_WORDS = frozenset({"train", "training", "fit", "finetune", "optimize", "backward", "learn"})
# Splits of a dataset held out for evaluation ("dev" is the NLP name of the validation set).
_EVALUATION_DATA_WORDS = (EVAL_WORDS - {"predict", "prediction", "predictions", "infer", "inference"}) | {"dev", "heldout"}
# Words of a schedule or a count, not of data (`cfg.eval_every`, `eval_interval`, `num_eval_episodes`, `test_size`).
_SCHEDULE_WORDS = frozenset({"every", "freq", "frequency", "interval", "period", "steps", "iters", "iterations", "num",
                             "count", "ratio", "size", "episodes"})
TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test|conftest)\.py$|(^|/)tests?/")


# Parameter names that say "a function" (`func`, `fn`, `metric_fn`, `score_func`, `callback`).
_FUNCTION_NAME = re.compile(r"(f|fn|func|function|callback|callable)|\w+_(fn|func|function|callback)")


def names_a_function(name: str) -> bool:
    return _FUNCTION_NAME.fullmatch(name) is not None


def is_test_file(path: str) -> bool:
    return bool(TEST_FILE.search(path.replace("\\", "/")))


def is_evaluation_name(name: str, path: str = "") -> bool:
    """`evaluate`, `run_validation`, `predictBatch`: yes. `train_and_eval`: no (mixed).

    pytest's `test_*` functions in test files are unit tests, not evaluation loops.
    """
    if name.startswith("test_") and is_test_file(path):
        return False
    words = set(tokens(name))
    return bool(words & EVAL_WORDS) and not (words & TRAIN_WORDS)


def names_evaluation_data(expr: cst.BaseExpression) -> bool:
    """Does a loop's iterable name validation/test data (`val_loader`, `loaders["test"]`)?"""
    words: set[str] = set()
    for node in iter_nodes(expr):
        if type(node) is cst.Name:
            words.update(tokens(node.value))
        elif type(node) is cst.SimpleString:
            value = node.evaluated_value
            if isinstance(value, str) and len(value) < 40:
                words.update(tokens(value))
    return bool(words & _EVALUATION_DATA_WORDS) and not (words & TRAIN_WORDS) and not (words & _SCHEDULE_WORDS)
