"""What the Transformer computes and stores: operations and bytes, block by block.

Each of its layers is priced here from the counting package's one cost model
(:mod:`book.counting.closed_forms`), as its module's ``forward`` computes it, and each price
is used twice: by the counters of :data:`COUNTERS` (``count_ops(model, inputs,
counters=COUNTERS)``, which without them refuses the Transformer's layers) and by
:func:`closed_form_counts`, which adds them up from the lengths ``S`` and ``T`` (ints, or sympy
symbols for the polynomials). ``bias=True`` adds one addition per output of a biased layer
(and LayerNorm's beta); activations (ReLU) count zero.
"""

from __future__ import annotations

import math
import weakref

import pandas as pd
import torch

from book.counting.closed_forms import dot_products, plus, reduction, softmax_counts
from book.counting.counter import OP_KINDS
from book.transformer import layers
from book.transformer.model import Transformer, TransformerConfig

__all__ = [
    "BLOCKS", "COUNTERS", "activation_bytes", "block_of", "closed_form_counts",
    "count_layer_norm", "layer_norm_cost", "parameter_bytes", "saved_tensor_bytes",
    "scores_cost", "softmax_cost", "sum_counts",
]

BLOCKS = ("embeddings", "masks", "encoder.self_attn", "encoder.add_norm1", "encoder.ffn",
          "encoder.add_norm2", "encoder_norm", "decoder.self_attn", "decoder.add_norm1",
          "decoder.cross_attn", "decoder.add_norm2", "decoder.ffn", "decoder.add_norm3",
          "decoder_norm", "generator")


# --- the cost of each of its layers -----------------------------------------------------------

def scores_cost(heads_rows, lk, d_k, q_size, k_size, *, centred: bool = False,
                masked: bool = False) -> dict:
    """:class:`~book.transformer.layers.Scores`: ``heads_rows`` rows of ``lk`` dot products of
    length ``d_k``, and the largest magnitudes of ``q`` and ``k`` (maxima over their
    ``q_size`` and ``k_size`` elements) that choose the scale. ``centred`` (the dtypes of
    :data:`~book.transformer.layers.CENTRED`: float16): also the mask added to the rounded
    scores (when ``masked``), each row's largest score and its guard for a fully masked row,
    and the second, centred product, whose running sum starts at ``-m``: one addition more per
    score than a plain dot product."""
    cost = plus(dot_products(heads_rows * lk, d_k), reduction("comparisons", 1, q_size),
                reduction("comparisons", 1, k_size))
    if not centred:
        return cost
    return plus(cost, dot_products(heads_rows * lk, d_k, bias=True),
                reduction("comparisons", heads_rows, lk), {"comparisons": heads_rows},
                {"adds": heads_rows * lk if masked else 0})


def softmax_cost(rows, n) -> dict:
    """:class:`~book.transformer.layers.Softmax` over ``rows`` rows of ``n`` scores: the book's
    softmax, guarded by two comparisons per row (the maximum with ``-inf``, the sum with 0)."""
    return softmax_counts(rows, n, guards=2)


def layer_norm_cost(rows, d, bias: bool) -> dict:
    """:class:`~book.transformer.layers.LayerNorm` over ``rows`` rows of ``d`` entries, step by
    step as the comments of its ``forward`` itemise; beta's ``d`` additions only with
    ``bias``."""
    maximum = reduction("comparisons", rows, d)  # max|x|, then max|x - mu|
    mean = reduction("adds", rows, d, mean=True)  # of the scaled row, then of its squares
    return plus(
        maximum, {"comparisons": rows}, {"mults": rows * d},  # exponent clamped; x * 2**-e
        mean, {"adds": rows * d},  # mu; xc = xs - mu
        maximum, {"mults": rows, "comparisons": rows},  # c = sqrt(eps) * p; maximum(s, c)
        {"divs": rows * d}, {"mults": rows * d}, mean,  # u = xc / m; var = mean(u * u)
        {"divs": rows, "mults": 2 * rows, "adds": rows, "sqrts": rows},  # r; std
        {"divs": rows * d, "mults": rows * d, "adds": rows * d if bias else 0},  # addcmul
    )


# --- counters for count_ops: the shapes one call saw, for the whole batch ---------------------

def count_additions(module, inputs, output, *, bias, pooling):
    """One addition per output element: positions, residuals, masks added to scores."""
    return {"adds": output.numel()}


def count_scale(module, inputs, output, *, bias, pooling):
    return {"mults": output.numel()}


def count_linear(module, inputs, output, *, bias, pooling):
    """A dot product of length ``in_features`` per output, and the bias when counted."""
    return dot_products(output.numel(), module.in_features,
                        bias=bias and module.bias is not None)


