"""What a torch.nn layer's name and arguments say about its mode.

`Dependence` is the lattice every module value carries: mode-dependent (Dropout,
BatchNorm, a Transformer layer with dropout), mode-independent (Linear, ReLU, a
one-layer LSTM whose dropout acts between stacked layers only, an InstanceNorm
without running statistics), or unknown (a class from elsewhere, which may hold
anything and so counts as "may be dependent").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import libcst as cst

from modelint.facts import torch_api as api
from modelint.facts.names import NOT_LITERAL, argument, literal_value


class Dependence(enum.IntEnum):
    INDEPENDENT = 0
    UNKNOWN = 1
    DEPENDENT = 2

    @property
    def may_depend(self) -> bool:
        return self is not Dependence.INDEPENDENT


def layer_dependence_by_name(layer: str, call: cst.Call | None) -> Dependence:
    if layer in api.ALWAYS_MODE_DEPENDENT:
        return Dependence.DEPENDENT
    if layer in api.INSTANCE_NORMS:
        if call is None:
            return Dependence.UNKNOWN
        arg = argument(call, "track_running_stats", 4)
        return Dependence.DEPENDENT if arg is not None and literal_value(arg.value) is not False else Dependence.INDEPENDENT
    for table, default_nonzero in ((api.DROPOUT_DEFAULT_NONZERO, True), (api.DROPOUT_DEFAULT_ZERO, False)):
        if layer in table:
            if call is None:
                return Dependence.UNKNOWN
            arg = argument(call, "dropout", table[layer])
            if arg is None:
                return Dependence.DEPENDENT if default_nonzero else Dependence.INDEPENDENT
            value = literal_value(arg.value)
            if value is not NOT_LITERAL and not value:
                return Dependence.INDEPENDENT
            if layer in api.RECURRENT_LAYERS:
                # Their dropout acts between stacked layers only: one layer (the default) has none.
                layers = argument(call, "num_layers", 2)
                if layers is None or literal_value(layers.value) == 1:
                    return Dependence.INDEPENDENT
            return Dependence.DEPENDENT
    return Dependence.INDEPENDENT


@dataclass(frozen=True)
class Construction:
    """A call that builds a module: what it is and what mode it starts in."""

    call: cst.Call
    dependence: Dependence
    starts_in_eval: bool = False  # Hugging Face `from_pretrained` returns eval mode
    certain: bool = True  # False: an unknown class that is only probably a module
    origin: str | None = None  # qualified name of the imported class (whose methods another file summarises)
    parameterless: bool = False  # a torch.nn loss, activation, pooling or padding: nothing to evaluate
    runs_loaded: bool = False  # it runs a module its constructor loads, in whatever mode (loaded_parts.py)
