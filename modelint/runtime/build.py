"""Child side: build a module from a build spec (see `provenance.py`), guessing what is missing.

Runs only inside the probe child (`probe.py`), never in the linting process. Arguments that the
parent resolved are used as given; those it could not (`len(vocab)`, a value only the script's
main block computes) and required parameters nobody passed are guessed from their names and
annotations when they say they are sizes, counts or rates, with a few alternatives per name for
the retries. Pretrained weights are never fetched (the network is refused anyway): `weights`
and `pretrained` are set to None/False.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys

NO_GUESS = object()
ATTEMPTS = 3  # guesses per name: the first set, then two alternatives
_NO_WEIGHTS = {"pretrained": False, "pretrained_backbone": False, "weights": None, "weights_backbone": None}

# (pattern over the parameter name, values for attempts 0, 1, 2), the first match wins.
_GUESSES = (
    (r"drop|^p$|_p$|_prob$", (0.5, 0.3, 0.5)),
    (r"^n_?heads?$|^num_heads$|^heads$|^nhead$|_heads$", (2, 4, 1)),
    (r"class|label|tagset|^n_?out(puts)?$|^num_outputs$|^n_tags$|^num_tags$", (4, 10, 2)),
    (r"kernel", (3, 3, 1)),
    (r"^stride$|^dilation$|^groups$", (1, 1, 1)),
    (r"^padding$", (1, 1, 0)),
    (r"^(num_|n_|n)?(layers|blocks|blks)$|^depth$", (2, 1, 3)),
    (r"seq_len|max_len|^block_size$|context|positions|max_length|max_seq", (64, 128, 32)),
    (r"vocab|^n?tokens?$|^n_tokens$|^num_tokens$|num_embeddings|^n_?words$|^num_words$|^input_dim$", (32, 64, 16)),
    (r"^in_?ch(annels|ans)?$|^n_?channels$|^channels$|^input_channels$|^img_channels$|^nc$", (3, 16, 1)),
    (r"_dim$|^dim$|_size$|^size$|hidden|^num_|^n_|^in_|^out_|features|channels|width|units|^d_|emb|^nin[pt]?$"
     r"|^nhid$|^nout$|^ch$|_ch$|planes|^k$", (16, 32, 8)),
)


_MODULE_NAMES = r"^(backbone|encoder|decoder|model|net|network|module|body|trunk|base_model|base|features|" \
                r"feature_extractor|submodule|block|layer|inner|wrapped)$"


def stand_in(torch):
    """For a parameter that takes a module (`backbone: nn.Module`): a shape-preserving module with a
    Dropout, so that the wrapper's own mode handling can be observed. Always reported as guessed."""
    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dropout = torch.nn.Dropout(0.5)

        def forward(self, x, *_rest, **_named):
            return self.dropout(x)

    return StandIn()


def guess(parameter: inspect.Parameter, attempt: int, torch=None):
    """A value for a parameter nobody gave, from its name and annotation; NO_GUESS if neither says."""
    name = parameter.name.lower()
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if text == "bool":
        return False
    if torch is not None and (text in ("Module", "nn.Module", "torch.nn.Module") or
                              (annotation is parameter.empty and re.search(_MODULE_NAMES, name))):
        return stand_in(torch)
    for pattern, values in _GUESSES:
        if re.search(pattern, name):
            value = values[attempt % len(values)]
            return float(value) if text == "float" and isinstance(value, int) else value
    if text == "int":
        return (16, 32, 8)[attempt % 3]
    if text == "float":
        return 0.1
    return NO_GUESS


_CONFIG_NAMES = r"^(cfg|config|conf|args|opts?|hparams|hp|h?params|hyperparams|settings|options)$|_(cfg|config|args|opts?)$"


