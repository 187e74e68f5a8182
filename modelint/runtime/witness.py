"""The probe child's last resort: run the flagged function itself and watch the flagged line.

When nothing in the project builds the model (a library's `validate(model, loader)`, a trainer
holding whatever module it is handed), there is no module to measure. What can still be checked
is the finding's own claim about the code: that when the line runs, the model is in training
mode (MDL001), autograd is on (MDL002), or the model is in eval mode (MDL003). The function is
called with a stand-in module for the model (fresh, so in training mode, as a caller that just
trained would leave it) and permissive stand-ins for its other arguments; a line tracer limited to
the user's file records the model's mode and the grad mode each time the line is reached, and
stops the call as soon as the claim holds (or after a bounded number of lines).

Runs only in the probe child (torch imported, user code allowed), never in the linting process.
The call runs in a temporary folder so that files it writes under relative paths land there.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import tempfile

from modelint.runtime.witness_plan import no_module_reason

MAX_LINES = 50_000      # line events in the user's file before the call is given up
MAX_REACHES = 20        # times the flagged line is seen without the claim holding
ARITIES = (2, 3, 1, 4)  # items yielded when a stand-in is iterated or unpacked (`for x, y in loader`)


class _Stop(BaseException):
    """Raised by the tracer into the user's frame: a BaseException, so `except Exception` lets it by."""


class Anything:
    """A stand-in for an argument nobody can build: every attribute, call, item, operator and torch
    function on it gives another one; iterating yields `arity` of them; it is true, 2 as an index."""

    arity = 2

    def __init__(self, name: str = "arg") -> None:
        object.__setattr__(self, "_name", name)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in _SIZES:  # a tensor's sizes are plain ints: torch's factories take no stand-in
            return _SIZES[name]()
        return Anything(f"{self._name}.{name}")

    def __setattr__(self, name, value) -> None:
        pass

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and (inspect.isclass(args[0]) or inspect.isfunction(args[0])):
            return args[0]  # used as a decorator (`@REGISTRY.register`): leave what it decorates
        return Anything(f"{self._name}()")

    def __getitem__(self, key):
        return Anything(f"{self._name}[]")

    def __setitem__(self, key, value) -> None:
        pass

    def __iter__(self):
        return iter([Anything(f"{self._name}[{i}]") for i in range(Anything.arity)])

    def __len__(self) -> int:
        return Anything.arity

    def __bool__(self) -> bool:
        return True

    def __index__(self) -> int:
        return Anything.arity

    __int__ = __index__

    def __float__(self) -> float:
        return 1.0

    def __format__(self, spec: str) -> str:
        return self._name

    def __repr__(self) -> str:
        return self._name

    __str__ = __repr__

    def __hash__(self) -> int:
        return id(self)

    def __contains__(self, item) -> bool:
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return Anything(getattr(func, "__name__", "torch"))


