"""What calls do to a value that may carry a forward's output: the vocabulary `intent` reads.

Tensor methods that cut the output from autograd and make predictions or numbers of it
(`.item()`, `.argmax()`), that only read metadata (`.shape`, `.size()`), that keep the
graph but turn outputs into predictions (`softmax`, `.cpu()`), that write a view of
their receiver in place (`m.view(-1).index_add_(...)`); functions that write files;
methods that consume a value for show (loggers, metrics, containers); methods only a
module has. Names, not data flow: what torch and the usual libraries define.
"""

from __future__ import annotations

import libcst as cst

from modelint.facts.modules import EVIDENCE_METHODS

# Functions that write what they are given to a file: images, arrays, plots.
FILE_WRITERS = frozenset({
    "torchvision.utils.save_image", "cv2.imwrite", "imageio.imwrite", "imageio.imsave", "imageio.mimsave",
    "matplotlib.pyplot.imsave", "matplotlib.pyplot.imshow", "numpy.save", "numpy.savez", "numpy.savetxt",
    "skimage.io.imsave", "scipy.io.wavfile.write", "soundfile.write", "torchaudio.save",
})
# Tensor methods whose result has left autograd, and that turn outputs into predictions/numbers.
DETACHING_METHODS = frozenset({"item", "tolist", "numpy", "argmax", "argmin", "eq", "ne", "ge", "gt",
                               "le", "lt", "long", "int", "bool", "byte", "sign", "round"})
# A stop-gradient, not a use: a detached output may still feed a loss (a GAN's fakes for D).
STOP_GRADIENT_METHODS = frozenset({"detach", "detach_"})
# Methods that keep the graph but turn outputs into predictions or move them off the device.
# (Not `log_softmax`: log-probabilities are what NLL and KL losses take; a prediction made of them goes on to
# `argmax`, which says so.)
EVAL_METHODS = frozenset({"softmax", "sigmoid", "topk", "max", "min", "sort", "cpu"})
METADATA_METHODS = frozenset({"size", "dim", "numel", "nelement", "type", "get_device", "element_size",
                              "is_contiguous", "stride", "data_ptr", "keys"})
# Methods only an nn.Module has (no tensor, no model output): a call whose value gets one built a module.
# `eval()` counts here, unlike for an unknown receiver (another framework's `x.eval(stream)`): a forward's
# output has no such method either.
MODULE_ONLY_METHODS = EVIDENCE_METHODS | {"eval", "register_forward_hook", "register_forward_pre_hook"}
METADATA_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "grad_fn",
                                 "layout", "names"})
DETACHING_ATTRIBUTES = frozenset({"data"})  # a stop-gradient too
# Calls that consume a value for show: printing, logging, metrics, writers, containers.
WEAK_CONSUMER_METHODS = frozenset({"update", "add_scalar", "add_scalars", "add_image", "add_images", "add_histogram",
                                   "add_figure", "add_text", "log", "log_metrics", "log_dict", "info", "debug",
                                   "warning", "write", "save", "append", "extend", "insert", "add", "put",
                                   "record", "record_batch", "set_postfix", "set_description"})
CONTAINER_METHODS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "appendleft"})
BACKWARD_METHODS = frozenset({"backward", "manual_backward"})
# Tensor methods that return a view of their receiver's storage: an in-place op on one writes the receiver.
VIEW_METHODS = frozenset({"view", "view_as", "reshape", "narrow", "select", "squeeze", "unsqueeze", "flatten",
                          "transpose", "permute", "t", "expand", "expand_as", "diagonal", "unflatten"})
DETACHING_BUILTINS = frozenset({"float", "int", "bool", "round", "abs"})
METADATA_BUILTINS = frozenset({"len", "isinstance", "type", "id", "hasattr", "callable"})
EVAL_FUNCTIONS = frozenset({"torch.argmax", "torch.argmin", "torch.max", "torch.min", "torch.topk", "torch.sort",
                             "torch.softmax", "torch.sigmoid", "torch.nn.functional.softmax",
                             "torch.nn.functional.sigmoid", "torch.round"})
GRADIENT_FUNCTIONS = frozenset({"torch.autograd.grad", "torch.autograd.backward"})
# What draws the autograd graph an output carries (torchviz): the graph is the point, whatever the mode.
GRAPH_READERS = frozenset({"torchviz.make_dot", "torchviz.make_dot_from_trace", "torchviz.dot.make_dot"})
# What takes a dataset: a value handed to one was built as a dataset, not computed by a model.
DATASET_CONSUMERS = frozenset({"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader",
                               "torch.utils.data.Subset", "torch.utils.data.ConcatDataset",
                               "torch.utils.data.random_split"})


def in_place(method: str | None) -> bool:
    """A tensor's in-place method (`add_`, `index_add_`, `copy_`, `masked_fill_`)."""
    return method is not None and method.endswith("_") and not method.startswith("_")


def storage_owner(expr: cst.BaseExpression) -> cst.BaseExpression:
    """`m.view(-1)`, `m[idx]`, `m.t()`: the tensor whose storage an in-place op on it writes (`m`)."""
    while True:
        if type(expr) is cst.Subscript:
            expr = expr.value
        elif type(expr) is cst.Call and type(expr.func) is cst.Attribute and expr.func.attr.value in VIEW_METHODS:
            expr = expr.func.value
        else:
            return expr
