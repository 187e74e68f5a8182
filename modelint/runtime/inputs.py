"""Child side: inputs to try on a module, most likely first (runs only in the probe child).

From the file's `# modelint: probe-input` hint; then from the first layers that can take the
input (Linear, Conv1d/2d/3d, Embedding, RNN with or without batch_first, BatchNorm, LayerNorm,
Transformer layers), found depth-first through project modules, several shapes each; then a few
plain shapes. `forward`'s signature adds what the other required parameters need: LongTensor
indices where it is annotated so or the model embeds tokens, `edge_index`/`adj` for graph
layers, masks, lengths, a target sequence like the source.
"""

from __future__ import annotations

import inspect
import re

MAX_LAYERS = 4


def _required(forward) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _wants_indices(torch, param: inspect.Parameter | None) -> bool:
    if param is None:
        return False
    annotation = param.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text in ("LongTensor", "IntTensor") or annotation in (torch.LongTensor, torch.IntTensor) or \
        bool(re.search(r"ids$|^idx|indices|tokens?$|^src$|^words?$|^sentences?$|^text$", param.name.lower()))


def _extra(torch, param: inspect.Parameter, first, device, labels: int | None = None, scale: int = 1):
    """A value for a further required parameter of forward, given the first input (a tensor like it,
    `scale` times larger in its spatial dimensions: a U-Net's skip connection)."""
    name = param.name.lower()
    rows = first.shape[0] if first.dim() else 1
    if name == "offsets":  # EmbeddingBag: one bag per pair of indices
        return torch.arange(0, max(first.numel(), 1), 2, device=device)
    if labels is not None and re.search(r"^y$|label|class|^cond|^c$|target_class", name):
        return torch.randint(0, labels, (rows,), device=device)
    if "edge_index" in name:
        return torch.randint(0, rows, (2, 2 * rows), device=device)
    if name in ("adj", "adjacency", "a", "adj_matrix", "graph"):
        return torch.ones(rows, rows, device=device)
    if "mask" in name:
        return torch.ones(first.shape[:2] if first.dim() > 1 else first.shape, dtype=torch.bool, device=device)
    if "length" in name or name in ("lens", "seq_lens"):
        return torch.full((rows,), first.shape[1] if first.dim() > 1 else 1, dtype=torch.long, device="cpu")
    if name in ("hidden", "hx", "h0", "state", "states", "memory", "cache", "past"):
        return None
    if "ratio" in name or "teacher" in name:
        return 0.0
    if scale != 1 and first.dim() >= 3 and first.is_floating_point():
        return torch.randn(*first.shape[:2], *[d * scale for d in first.shape[2:]], device=device)
    return first.clone()


def _feature_list(torch, target, batch: int):
    """Shapes for a `forward(self, features)` that takes one map per level (an FPN neck): the first
    container of convolutions, one input per convolution, each level half the size of the one before."""
    nn = torch.nn
    containers = [*target._modules.values(), *(v for v in vars(target).values() if isinstance(v, (list, tuple)))]
    for value in containers:
        items = list(value) if isinstance(value, (list, tuple, nn.ModuleList)) else []
        if len(items) > 1 and all(isinstance(item, nn.modules.conv._ConvNd) for item in items):
            dims = len(items[0].kernel_size)
            return [(batch, item.in_channels, *([max(32 >> level, 1)] * dims)) for level, item in enumerate(items)]
    return None


