"""Which files get the full analysis: the engine's test, and the import order's (modelint.import_order).

A file whose code (modelint.limits.code_only: docstrings and comments left out, a tokenizer's docs
mention torch tensors) says none of these cannot produce any finding of its own: it is only checked
for syntax errors (with the stdlib parser, ten times faster than libcst), and analysed later only if
it calls or subclasses what the project index knows. ("dropout" alone is no reason: a model
configuration names its dropout rates, and a functional dropout that could ignore the mode comes
from torch, which the file names. `.detach()` is: an autograd call.)
"""

from __future__ import annotations

import re

_NAMES_TORCH = re.compile(r"torch|\bnn\b|\.eval\b|\.train\b|\btrain\(|no_grad|inference_mode|grad|training|Module"
                          r"|\.detach\b")


def names_torch(code: str) -> bool:
    """Does this code (limits.code_only) say anything a finding could be about?"""
    return _NAMES_TORCH.search(code) is not None