class GuessedConfig:
    """For a parameter that holds a configuration (`Net(cfg)`, `Model(args)`): each field the constructor
    reads is guessed from its name, as a size, count or rate parameter would be (`cfg.hidden_dim` 16,
    `cfg.dropout` 0.5); a field no name rule covers is missing (AttributeError, as for a real config
    without it). `get(key, default)` keeps the constructor's default. The fields read are reported."""

    def __init__(self, attempt: int) -> None:
        object.__setattr__(self, "_modelint_attempt", attempt)
        object.__setattr__(self, "_modelint_fields", {})

    def _field(self, name: str):
        fields = object.__getattribute__(self, "_modelint_fields")
        if name not in fields:
            if name in _NO_WEIGHTS:
                value = _NO_WEIGHTS[name]
            else:
                value = guess(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY),
                              object.__getattribute__(self, "_modelint_attempt"))
            if value is NO_GUESS:
                raise AttributeError(f"modelint cannot guess the configuration field `{name}`")
            fields[name] = value
        return fields[name]

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._field(name)

    def __setattr__(self, name: str, value) -> None:
        object.__getattribute__(self, "_modelint_fields")[name] = value

    def __getitem__(self, name):
        try:
            return self._field(str(name))
        except AttributeError as error:
            raise KeyError(name) from error

    def get(self, name, default=None):
        fields = object.__getattribute__(self, "_modelint_fields")
        return fields[name] if name in fields else default

    def __contains__(self, name) -> bool:
        try:
            self._field(str(name))
        except AttributeError:
            return False
        return True

    def describe(self) -> str:
        fields = object.__getattribute__(self, "_modelint_fields")
        return "config(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


class GuessedMapping(GuessedConfig):
    """For a parameter annotated as a dict (`tasks: dict`, `Dict[str, int]`): a mapping whose entries are
    made up as the constructor reads them, each guessed from its key like a configuration field, and a
    key no name rule covers gets a small count (`tasks["cls"]` 4); iterating it gives the keys read so far.
    Nothing is invented for a mapping that is only iterated: it stays empty. Reported as guessed."""

    def _field(self, name: str):
        fields = object.__getattribute__(self, "_modelint_fields")
        if name not in fields:
            try:
                return super()._field(name)
            except AttributeError:
                fields[name] = (4, 8, 2)[object.__getattribute__(self, "_modelint_attempt") % 3]
        return fields[name]

    def __getattr__(self, name: str):
        raise AttributeError(name)  # a mapping: entries by key only

    def __iter__(self):
        return iter(list(object.__getattribute__(self, "_modelint_fields")))

    def __len__(self) -> int:
        return len(object.__getattribute__(self, "_modelint_fields"))

    def keys(self):
        return list(object.__getattribute__(self, "_modelint_fields"))

    def values(self):
        return list(object.__getattribute__(self, "_modelint_fields").values())

    def items(self):
        return list(object.__getattribute__(self, "_modelint_fields").items())

    def describe(self) -> str:
        fields = object.__getattribute__(self, "_modelint_fields")
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in fields.items()) + "}"


_MAPPING_ANNOTATIONS = ("dict", "Dict", "Mapping", "MutableMapping", "OrderedDict", "typing.Dict", "typing.Mapping")


def _mapping_annotation(annotation) -> bool:
    """`dict`, `Dict[str, int]`, `Mapping[str, int]`, `"dict[str, int]"` (a string under postponed annotations)."""
    import typing

    if isinstance(annotation, str):
        return annotation.split("[", 1)[0].strip() in _MAPPING_ANNOTATIONS
    if annotation is dict:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        return any(_mapping_annotation(a) for a in typing.get_args(annotation) if a is not type(None))
    import collections.abc

    return isinstance(origin, type) and issubclass(origin, (dict, collections.abc.Mapping))