def _layer_shapes(torch, layer, batch: int):
    """(shapes, dtype, high) for a layer that can take the model's input, or None."""
    nn = torch.nn
    if isinstance(layer, nn.Linear):
        return [(batch, layer.in_features), (batch, 8, layer.in_features)], None, None
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):  # a generator's latent code: (B, nz, 1, 1)
        dims = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}.get(type(layer), 2)
        return [(batch, layer.in_channels, *([n] * dims)) for n in (1, 4, 8)], None, None
    if isinstance(layer, nn.Conv1d):
        return [(batch, layer.in_channels, n) for n in (32, 64, 128, 16)], None, None
    if isinstance(layer, nn.Conv2d):
        return [(batch, layer.in_channels, n, n) for n in (32, 28, 64, 224, 299)], None, None  # 299: Inception
    if isinstance(layer, nn.Conv3d):
        return [(batch, layer.in_channels, n, n, n) for n in (8, 16, 32)], None, None
    if isinstance(layer, (nn.Embedding, nn.EmbeddingBag)):
        return [(batch, 16), (16, batch), (batch,)], torch.long, layer.num_embeddings
    if isinstance(layer, nn.modules.rnn.RNNBase):
        first = (batch, 12, layer.input_size) if layer.batch_first else (12, batch, layer.input_size)
        second = (12, batch, layer.input_size) if layer.batch_first else (batch, 12, layer.input_size)
        return [first, second], None, None
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        n = layer.num_features
        return {nn.BatchNorm1d: [(batch, n), (batch, n, 16)], nn.BatchNorm2d: [(batch, n, 16, 16)],
                nn.BatchNorm3d: [(batch, n, 8, 8, 8)]}.get(type(layer), [(batch, n)]), None, None
    if isinstance(layer, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        d = layer.self_attn.embed_dim
        return ([(batch, 10, d)] if layer.self_attn.batch_first else [(10, batch, d)]), None, None
    if isinstance(layer, nn.MultiheadAttention):
        return ([(batch, 10, layer.embed_dim)] if layer.batch_first else [(10, batch, layer.embed_dim)]), None, None
    if isinstance(layer, nn.LayerNorm):
        return [(batch, *layer.normalized_shape), (batch, 8, *layer.normalized_shape)], None, None
    return None


def input_candidates(torch, target, device, hint: str | None, every_module, evaluate, seed, batch: int = 4,
                     namespace: dict | None = None):
    """(label, value) pairs; value None where the candidate itself failed (label says why)."""
    nn = torch.nn
    if hint:
        try:
            seed(torch, 1)
            with torch.device(device):
                value = evaluate(hint, {**(namespace or {}), "torch": torch, "nn": nn})
            yield f"hint {hint}", value
        except Exception as error:  # noqa: BLE001
            yield f"hint {hint} failed: {type(error).__name__}: {error}"[:200], None
    required = _required(target.forward)
    first_param = required[0] if required else None
    embeddings = [m.num_embeddings for m in every_module(torch, target) if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    if first_param is not None and "edge_index" in first_param.name.lower():
        # A graph model over its own node embeddings (LightGCN): the input is the graph itself.
        nodes = min(embeddings) if embeddings else 8
        seed(torch, 1)
        edges = torch.randint(0, nodes, (2, 4 * nodes), device=device)
        yield f"edge_index over {nodes} nodes", (edges,) if len(required) == 1 else \
            (edges, *(_extra(torch, p, edges, device) for p in required[1:]))
    plans = []
    for layer in every_module(torch, target):
        found = _layer_shapes(torch, layer, batch)
        if found is not None:
            plans.append((type(layer).__name__, *found))
        if len(plans) >= MAX_LAYERS:
            break
    if embeddings and _wants_indices(torch, first_param) and not any(p[2] is torch.long for p in plans[:1]):
        plans.insert(0, ("Embedding", [(batch, 16), (16, batch)], torch.long, min(embeddings)))
    elif len(required) > 1 and not _wants_indices(torch, first_param):
        # `forward(x, y)` with an Embedding for y: the tensor layers say what x is.
        plans.sort(key=lambda plan: plan[2] is torch.long)
    plans.append(("no layer", [(batch, 16), (batch, 3, 32, 32), (batch, 8, 16)], None, None))
    levels = _feature_list(torch, target, batch) if first_param is not None and re.search(
        r"features|feats|inputs|^xs$|maps|levels|pyramid|_list$", first_param.name.lower()) else None
    if levels:
        seed(torch, 1)
        yield f"a list of {len(levels)} feature maps", [torch.randn(*shape, device=device) for shape in levels]
    seen = set()
    for name, shapes, dtype, high in plans:
        for shape in shapes:
            if (shape, dtype) in seen:
                continue
            seen.add((shape, dtype))
            seed(torch, 1)
            if dtype is torch.long:
                value = torch.randint(0, high, shape, device=device)
            else:
                value = torch.randn(*shape, device=device)
            label = f"{name} -> {tuple(shape)}" if name != "no layer" else f"a plain tensor {tuple(shape)}"
            if len(required) > 1:
                names = ", ".join(p.name for p in required[1:])
                for scale in (1, 2):
                    extras = tuple(_extra(torch, p, value, device, min(embeddings) if embeddings else None, scale)
                                   for p in required[1:])
                    yield f"{label} with {names}" + (" (twice its size)" if scale == 2 else ""), (value, *extras)
            else:
                yield label, value
