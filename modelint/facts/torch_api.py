"""What modelint knows about PyTorch without importing it.

Every table here is a fact about torch's public API (verified on torch 2.13) that
the facts pass and the rules rely on. Names are fully qualified the way
`ImportTable.qualify` spells them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from modelint.textutil import edit_distance

NN = "torch.nn"
FUNCTIONAL = "torch.nn.functional"

# Layers whose forward differs between train() and eval(): random in training mode
# (dropout, RReLU) or normalising with batch statistics and updating running stats.
ALWAYS_MODE_DEPENDENT = frozenset(
    {
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
        "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
        "RReLU",
    }
)
# Layers that are mode-dependent because their dropout defaults to a non-zero value;
# `dropout=0` (keyword or at this positional index) makes them mode-independent.
DROPOUT_DEFAULT_NONZERO = {
    "Transformer": 7,
    "TransformerEncoderLayer": 3,
    "TransformerDecoderLayer": 3,
}
# Layers that are mode-dependent only when given a non-zero dropout.
DROPOUT_DEFAULT_ZERO = {
    "MultiheadAttention": 2,
    "LSTM": 5,
    "GRU": 5,
    "RNN": 6,
}
RECURRENT_LAYERS = frozenset({"LSTM", "GRU", "RNN"})  # (`num_layers` is their third argument)
# Stacks whose mode-dependence is that of the layer they are built from.
STACKS = frozenset({"TransformerEncoder", "TransformerDecoder"})
# InstanceNorm behaves like BatchNorm only with track_running_stats=True (index 4).
INSTANCE_NORMS = frozenset(
    {"InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d"}
)
# Mode-dependent layers that are not random in training mode: they normalise with the batch's statistics.
NORMALISING = re.compile(r"(Sync|Lazy)?BatchNorm[123]?d?|(Lazy)?InstanceNorm[123]d")
CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})
# torch.nn layers without parameters: losses, activations, pooling, padding, reshaping, dropout.
# Running one records no graph of weights: there is no model to evaluate. (Not the adaptive softmax, a loss
# with weights of its own: its head and tail clusters are Linear layers.)
PARAMETERLESS_LAYER = re.compile(
    r"(?!AdaptiveLogSoftmaxWithLoss).*Loss(2d)?|(Zero|Constant|Reflection|Replication|Circular)Pad[123]d|(Adaptive)?(Max|Avg|LP)Pool[123]d"
    r"|FractionalMaxPool[23]d|MaxUnpool[123]d|ReLU6?|LeakyReLU|ELU|SELU|CELU|GELU|SiLU|Mish|Sigmoid|Tanh"
    r"|Softmax2?d?|LogSoftmax|Softmin|Softplus|Softsign|Softshrink|Hardshrink|Hardtanh|Hardswish|Hardsigmoid"
    r"|Tanhshrink|Threshold|GLU|Identity|Flatten|Unflatten|Upsample|Upsampling(Nearest|Bilinear)2d"
    r"|Pixel(Un)?[Ss]huffle|ChannelShuffle|Fold|Unfold|CosineSimilarity|PairwiseDistance"
    r"|(Feature)?(Alpha)?Dropout[123]?d?")
# Everything else under torch.nn that is constructed is a mode-independent layer
# (Linear, Conv*, ReLU, LayerNorm, GroupNorm, Embedding, losses, pooling...).

# Model factories from outside torch.nn: their modules hold layers we cannot see,
# so they count as mode-dependent. Prefixes of qualified names.
EXTERNAL_MODEL_PREFIXES = (
    "torchvision.models.",
    "timm.create_model",
    "timm.models.",
    "segmentation_models_pytorch.",
    "torch.hub.load",
    "torchaudio.models.",
    "open_clip.create_model",
    # OpenMMLab's registry builders: a fresh detector/segmentor/classifier, in training mode
    "mmdet.models.build_detector",
    "mmseg.models.build_segmentor",
    "mmcls.models.build_classifier",
)
# Names under those prefixes that build no module: torchaudio's CTC beam-search decoders (a search over a
# model's emissions, with no mode) and the registries' lists and weight enums; a download of a state dict.
NOT_MODEL_FACTORIES = ("torchaudio.models.decoder.", "torchvision.models.get_weight",
                       "torchvision.models.get_model_weights", "torchvision.models.list_models",
                       "timm.models.list_models", "torch.hub.load_state_dict_from_url",
                       # (segmentation_models_pytorch's losses and metrics: no weights, the same in either mode)
                       "segmentation_models_pytorch.losses.", "segmentation_models_pytorch.metrics.",
                       "segmentation_models_pytorch.utils.losses.", "segmentation_models_pytorch.utils.metrics.")


def builds_library_model(qualified: str) -> bool:
    """Does the library name `qualified` build a model whose layers we cannot see (EXTERNAL_MODEL_PREFIXES)?"""
    return qualified.startswith(EXTERNAL_MODEL_PREFIXES) and not qualified.startswith(NOT_MODEL_FACTORIES)


# Library models whose constructor puts them in eval mode itself -> the flag (keyword, position) that turns that
# off when passed a false value: lpips' perceptual metric (`if eval_mode: self.eval()`).
LIBRARY_MODELS_BUILT_IN_EVAL = {"lpips.LPIPS": ("eval_mode", 9), "lpips.lpips.LPIPS": ("eval_mode", 9)}
# Layers of other libraries that do the same in either mode: einops' rearrangements (and its EinMix,
# a linear map), torchvision's frozen BatchNorm (fixed statistics), body models.
MODE_FREE_LIBRARY_LAYERS = ("einops.layers.", "torchvision.ops.misc.FrozenBatchNorm2d",
                            "torchvision.ops.FrozenBatchNorm2d",
                            # parametric body models (SMPL, SMPL-X, MANO, FLAME): blend shapes and skinning
                            "smplx.", "manopth.manolayer.")
# PyTorch Geometric's layers (torch_geometric.nn): message passing with weights and no mode of its own;
# those given a `dropout` rate drop attention or propagation terms in training mode only; those given a
# network (`GINConv(nn.Sequential(...))`) are as mode-dependent as it; its BatchNorm/InstanceNorm/Dropout
# wrappers are mode-dependent like torch's.
GEOMETRIC_MODE_FREE = frozenset({
    "GCNConv", "SAGEConv", "GraphConv", "ChebConv", "SGConv", "TAGConv", "GatedGraphConv", "LEConv",
    "ClusterGCNConv", "GCN2Conv", "FeaStConv", "SplineConv", "GMMConv", "ResGatedGraphConv", "CGConv", "EGConv",
    "FiLMConv", "HypergraphConv", "RGCNConv", "FastRGCNConv", "HeteroConv", "Linear", "HeteroLinear",
    "MetaPath2Vec", "Node2Vec", "LightGCN", "GraphUNet", "MessagePassing", "Sequential", "LayerNorm",
    "GraphNorm", "PairNorm", "MeanAggregation", "SumAggregation", "MaxAggregation",
})
GEOMETRIC_DROPOUT_RATE = frozenset({"GATConv", "GATv2Conv", "TransformerConv", "SuperGATConv", "APPNP", "ARMAConv",
                                    "GENConv", "HGTConv", "HANConv", "GPSConv"})
GEOMETRIC_WRAPPING = frozenset({"GINConv", "GINEConv", "NNConv", "EdgeConv", "DynamicEdgeConv", "PointNetConv",
                                "PointConv", "PPFConv", "XConv"})
GEOMETRIC_MODE_DEPENDENT = frozenset({"BatchNorm", "InstanceNorm", "MessageNorm", "DiffGroupNorm"})
# DGL's layers (dgl.nn, dgl.nn.pytorch): the same in either mode unless given a dropout rate (its keyword and
# position), or, for those wrapping a network or a norm they are handed, as mode-dependent as it.
DGL_MODE_FREE = frozenset({"GraphConv", "TAGConv", "SGConv", "ChebConv", "GMMConv", "GatedGraphConv", "DotGatConv",
                           "EdgeWeightNorm", "AGNNConv", "SumPooling", "AvgPooling", "MaxPooling", "SortPooling",
                           "Set2Set", "WeightAndSum"})
DGL_DROPOUT_RATES = {"SAGEConv": (("feat_drop", 3),), "GATConv": (("feat_drop", 3), ("attn_drop", 4)),
                     "GATv2Conv": (("feat_drop", 3), ("attn_drop", 4)), "APPNPConv": (("edge_drop", 2),),
                     "RelGraphConv": (("dropout", 8),)}
DGL_WRAPPING = frozenset({"GINConv", "GINEConv", "NNConv", "GlobalAttentionPooling"})
# Data transforms written as modules: no weights, and the same in either mode (a mel spectrogram, a
# normalisation, a resize; a random augmentation is random in eval mode too: kornia's and
# torch-audiomentations' never read `self.training`); and a library's losses and metrics.
WEIGHTLESS_LIBRARY_LAYERS = ("torchvision.transforms.", "torchaudio.transforms.", "kornia.augmentation.",
                             "torch_audiomentations.", "segmentation_models_pytorch.losses.",
                             "segmentation_models_pytorch.metrics.", "segmentation_models_pytorch.utils.losses.",
                             "segmentation_models_pytorch.utils.metrics.")
# `X.from_pretrained(...)` builds a model (in eval mode) when X names a model class;
# tokenizers, processors, configs, pipelines and schedulers are not nn.Modules.
FROM_PRETRAINED_MODEL = r"(Model|For[A-Z]|Net|Transformer|UNet|VAE|Encoder|Decoder|GPT|Bert|LM)"
FROM_PRETRAINED_NOT_MODEL = r"(Tokenizer|Processor|Config|Extractor|Pipeline|Scheduler|Processing)"
# Hugging Face's TensorFlow and Flax twins of its model classes (`TFAutoModel`, `FlaxBertModel`): no autograd here.
OTHER_FRAMEWORK_MODEL = r"(TF|Flax)[A-Z]"


def from_pretrained_loads(owner: str) -> bool | None:
    """What `owner.from_pretrained(...)` loads, by the class's name (`transformers.AutoModelForCausalLM`):
    True a model, False a tokenizer, processor, config and the like, None either."""
    tail = owner.rsplit(".", 1)[-1]
    if re.search(FROM_PRETRAINED_NOT_MODEL, tail) or re.match(OTHER_FRAMEWORK_MODEL, tail):
        return False
    return True if re.search(FROM_PRETRAINED_MODEL, tail) else None

# Base classes that make a class an nn.Module.
MODULE_BASE_PREFIXES = (
    "torch.nn.",
    "pytorch_lightning.",
    "lightning.",
    "lightning.pytorch.",
    "transformers.",
    "diffusers.",
    "timm.",
    "torchvision.models.",
)
# ... except the classes of those libraries that are no modules: trainers, callbacks, configs, tokenizers,
# pipelines, schedulers, data modules (a `class MyTrainer(transformers.Trainer)` holds models, it is none).
NOT_MODULE_BASE = re.compile(r"(Trainer|Callback|Arguments|Args|Config|Tokenizer\w*|Processor|Pipeline|"
                             r"Scheduler\w*|DataModule|Dataset|Collator|Mixin|Sampler|Logger|Strategy|Loop)")
# Other frameworks, some with module classes that mirror nn.Module's API (MegEngine registers plain lists
# of modules; none records a graph outside its own gradient tape): their classes are no PyTorch modules,
# and a file that imports one of them and never torch is not PyTorch code (see modelint.engine).
OTHER_FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "flax", "jax", "haiku", "equinox", "megengine", "paddle",
                    "mindspore", "oneflow", "jittor", "mxnet", "tinygrad", "caffe", "mlx", "chainer", "objax", "trax",
                    "dynet")
OTHER_FRAMEWORK_PREFIXES = tuple(name + "." for name in OTHER_FRAMEWORKS)
# Libraries whose classes are never torch modules, though a class deriving from one may define `forward`
# (skorch's `NeuralNet(BaseEstimator)` wraps a module and calls it in its own `forward()`): the scientific
# stack, and the inference engines that run exported networks (OpenCV's `dnn.DetectionModel(...).forward()`).
NOT_MODULE_LIBRARIES = ("sklearn", "numpy", "pandas", "scipy", "cv2", "onnxruntime", "tensorrt", "openvino")
NOT_MODULE_LIBRARY_PREFIXES = tuple(name + "." for name in NOT_MODULE_LIBRARIES)
# Whatever these two build is no torch module.
NOT_TORCH_PREFIXES = OTHER_FRAMEWORK_PREFIXES + NOT_MODULE_LIBRARY_PREFIXES

# Methods that move or cast a module and hand it back: `self.actor = actor.to(device)` keeps the same layers.
MOVES = frozenset({"to", "cuda", "cpu", "half", "float", "double", "bfloat16"})

# Methods of nn.Module that neither change nor depend on train/eval mode.
MODE_PRESERVING_METHODS = frozenset(
    {
        "to", "cuda", "cpu", "half", "float", "double", "bfloat16", "type", "to_empty", "xpu", "ipu", "mps",
        "parameters", "named_parameters", "buffers", "named_buffers", "children", "named_children",
        "modules", "named_modules", "state_dict", "load_state_dict", "zero_grad", "requires_grad_",
        "register_buffer", "register_parameter", "register_module", "add_module", "register_forward_hook",
        "register_forward_pre_hook", "register_full_backward_hook", "register_backward_hook",
        "get_submodule", "get_parameter", "get_buffer", "share_memory", "extra_repr", "float",
        "compile", "set_extra_state", "get_extra_state", "named_parameters",
        # Hugging Face / generation helpers that leave mode alone.
        "generate", "resize_token_embeddings", "gradient_checkpointing_enable", "tie_weights",
        "save_pretrained", "get_input_embeddings", "get_output_embeddings", "num_parameters",
    }
)
# Method names that exist on nn.Module (for near-miss detection).
MODULE_METHODS = MODE_PRESERVING_METHODS | frozenset(
    {"train", "eval", "forward", "apply", "training", "__call__", "register_forward_hook"}
)

# Lightning runs these hooks in eval mode under no_grad itself (RULES.md 3).
LIGHTNING_EVAL_HOOKS = frozenset({"validation_step", "test_step", "predict_step", "validation_epoch_end",
                                  "test_epoch_end", "on_validation_batch_end", "on_test_batch_end"})

# ... and back-propagates what this one returns (a loss, or a dict holding one under "loss").
LIGHTNING_TRAIN_HOOKS = frozenset({"training_step"})

# TorchServe handlers: `BaseHandler.initialize()` loads `self.model` and puts it in eval mode before any
# request; an `inference()` override runs with autograd on unless it turns it off.
SERVING_HANDLER_PREFIXES = ("ts.torch_handler.",)
SERVING_HANDLER_MODEL = "self.model"

# Calls that switch autograd off for the region they govern.
# torch.nn.Module itself (its two import paths), and with the scripted kind: what a model class derives from
# when nothing else gives it layers.
NN_MODULE = frozenset({"torch.nn.Module", "torch.nn.modules.module.Module"})
MODULE_BASES = NN_MODULE | {"torch.jit.ScriptModule"}
# Context managers that change nothing (`ctx = nullcontext() if training else torch.no_grad()`).
NEUTRAL_CONTEXTS = frozenset({"contextlib.nullcontext", "contextlib.suppress"})
GRAD_DISABLING = frozenset({"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
                            "torch.autograd.grad_mode.no_grad", "torch.autograd.grad_mode.inference_mode"})
GRAD_ENABLING = frozenset({"torch.enable_grad", "torch.autograd.enable_grad"})
# Library context managers that switch the modules they are given and restore their modes on exit:
# qualified name -> (the mode, whether the body also runs under no_grad). MONAI's `eval_mode(*nets)`
# is `net.eval()` for each and `torch.no_grad()`; its `train_mode(*nets)` leaves autograd alone.
MODE_CONTEXTS = {"monai.networks.utils.eval_mode": ("eval", True), "monai.networks.eval_mode": ("eval", True),
                 "monai.networks.utils.train_mode": ("train", False), "monai.networks.train_mode": ("train", False)}
SET_GRAD_ENABLED = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"})
# Context managers that are no-ops unless entered (MDL004).
GRAD_MODE_CONTEXT_MANAGERS = GRAD_DISABLING | GRAD_ENABLING

# Real torch top-level grad/mode names, used to decide what is a misspelling (MDL011).
TORCH_GRAD_API = frozenset(
    {"no_grad", "enable_grad", "inference_mode", "set_grad_enabled", "is_grad_enabled",
     "is_inference_mode_enabled", "is_inference"}
)
# Other real torch attributes that sit within edit distance of the grad API.
TORCH_REAL_NEAR_GRAD_API = frozenset({"set_grad_enabled", "is_grad_enabled", "no_grad", "enable_grad"})
# Names that do not exist in torch but are written by people who mean something else.
TORCH_CONFUSIONS = {
    "zero_grad": "optimizer.zero_grad()` or `model.zero_grad()",
    "eval": "model.eval()",
    "train": "model.train()",
}
MODULE_MODE_METHODS = ("train", "eval")
MODULE_NEAR_MISS_TARGETS = ("train", "eval", "zero_grad", "requires_grad_")
# Misreadings that are not close in spelling but are common (Keras habits).
MODULE_CONFUSIONS = {"evaluate": "eval"}

# Functional calls that take a `training` flag: qualified name -> (positional index, default).
FUNCTIONAL_TRAINING_FLAG = {
    "torch.nn.functional.dropout": (2, True),
    "torch.nn.functional.dropout1d": (2, True),
    "torch.nn.functional.dropout2d": (2, True),
    "torch.nn.functional.dropout3d": (2, True),
    "torch.nn.functional.alpha_dropout": (2, False),
    "torch.nn.functional.feature_alpha_dropout": (2, False),
    "torch.nn.functional.rrelu": (3, False),
    "torch.nn.functional.batch_norm": (5, False),
}
SDPA = "torch.nn.functional.scaled_dot_product_attention"
SDPA_DROPOUT_INDEX = 4

# Calls that run a training step (MDL003 / MDL007 anchors).
BACKWARD_FUNCTIONS = frozenset({"torch.autograd.backward"})
# Functions that run the module they are given as their first argument on the rest: its forward pass.
MODULE_RUNNERS = frozenset({"torch.nn.parallel.data_parallel", "torch.nn.parallel.data_parallel.data_parallel"})
GRADIENT_FUNCTIONS = frozenset({"torch.autograd.grad", "torch.autograd.functional.jacobian",
                                "torch.autograd.functional.hessian", "torch.func.grad", "torch.func.vjp",
                                "torch.func.jacrev", "torch.func.jacfwd"})

def is_optimizer_class(qualified: str) -> bool:
    """A `torch.optim` optimizer (not a learning-rate scheduler, not SWA's averaging helpers)."""
    return qualified.startswith("torch.optim.") and ".lr_scheduler." not in qualified and ".swa_utils." not in qualified


# Calls that take a model but never change its mode.
MODE_NEUTRAL_FUNCTIONS = frozenset(
    {"print", "len", "isinstance", "str", "repr", "type", "id", "hasattr", "getattr", "sum", "list",
     "torch.save", "torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad_value_",
     "torch.nn.utils.parameters_to_vector", "copy.deepcopy", "logging.info", "summary",
     "torch.nn.DataParallel", "torch.nn.parallel.DistributedDataParallel", "torch.compile",
     "torch.jit.script", "torch.jit.trace", "torch.onnx.export", "wandb.watch",
     # (`update_bn` switches to train() for its pass and restores the mode it found; SWA's averaged
     # copy leaves the source alone)
     "torch.optim.swa_utils.update_bn", "torch.optim.swa_utils.AveragedModel"}
)
# Wrappers that return a module sharing the wrapped module's mode.
MODULE_WRAPPERS = frozenset(
    {"torch.nn.DataParallel", "torch.nn.parallel.DistributedDataParallel", "torch.compile",
     "torch.nn.parallel.DataParallel", "torch.nn.parallel.distributed.DistributedDataParallel",
     "torch.nn.parallel.data_parallel.DataParallel",
     "mmcv.parallel.MMDataParallel", "mmcv.parallel.MMDistributedDataParallel",
     "torch.distributed.fsdp.FullyShardedDataParallel",
     "torch.distributed.fsdp.fully_sharded_data_parallel.FullyShardedDataParallel",
     "torch.distributed.fsdp.fully_shard", "torch.distributed._composable.fsdp.fully_shard",
     # reparametrisations that return the very module they are given
     "torch.nn.utils.weight_norm", "torch.nn.utils.spectral_norm", "torch.nn.utils.weight_norm.weight_norm",
     "torch.nn.utils.spectral_norm.spectral_norm", "torch.nn.utils.parametrizations.weight_norm",
     "torch.nn.utils.parametrizations.spectral_norm", "torch.nn.utils.parametrizations.orthogonal"}
)

# Tensors made from nothing: a forward on one is a probe (shapes, hooks, lazy layers), not an evaluation.
DUMMY_TENSOR_FACTORIES = frozenset({
    "torch.empty", "torch.zeros", "torch.ones", "torch.rand", "torch.randn", "torch.randint", "torch.full",
    "torch.arange",
})
# Tensors filled with a constant (a grid, a quantile level): no data, and no noise a generator samples from.
CONSTANT_TENSOR_FACTORIES = frozenset({"torch.empty", "torch.zeros", "torch.ones", "torch.full", "torch.arange",
                                       "torch.ones_like", "torch.zeros_like", "torch.full_like", "torch.empty_like"})
# What makes a tensor of plain data (coordinates, token lists, arrays): a module doing so converts its input.
DATA_TENSOR_FACTORIES = frozenset({"torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor",
                                   "torch.FloatTensor", "torch.LongTensor"})


@lru_cache(maxsize=4096)
def torch_meant(name: str) -> str | None:
    """`torch.<name>` that does not exist, and what was meant (`zero_grad` -> `torch.no_grad`), or None."""
    if name in TORCH_GRAD_API:
        return None
    if name in TORCH_CONFUSIONS:
        return TORCH_CONFUSIONS[name]
    if name.startswith("_"):
        return None
    best = closest(name, TORCH_GRAD_API)
    return f"torch.{best}" if best else None


def closest(name: str, targets) -> str | None:
    """The name in `targets` that `name` is a near miss of (an edit or two, or `_` and case), if any."""
    if len(name) < 4:
        return None  # `val`, `evl`: too short to tell a typo from another API
    squashed = name.replace("_", "").lower()
    for target in sorted(targets):
        limit = 1 if len(target) <= 5 else 2
        if abs(len(name) - len(target)) > limit and squashed != target.replace("_", ""):
            continue  # more insertions or deletions than the limit allows
        if edit_distance(name, target) <= limit or squashed == target.replace("_", ""):
            return target
    return None

# `torch.autograd.Variable`, the pre-0.4 tensor wrapper (`volatile=True`, `requires_grad=True`), as imported.
VARIABLE_CLASSES = frozenset({"torch.autograd.Variable", "torch.autograd.variable.Variable"})


def is_weightless_library_layer(qualified: str) -> bool:
    """A class of the WEIGHTLESS_LIBRARY_LAYERS libraries (`torchaudio.transforms.MelSpectrogram`), not one of their
    functions."""
    return qualified.startswith(WEIGHTLESS_LIBRARY_LAYERS) and qualified.rsplit(".", 1)[-1][:1].isupper()