class _UnavailableType(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything(f"{cls.__name__}.{name}")


class Unavailable(metaclass=_UnavailableType):
    """What a name imported from a missing module or package stands for: a class (so that the file's
    classes can still derive from it) whose instances and attributes are stand-ins."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything(f"{type(self).__name__}.{name}")


def unavailable(name: str) -> type:
    return _UnavailableType(name, (Unavailable,), {})


def _size(dim=None):
    return Anything.arity if dim is not None else (Anything.arity,) * Anything.arity


# Tensor attributes that give sizes (`x.size(0)`, `x.shape[0]`, `b, c = x.shape`, `x.dim()`): ints, so that
# `torch.randn(x.size(0), latent_dim)` runs (torch's factories refuse an object with __torch_function__).
_SIZES = {"size": lambda: _size, "shape": lambda: _size(), "numel": lambda: lambda: Anything.arity,
          "dim": lambda: lambda: Anything.arity, "ndim": lambda: Anything.arity,
          "ndimension": lambda: lambda: Anything.arity}


def _anything(self, *args, **kwargs):
    return Anything(self._name)


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift",
            "rshift", "divmod"):
    setattr(Anything, f"__{_op}__", _anything)
    setattr(Anything, f"__r{_op}__", _anything)
for _op in ("eq", "ne", "lt", "le", "gt", "ge", "neg", "pos", "abs", "invert", "round"):
    setattr(Anything, f"__{_op}__", _anything)


def stand_in_model(torch):
    """A module that ignores its inputs and answers from its own layers (Linear, BatchNorm, Dropout),
    so that any forward call the function makes runs; unknown attributes are the module itself
    (`model.module`, `model.encoder(x)`), moves are no-ops (`model.to(device)`)."""
    nn = torch.nn

    class StandInModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 1))
            self.register_buffer("probe_input", torch.linspace(-1, 1, 64).reshape(8, 8))
            self.ready = True  # from here on, unknown attributes are the module itself

        def forward(self, *args, **kwargs):
            # One score per item of a stand-in batch (as many as iterating a stand-in yields), so that
            # `bce(model(x), torch.ones(x.size(0), 1))` runs; computed over a batch of at least two
            # (BatchNorm in training mode needs it).
            rows = Anything.arity
            return self.body(self.probe_input[:max(rows, 2)])[:rows]

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name.startswith("_") or not self.__dict__.get("ready"):
                    raise
                return self

        def to(self, *args, **kwargs):
            return self

        def cuda(self, *args, **kwargs):
            return self

        def cpu(self):
            return self

    return StandInModel()


def _resolve(value, path: list[str]):
    for name in path:
        value = getattr(value, name)
    return value


def _target(module, spec: dict):
    """(callable, bound owner or None) for `function` (top level) or `Owner.function` (a class of the file)."""
    owner_name, name = spec.get("owner"), spec["function"]
    if owner_name is None:
        return getattr(module, name), None
    owner = getattr(module, owner_name)
    attribute = inspect.getattr_static(owner, name)
    if isinstance(attribute, (staticmethod, classmethod)):
        return getattr(owner, name), None
    return attribute, owner


def _instance(torch, owner):
    """An object of the user's class built without its __init__ (whose arguments nobody knows):
    attributes it never got are stand-ins. A module (an explainer holding the model it explains)
    gets nn.Module's own __init__, so that its parameters, buffers and submodules work."""
    module = issubclass(owner, torch.nn.Module)
    base_getattr = torch.nn.Module.__getattr__ if module else None

    def missing(self, name):
        if base_getattr is not None:
            try:
                return base_getattr(self, name)
            except AttributeError:
                pass
        if name.startswith("__") or (module and name.startswith("_")):
            raise AttributeError(name)
        return Anything(f"self.{name}")

    probe_class = type(owner.__name__, (owner,), {"__getattr__": missing})
    try:
        instance = object.__new__(probe_class)
        if module:
            torch.nn.Module.__init__(instance)
    except Exception as error:  # noqa: BLE001 - a class with its own __new__ or slots
        raise _NotWitnessed(f"{owner.__name__} cannot be created without its constructor: {error}") from None
    return instance


class _NotWitnessed(Exception):
    pass


def _arguments(function, skip_first: bool, model_param: str | None, model, modules: dict) -> dict:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise _NotWitnessed("its signature cannot be read") from None
    parameters = list(signature.parameters.values())[1 if skip_first else 0:]
    kwargs = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name == model_param:
            kwargs[parameter.name] = model
        elif parameter.name in modules:
            kwargs[parameter.name] = modules[parameter.name]
        elif parameter.default is parameter.empty:
            kwargs[parameter.name] = Anything(parameter.name)
    return kwargs


def witness(torch, spec: dict, module) -> dict:
    """Call the function of `spec` with stand-ins and report the model's mode at spec["line"]."""
    path = os.path.abspath(module.__file__)
    line, claim = spec["line"], spec["claim"]
    errors: list[str] = []
    arity = ARITIES[0]
    tried: set[int] = set()
    while arity not in tried:
        tried.add(arity)
        Anything.arity = arity
        try:
            seen, error = _run_once(torch, spec, module, path)
        except _NotWitnessed as reason:
            return _not_run(spec, str(reason))
        if any(_holds(claim, state) for state in seen):
            return _verdict(torch, spec, "confirmed", seen)
        if seen and claim == "eval":
            # Training in eval mode shows only after the evaluation that switches the model has run, which
            # stand-in inputs may not reach (`if step % 1000 == 0`): not seeing it proves nothing.
            return _not_run(spec, f"calling {_shown(spec)} with stand-in arguments reached line {line} "
                                  f"{len(seen)} times, always in training mode; the evaluation that would switch "
                                  f"the model may come later")
        if seen:
            return _verdict(torch, spec, "not reproduced", seen)
        if error:
            errors.append(error)
        unpack = re.search(r"unpack \(expected (\d+)", error or "")
        if unpack is None:
            break
        arity = int(unpack[1])
    return _not_run(spec, f"calling {_shown(spec)} with stand-in arguments never reached line {line}"
                          + (f": {errors[-1]}" if errors else ""))


def _holds(claim: str, state: dict) -> bool:
    return {"training": state["training"], "eval": not state["training"], "grad": state["grad"]}[claim]


def _run_once(torch, spec: dict, module, path: str) -> tuple[list[dict], str | None]:
    model = stand_in_model(torch)
    function, owner = _target(module, spec)
    root, model_path = spec["root"], spec.get("path", [])
    others = {name: stand_in_model(torch) for name in spec.get("modules", [])}
    self = _instance(torch, owner) if owner is not None else None
    for name, value in [(root, model), *others.items()]:
        if name.startswith("self."):
            if self is None:
                raise _NotWitnessed(f"`{name}` is not an attribute of a class the probe can build")
            try:
                object.__setattr__(self, name.split(".", 1)[1], value)
            except (AttributeError, TypeError) as error:
                raise _NotWitnessed(f"cannot set `{name}`: {error}") from None
    kwargs = _arguments(function, owner is not None, None if root.startswith("self.") else root, model, others)
    if not root.startswith("self.") and root not in kwargs:
        raise _NotWitnessed(f"`{root}` is not a parameter of {spec['function']}()")
    call = (lambda: function(self, **kwargs)) if self is not None else (lambda: function(**kwargs))
    seen: list[dict] = []
    budget = [MAX_LINES]
    target_line = spec["line"]

    def local(frame, event, arg):
        if event == "line":
            budget[0] -= 1
            if budget[0] <= 0:
                raise _Stop()
            if frame.f_lineno == target_line:
                watched = _resolve(model, model_path)
                seen.append({"training": bool(watched.training), "grad": torch.is_grad_enabled()})
                if _holds(spec["claim"], seen[-1]) or len(seen) >= MAX_REACHES:
                    raise _Stop()
        return local

    def calls(frame, event, arg):
        if event == "call" and os.path.abspath(frame.f_code.co_filename) == path:
            return local
        return None

    error = None
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="modelint-witness-") as scratch:
        os.chdir(scratch)
        previous = sys.gettrace()
        sys.settrace(calls)
        try:
            call()
        except _Stop:
            pass
        except BaseException as failure:  # noqa: BLE001 - the user's code on stand-ins
            if isinstance(failure, KeyboardInterrupt):
                raise
            error = f"{type(failure).__name__}: {str(failure).strip().splitlines()[0][:160] if str(failure).strip() else ''}"
        finally:
            sys.settrace(previous)
            os.chdir(here)
    return seen, error