def count_matmul(module, inputs, output, *, bias, pooling):
    """Each output element is a dot product of length K, the inner size of the product."""
    return dot_products(output.numel(), inputs[0].shape[-1])


def count_scores(module, inputs, output, *, bias, pooling):
    """As :func:`scores_cost`, from the shapes of one call; scaled down by ``2**shift``, one
    multiplication per q more."""
    (q, k), (scores, shift) = inputs[:2], output
    n = scores.shape[-1]
    cost = scores_cost(scores.numel() // n, n, q.shape[-1], q.numel(), k.numel(),
                       centred=q.dtype in layers.CENTRED, masked=len(inputs) > 2)
    cost["mults"] += q.numel() if shift else 0
    return cost


def count_softmax(module, inputs, output, *, bias, pooling):
    """As :func:`softmax_cost`; with a ``shift``, one multiplication per score more."""
    n = output.shape[-1]
    cost = softmax_cost(output.numel() // n, n)
    if len(inputs) > 1 and inputs[1]:
        cost["mults"] = output.numel()
    return cost


def count_layer_norm(module, inputs, output, *, bias, pooling):
    d = output.shape[-1]
    return layer_norm_cost(output.numel() // d, d, bias)


def count_padding_mask(module, inputs, output, *, bias, pooling):
    """One comparison with the padding id per token."""
    return {"comparisons": inputs[0].numel()}


def count_lookup(module, inputs, output, *, bias, pooling):
    """A table lookup: no arithmetic (checking that the ids are in range is not counted)."""
    return {}


COUNTERS = {
    layers.PositionalEncoding: count_additions, layers.Add: count_additions,
    layers.ApplyMask: count_additions, layers.CausalMask: count_additions,
    layers.Scale: count_scale, layers.Linear: count_linear, layers.MatMul: count_matmul,
    layers.Scores: count_scores, layers.Softmax: count_softmax,
    layers.LayerNorm: count_layer_norm, layers.KeyPaddingMask: count_padding_mask,
    layers.TokenEmbedding: count_lookup,
}
"""The Transformer's layers, each counted as one unit: ``count_ops(model, inputs,
counters=COUNTERS)``."""


# --- blocks and closed forms ------------------------------------------------------------------

def block_of(name: str) -> str:
    """The block of :data:`BLOCKS` a module (or parameter) belongs to, from its qualified name:
    ``encoder.self_attn.q_proj`` -> ``encoder.self_attn``; embeddings and positions ->
    ``embeddings``; the three mask builders -> ``masks``."""
    parts = name.split(".")
    if parts[0] in ("src_embed", "tgt_embed", "pos"):
        return "embeddings"
    if parts[0] in ("src_pad", "tgt_pad", "causal"):
        return "masks"
    if parts[0] in ("encoder", "decoder") and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def sum_counts(*parts: dict) -> dict:
    """The counts of ``parts`` added up, kind by kind, with every kind present (0 if none)."""
    return plus(dict.fromkeys((*OP_KINDS, "activations"), 0), *parts)


def closed_form_counts(S, T, config: TransformerConfig, *,
                       bias: bool = False) -> dict[str, dict[str, object]]:
    """Operations and activation elements of one forward pass (batch 1), block by block.

    ``S`` and ``T`` (source and target lengths) may be ints or sympy symbols. Returns
    ``{block: {kind: count}}`` for the :data:`BLOCKS`, with the kinds of
    ``book.counting.counter.OP_KINDS`` plus ``activations`` (elements of every module output),
    each operation priced by the functions the counters use. Every attention block is given a
    mask; in float16 the scores are centred (:func:`scores_cost`); the scale is assumed 1 (no
    ``2**-shift``: inputs of ordinary size).
    """
    D, h, F, V, dk = config.d_model, config.n_heads, config.d_ff, config.tgt_vocab, config.d_k

    def module(elements, cost=None) -> dict:  # one module: its cost and its output's size
        return sum_counts(cost or {}, {"activations": elements})

    def linear(n, fan_in, fan_out) -> dict:
        return module(n * fan_out, dot_products(n * fan_out, fan_in, bias=bias))

    centred = config.dtype in layers.CENTRED  # float16: 1/sqrt(d_k) after the product

    def attention(lq, lk) -> dict:
        scores = h * lq * lk
        scaled = scores if centred else lq * D  # what 1/sqrt(d_k) multiplies
        return sum_counts(
            linear(lq, D, D), linear(lk, D, D), linear(lk, D, D),  # Q, K, V projections
            module(scaled, {"mults": scaled}),  # Q / sqrt(d_k), or the centred scores
            module(scores, scores_cost(h * lq, lk, dk, lq * D, lk * D, centred=centred,
                                       masked=True)),  # Q K^T, at scale 1
            module(scores, {"adds": scores}),  # + M
            module(scores, softmax_cost(h * lq, lk)),
            module(lq * D, dot_products(h * lq * dk, lk)),  # P V
            linear(lq, D, D))  # W^O

    def norm(n) -> dict:
        return module(n * D, layer_norm_cost(n, D, bias))

    def add_norm(n) -> dict:
        return sum_counts(module(n * D, {"adds": n * D}), norm(n))

    def ffn(n) -> dict:  # ReLU: a comparison with zero, not counted
        return sum_counts(linear(n, D, F), module(n * F), linear(n, F, D))

    return {
        "embeddings": sum_counts(module(S * D), module(T * D),  # lookups, then + PE
                                 module(S * D, {"adds": S * D}), module(T * D, {"adds": T * D})),
        "masks": sum_counts(module(S, {"comparisons": S}), module(T, {"comparisons": T}),
                            module(T * T, {"adds": T * T})),  # token == PAD; causal + padding
        "encoder.self_attn": attention(S, S),
        "encoder.add_norm1": add_norm(S),
        "encoder.ffn": ffn(S),
        "encoder.add_norm2": add_norm(S),
        "encoder_norm": norm(S),
        "decoder.self_attn": attention(T, T),
        "decoder.add_norm1": add_norm(T),
        "decoder.cross_attn": attention(T, S),
        "decoder.add_norm2": add_norm(T),
        "decoder.ffn": ffn(T),
        "decoder.add_norm3": add_norm(T),
        "decoder_norm": norm(T),
        "generator": linear(T, D, V),
    }


# --- memory -----------------------------------------------------------------------------------

def _with_bytes(counts: pd.Series, column: str, dtype: torch.dtype) -> pd.DataFrame:
    """``counts`` per block in :data:`BLOCKS` order, a ``total`` row, and their bytes."""
    df = pd.DataFrame({column: counts}).reindex([b for b in BLOCKS if b in counts.index])
    df.loc["total"] = df[column].sum()
    df["bytes"] = df[column] * dtype.itemsize
    df.index.name = "block"
    return df


def parameter_bytes(model: Transformer) -> pd.DataFrame:
    """Parameters per block and their memory in the model's dtype, with a ``total`` row."""
    names, sizes = zip(*((n, p.numel()) for n, p in model.named_parameters()), strict=True)
    counts = pd.Series(sizes, index=names).groupby(lambda n: block_of(n.rsplit(".", 1)[0]))
    return _with_bytes(counts.sum(), "parameters", model.dtype)


def activation_bytes(table: pd.DataFrame, dtype: torch.dtype) -> pd.DataFrame:
    """Elements and bytes of the module outputs in a ``count_ops`` table, per block: what one
    forward pass writes, each output counted once. Not what training keeps: autograd saves
    some of these and some tensors inside the modules (:func:`saved_tensor_bytes`)."""
    elements = table["output_shape"].map(math.prod).groupby(table["layer"].map(block_of))
    return _with_bytes(elements.sum(), "activations", dtype)


class _Saved:
    """What autograd holds in place of a tensor it saves, while its graph node lives."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def saved_tensor_bytes(model: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> pd.Series:
    """What autograd keeps for the backward pass of ``model(src, tgt)``, measured.

    One forward pass with gradients on, under ``torch.autograd.graph.saved_tensors_hooks``;
    the tensors still held by the graph of the output when the pass ends (not those of
    branches the result does not depend on) are counted by the span of memory they reach in
    their storage, so views of one tensor count once and a view of a larger tensor (a row of
    a batch) counts only its part; the parameters (which training keeps anyway) are left out.
    Returns the bytes per dtype (``float16``, ``int64`` for the token ids the embeddings
    keep, ...) and their ``total``.
    """
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held: weakref.WeakSet[_Saved] = weakref.WeakSet()

    def pack(t: torch.Tensor) -> _Saved:
        saved = _Saved(t)
        held.add(saved)
        return saved

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s.tensor):
        out = model(src, tgt)  # noqa: F841 -- keeps the graph, and what it holds, alive
    spans: dict[int, tuple[str, int, int]] = {}  # storage -> (dtype, first byte, end)
    for t in (saved.tensor for saved in held):
        key = t.untyped_storage().data_ptr()
        if key in parameters or not t.numel():
            continue
        size = t.element_size()
        start = t.storage_offset() * size
        end = start + size * (1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(),
                                                                   strict=True)))
        _, lo, hi = spans.get(key, ("", start, end))
        spans[key] = (str(t.dtype).removeprefix("torch."), min(lo, start), max(hi, end))
    table = pd.DataFrame([(dtype, end - start) for dtype, start, end in spans.values()],
                         columns=["dtype", "bytes"]).groupby("dtype")["bytes"].sum()
    table.loc["total"] = table.sum()
    return table