def _module_list(torch, annotation) -> bool:
    """`List[nn.Module]`, `Optional[Sequence[nn.Module]]` (typing objects, not strings)."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        return any(_module_list(torch, a) for a in args if a is not type(None))
    names = {getattr(origin, "__name__", "")}
    return bool(names & {"list", "Sequence", "MutableSequence", "Iterable", "tuple"}) and bool(args) and \
        isinstance(args[0], type) and issubclass(args[0], torch.nn.Module)


class Missing(Exception):
    """An argument the child cannot compute: guessed, or the build fails with the reason."""


class BuildError(Exception):
    """The build spec cannot be turned into a module: the message says why and what to add."""


class Builder:
    def __init__(self, torch, flagged_module, flagged_path: str, device) -> None:
        self.torch, self.flagged, self.flagged_path, self.device = torch, flagged_module, flagged_path, device

    # --- names -----------------------------------------------------------------------------------

    def reference(self, ref: dict):
        if "expr" in ref:
            try:
                return eval(compile(ref["expr"], "<modelint probe>", "eval"), vars(self.flagged))  # noqa: S307
            except Exception as error:  # noqa: BLE001
                raise BuildError(f"{ref['expr']} not found after importing the file ({type(error).__name__})") \
                    from None
        if "file" in ref:
            module = self.flagged if os.path.abspath(ref["file"]) == self.flagged_path else \
                self._import_file(ref["file"])
        else:
            try:
                module = importlib.import_module(ref["module"])
            except ModuleNotFoundError as error:
                raise BuildError(f"the package `{error.name}` is not installed here: pip install "
                                 f"{(error.name or ref['module']).split('.')[0]}") from None
            except Exception as error:  # noqa: BLE001
                raise BuildError(f"importing {ref['module']} failed: {type(error).__name__}: {error}"[:200]) from None
        value = module
        for part in ref["name"].split(".") if ref["name"] else []:
            try:
                value = getattr(value, part)
            except AttributeError:
                try:  # a submodule not imported yet: `pytorch_tabnet.tab_network`
                    value = importlib.import_module(f"{value.__name__}.{part}")
                except Exception:  # noqa: BLE001
                    raise BuildError(f"{ref.get('module') or os.path.basename(ref['file'])} has no "
                                     f"`{ref['name']}`") from None
        return value

    def _import_file(self, path: str):
        folder = os.path.dirname(path)
        parts = [] if os.path.basename(path) == "__init__.py" else [os.path.splitext(os.path.basename(path))[0]]
        while os.path.isfile(os.path.join(folder, "__init__.py")):
            parts.insert(0, os.path.basename(folder))
            folder = os.path.dirname(folder)
        if folder not in sys.path:
            sys.path.append(folder)
        try:
            return importlib.import_module(".".join(parts))
        except BaseException as error:  # noqa: BLE001 - user code at import
            if isinstance(error, KeyboardInterrupt):
                raise
            raise BuildError(f"importing {os.path.basename(path)} failed: {type(error).__name__}: "
                             f"{str(error)[:150]}") from None

    # --- arguments -------------------------------------------------------------------------------

    def argument(self, spec, attempt: int, guessed: list[str]):
        if isinstance(spec, str):
            spec = {"expr": spec}
        if "value" in spec:
            return ast.literal_eval(spec["value"])
        if "ref" in spec:
            try:
                return self.reference(spec["ref"])
            except BuildError:
                raise Missing from None
        if "build" in spec:
            try:
                instance, _, inner = self.build(spec["build"], attempt)
            except BuildError:
                raise Missing from None
            guessed.extend(inner)
            return instance
        if "expr" in spec:
            try:
                return eval(compile(spec["expr"], "<modelint probe>", "eval"), vars(self.flagged))  # noqa: S307
            except Exception:  # noqa: BLE001 - a name only the script's main block defines
                raise Missing from None
        raise Missing

    def build(self, spec: dict, attempt: int = 0):
        """(instance, `Net(vocab_size=32, hidden=16)`, names guessed) for a build spec."""
        if spec.get("loader") == "from_pretrained":
            return self.from_pretrained(spec, attempt)
        if spec["callee"].get("stand_in"):  # the whole model is a stand-in (plan._plan_flag says when)
            self.torch.manual_seed(0)
            with self.torch.device(self.device):
                instance = stand_in(self.torch)
            return instance, "StandIn(dropout=Dropout(p=0.5))", [f"{spec.get('stand_in_model') or 'the model'} "
                                                                 f"(a stand-in)"]
        callee = self.reference(spec["callee"])
        label = spec["callee"].get("name") or spec["callee"].get("expr") or "?"
        try:
            signature = inspect.signature(callee)
        except (TypeError, ValueError):
            signature = None
        guessed: list[str] = []
        params = list(signature.parameters.values()) if signature is not None else []
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        extra, kwargs, missing = [], {}, []
        for number, item in enumerate(spec.get("args", [])):
            try:
                value = self.argument(item, attempt, guessed)
            except Missing:
                value = Missing
            if number < len(positional):
                if value is Missing:
                    missing.append(positional[number].name)
                else:
                    kwargs[positional[number].name] = value
            elif value is Missing:
                raise BuildError(f"{label}: the argument {item.get('expr') or item} cannot be computed")
            else:
                extra.append(value)
        for key, item in spec.get("kwargs", {}).items():
            try:
                kwargs[key] = self.argument(item, attempt, guessed)
            except Missing:
                missing.append(key)
        dropped = [key for key in _NO_WEIGHTS if kwargs.get(key) not in (None, False) and key in kwargs]
        for key in dropped:
            kwargs[key] = _NO_WEIGHTS[key]
        for param in params:
            if kwargs.get(param.name, 0) is None and param.default is param.empty and \
                    guess(param, attempt) is not NO_GUESS:
                del kwargs[param.name]  # a `None` placeholder (`input_dim: int = None`) for a size
            if param.kind == param.VAR_POSITIONAL and not extra and spec.get("stand_ins"):
                stand = guess(param, attempt, self.torch)  # `*stages: nn.Module`: a wrapper of modules
                if stand is not NO_GUESS and isinstance(stand, self.torch.nn.Module):
                    extra += [stand, stand_in(self.torch)]
                    guessed.append(f"*{param.name}")
                continue
            if param.name in kwargs or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.default is None and spec.get("stand_ins") and _module_list(self.torch, param.annotation):
                # `layers: Optional[List[nn.Module]] = None`: a container class measured with two stand-ins.
                kwargs[param.name] = [stand_in(self.torch), stand_in(self.torch)]
                guessed.append(param.name)
                continue
            if param.default is not param.empty and (param.name not in missing or guess(param, attempt) is NO_GUESS):
                continue  # its default; or given something we cannot compute that no guess replaces
            if _mapping_annotation(param.annotation):  # the annotation says dict, whatever the name says
                value = GuessedMapping(attempt)
            else:
                value = guess(param, attempt, self.torch if spec.get("stand_ins") else None)
            if value is NO_GUESS and re.search(_CONFIG_NAMES, param.name.lower()):
                value = GuessedConfig(attempt)
            if value is NO_GUESS:
                site = f" at {spec['site']}" if spec.get("site") else ""
                short = label.rsplit(".", 1)[-1]
                if guess(param, attempt, self.torch) is not NO_GUESS:  # it takes a module: whose is unknown
                    raise BuildError(f"constructor needs arguments: {short}({param.name}): `{param.name}` takes a "
                                     f"module and nothing in the project passes one{site}; the forward pass "
                                     f"measured is that module's, so a stand-in would only measure itself: add "
                                     f"`# modelint: probe {short}(YourNet(...))` or a [tool.modelint.runtime] "
                                     f"probes entry")
                raise BuildError(f"constructor needs arguments: {short}({param.name}): `{param.name}` has no "
                                 f"default{site} and is not a size, count or rate modelint can guess; add "
                                 f"`# modelint: probe {short}(...)` or a [tool.modelint.runtime] probes entry")
            kwargs[param.name] = value
            guessed.append(param.name)
        args = []
        if extra or any(p.kind == p.POSITIONAL_ONLY for p in positional):
            for param in positional:
                if param.name not in kwargs:
                    break
                args.append(kwargs.pop(param.name))
        args += extra
        self.torch.manual_seed(0)
        try:
            with self.torch.device(self.device):
                instance = callee(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - user code
            if isinstance(error, KeyboardInterrupt):
                raise
            text = str(error).strip().splitlines()
            raise BuildError(f"constructing {label}({_describe(args, kwargs)}) failed: {type(error).__name__}"
                             + (f": {text[0][:160]}" if text else "")) from None
        guessed = list(dict.fromkeys(guessed))
        description = f"{label.rsplit('.', 1)[-1]}({_describe(args, kwargs)})"
        if len(description) > 240:
            description = description[:236] + "...)"
        if dropped:
            description += " (without pretrained weights)"
        return instance, description, guessed


    # --- Hugging Face checkpoints ------------------------------------------------------------

    def from_pretrained(self, spec: dict, attempt: int):
        """`AutoModelForSequenceClassification.from_pretrained(name)`: the checkpoint cannot be fetched (no
        network), so the same class is built from a small configuration of its model type (hidden 32, 2
        layers, 2 heads), with random weights and in eval mode as from_pretrained returns it. The model type
        is the class's own, or for an Auto class the one the checkpoint's name says (`distilbert-base-...`),
        else a common one the Auto class supports. Always reported as guessed: Dropout/BatchNorm act by
        mode whatever the weights and sizes, but it is not the user's checkpoint."""
        callee = self.reference(spec["callee"])  # BuildError naming transformers if it is not installed
        label = spec["callee"].get("name") or "?"
        try:
            import transformers
        except ImportError:
            raise BuildError("the package `transformers` is not installed here: pip install transformers") from None
        guessed: list[str] = []
        name = None
        if spec.get("args"):
            try:
                name = self.argument(spec["args"][0], attempt, guessed)
            except Missing:
                name = None
        options = {}
        for key, item in spec.get("kwargs", {}).items():
            if key in _LOADER_OPTIONS:
                continue
            try:
                value = self.argument(item, attempt, guessed)
            except Missing:
                continue
            if isinstance(value, (int, float, bool, str, type(None), dict, list, tuple)):
                options[key] = value
        config_class = getattr(callee, "config_class", None)
        model_type = getattr(config_class, "model_type", None) if config_class is not None else None
        auto = not model_type
        if auto:
            mapping = getattr(callee, "_model_mapping", None)
            supported = list(getattr(mapping, "_model_mapping", {}) or {})
            if not supported:
                raise BuildError(f"{label}.from_pretrained: modelint cannot tell which model class it loads; "
                                 f"add `# modelint: probe ...`")
            model_type = _type_in_name(name, supported) if isinstance(name, str) else None
            if model_type is None:
                model_type = next((t for t in ("bert", "bart", "gpt2") if t in supported), supported[0])
                guessed.append(f"the model type ({model_type}: "
                               + (f"not named by {name!r})" if isinstance(name, str) else "checkpoint unknown)"))
            config = transformers.AutoConfig.for_model(model_type)
        else:
            config = config_class()
        fields = config.to_dict()
        small = {key: value for key, value in _SMALL_CONFIG.items() if key in fields}
        if "vocab_size" in small and any(isinstance(v, int) and v >= small["vocab_size"]
                                         for k, v in fields.items() if k.endswith("token_id")):
            del small["vocab_size"]
        for key, value in {**small, **options}.items():
            setattr(config, key, value)
        self.torch.manual_seed(0)
        try:
            with self.torch.device(self.device):
                instance = callee.from_config(config) if auto else callee(config)
        except BaseException as error:  # noqa: BLE001 - library code on a made-up configuration
            if isinstance(error, KeyboardInterrupt):
                raise
            raise BuildError(f"{label}.from_pretrained({name!r}) could not be built from a small {model_type} "
                             f"configuration: {type(error).__name__}: {str(error)[:160]}") from None
        instance.eval()  # as from_pretrained returns it
        shown = ", ".join(f"{k}={v!r}" for k, v in small.items())
        guessed.insert(0, f"the checkpoint {name!r}" if isinstance(name, str) else "the checkpoint")
        description = (f"{label.rsplit('.', 1)[-1]}.from_pretrained -> {type(instance).__name__} built from a "
                       f"small config of the same class ({model_type}: {shown}), random weights")
        return instance, description, guessed