def _shown(spec: dict) -> str:
    return f"{spec['owner']}.{spec['function']}()" if spec.get("owner") else f"{spec['function']}()"


def _not_run(spec: dict, reason: str) -> dict:
    why = spec.get("why") or "nothing in the project builds the model"
    return {"verdict": "not run", "max_abs_diff": None, "stat_drift": None, "reason": no_module_reason(why, reason)}


def _verdict(torch, spec: dict, verdict: str, seen: list[dict]) -> dict:
    model_name = spec["root"] + "".join(f".{p}" for p in spec.get("path", []))
    claim = spec["claim"]
    state = next((s for s in seen if _holds(claim, s)), seen[-1])
    mode = "in training mode" if state["training"] else "in eval mode"
    grad = "autograd on" if state["grad"] else "autograd off"
    what = f"at line {spec['line']}, reached by calling {_shown(spec)} with a fresh stand-in module for " \
           f"`{model_name}` and stand-ins for its other arguments, `{model_name}` was {mode} with {grad}"
    difference = None
    if verdict == "confirmed" and claim == "training":
        difference = _mode_difference(torch)
        what += f" (a model with Dropout/BatchNorm gives other outputs there: {difference:.3g} on the stand-in)"
    elif verdict == "confirmed" and claim == "eval":
        what += " (its Dropout is off and BatchNorm statistics frozen while it trains)"
    elif verdict == "confirmed":
        what += " (the forward records a graph that nothing uses)"
    reason = f"{what} [checks the code path, not your model: nothing in the project builds it]"
    return {"verdict": verdict, "max_abs_diff": difference, "stat_drift": None, "reason": reason,
            "module": model_name, "constructed": "StandInModel()", "guessed": [f"{model_name} (a stand-in module)"],
            "input": "stand-ins for the arguments", "code": spec.get("code")}


def _mode_difference(torch) -> float:
    torch.manual_seed(0)
    model = stand_in_model(torch)
    with torch.no_grad():
        trained = model.train()()
        evaluated = model.eval()()
    return float((trained - evaluated).abs().max())