# from_pretrained's options that say how to load, not what the model is.
_LOADER_OPTIONS = frozenset({"cache_dir", "revision", "torch_dtype", "dtype", "device_map", "trust_remote_code",
                             "local_files_only", "token", "use_auth_token", "low_cpu_mem_usage", "config",
                             "from_tf", "from_flax", "force_download", "resume_download", "proxies", "subfolder",
                             "load_in_8bit", "load_in_4bit", "quantization_config", "use_safetensors", "variant",
                             "output_loading_info", "ignore_mismatched_sizes", "max_memory", "offload_folder",
                             "attn_implementation", "state_dict", "mirror", "_fast_init"})
# Small sizes, under each name configurations use for them.
_SMALL_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                 "intermediate_size": 64, "vocab_size": 128, "embedding_size": 32, "d_model": 32,
                 "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2,
                 "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_layers": 2,
                 "num_decoder_layers": 2, "num_heads": 2, "d_ff": 64, "d_kv": 16, "n_embd": 32, "n_layer": 2,
                 "n_head": 2, "n_inner": 64, "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}


def _type_in_name(name: str, supported: list[str]) -> str | None:
    """The model type a checkpoint's name says (`distilbert-base-uncased` -> distilbert, `google/flan-t5-base`
    -> t5), the longest that matches as a whole word of the name."""
    text = name.lower()
    found = [t for t in supported
             if re.search(rf"(^|[/_.\-]){re.escape(t.lower()).replace('_', '[_-]')}($|[/_.\-]|\d)", text)]
    return max(found, key=len) if found else None


def _short(value) -> str:
    if isinstance(value, GuessedConfig):  # and GuessedMapping
        return value.describe()
    if isinstance(value, (int, float, bool, str, type(None))):
        text = repr(value)
    elif isinstance(value, type):
        text = value.__name__
    elif callable(value) and hasattr(value, "__name__"):
        text = value.__name__
    else:
        text = f"{type(value).__name__}(...)"
    return text if len(text) <= 40 or isinstance(value, GuessedConfig) else text[:37] + "..."


def _describe(args, kwargs) -> str:
    return ", ".join([_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()])
