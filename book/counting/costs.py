"""What each aten operator costs: the table :func:`book.counting.counter.count_ops` reads.

PyTorch runs every network, however its ``forward`` is written, as a sequence of aten
operators. Each one is either **zero-cost** (:data:`ZERO_COST`: it moves, copies, selects or
creates data), **costed** (:data:`COSTS`: a function of its arguments and output returning its
counts split by category, :data:`~book.counting.closed_forms.CATEGORIES`), or **unknown**, and
then ``count_ops`` refuses it. A write whose arithmetic depends on its arguments (``index_put``
with ``accumulate=True``, ``index_add``, ``scatter`` with a ``reduce``, ...) is costed, by
the values it adds.

Every price comes from the one cost model, :mod:`book.counting.closed_forms`, whose
docstrings state the conventions (the softmax's included). Beyond them:

- a convolution's padded positions count like any other.
- a bias addition (category ``bias``) is that of a convolution's bias or an addition of a bias
  parameter: one whose name ends in ``bias`` or starts with ``bias_`` (``nn.RNN``'s
  ``bias_ih_l0``, ``nn.MultiheadAttention``'s ``in_proj_bias``).
- elementwise operators and activations count their arithmetic per output (``exps`` counts
  exp, erf and tanh alike; ``pow`` only for the exponents it is a product, root or division
  for); a comparison with a constant (ReLU, ReLU6, hardtanh, clamp) counts zero, as the book
  counts ReLU, a comparison of two tensors one per output; an embedding is a lookup, free.
- an adaptive average pool to 1 x 1 runs as ``mean``: inside an ``nn.AdaptiveAvgPool*``
  module it is that pooling layer; called as a function in a ``forward`` it is a reduction.
- attention is counted as PyTorch's reference implementation computes it, fused kernel or
  not, so that a fused call and the operators it replaces count the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from book.counting.closed_forms import (
    ACTIVATION,
    BIAS,
    ELEMENTWISE,
    NORM,
    POOLING,
    PRODUCTS,
    REDUCTION,
    SOFTMAX,
    Parts,
    Uncountable,
    adaptive_windows,
    attention_cost,
    dot_products,
    norm_counts,
    plus,
    pool_counts,
    pool_windows,
    reduction,
    softmax_counts,
)

__all__ = ["COSTS", "ZERO_COST", "Uncountable", "convolution_cost", "matmul_cost"]

Cost = Callable[[dict, object, object], Parts]  # (named arguments, output, context) -> parts


# Operators that do no arithmetic on data: views, copies, selection, indexing, factories.
ZERO_COST = frozenset("""
    _reshape_alias _to_copy _unsafe_view alias as_strided cat clone constant_pad_nd copy
    detach diagonal expand flip gather index index_select narrow permute repeat repeat_interleave
    roll select slice split split_with_sizes squeeze stack t transpose unbind unfold
    unsqueeze view channel_shuffle pixel_shuffle pixel_unshuffle reflection_pad1d
    reflection_pad2d replication_pad1d replication_pad2d upsample_nearest1d
    upsample_nearest2d upsample_nearest3d masked_fill where tril triu _local_scalar_dense
    arange empty empty_like empty_strided fill full full_like lift_fresh lift_fresh_copy
    new_empty new_empty_strided new_full new_ones new_zeros ones ones_like scalar_tensor zero
    zeros zeros_like
""".split())


# --------------------------------------------------------------------------- aten: products

def _first(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _merge(*parts: Parts) -> Parts:
    """The parts added up, category by category (:func:`plus` within each)."""
    categories = dict.fromkeys(category for p in parts for category in p)
    return {c: plus(*(p[c] for p in parts if c in p)) for c in categories}


def convolution_cost(a: dict, out, ctx) -> Parts:
    """``aten.convolution``: every output element is a dot product of length
    ``C_in/groups * K_h * K_w`` (the weight's size without its first dimension), plus the bias
    addition when the layer has one."""
    if a.get("transposed"):
        raise Uncountable("a transposed convolution is not counted")
    n = out.numel()  # N * C_out * (output positions)
    parts = {PRODUCTS: dot_products(n, math.prod(a["weight"].shape[1:]))}  # (opc-conv)
    if a.get("bias") is not None:
        parts[BIAS] = {"adds": n}
    return parts


def matmul_cost(first: str, added: str | None = None) -> Cost:
    """``mm``, ``bmm``, ``mv`` and their ``add`` forms (``addmm(self, mat1, mat2)``: ``beta *
    self + alpha * mat1 @ mat2``): a dot product of the inner size per output; the added term
    is a bias when it is a bias parameter (``nn.Linear`` runs ``addmm(bias, x, W^T)``)."""

    def cost(a: dict, out, ctx) -> Parts:
        n = out.numel()
        parts = {PRODUCTS: dot_products(n, a[first].shape[-1])}
        if a.get("alpha", 1) != 1:
            parts = _merge(parts, {ELEMENTWISE: {"mults": n}})
        if added is not None and a.get("beta", 1) != 0:
            parts = _merge(parts, {BIAS if ctx.is_bias(a[added]) else ELEMENTWISE: {"adds": n}})
            if a.get("beta", 1) != 1:
                parts = _merge(parts, {ELEMENTWISE: {"mults": n}})
        return parts

    return cost


def _dot(a: dict, out, ctx) -> Parts:  # dot, vdot: one dot product of the vectors' length
    return {PRODUCTS: dot_products(1, a["self"].numel())}


# --------------------------------------------------------------------------- aten: attention

def _sdpa(mask_arg: str) -> Cost:
    """The fused scaled-dot-product attention kernels: ``query [..., Lq, E]``, ``key
    [..., Lk, E]``, ``value [..., Lk, Ev]``."""

    def cost(a: dict, out, ctx) -> Parts:
        if a.get("dropout_p", 0.0):
            raise Uncountable("attention with dropout is not counted (count_ops counts "
                              "inference)")
        q, k, v = a["query"], a["key"], a["value"]
        masked = a.get(mask_arg) is not None or bool(a.get("is_causal", False))
        return attention_cost(math.prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1],
                              v.shape[-1], mask=masked)

    return cost


def _native_mha(a: dict, out, ctx) -> Parts:
    """``nn.MultiheadAttention``'s fused inference path, counted as its unfused path computes
    it: the three input projections, the attention of ``num_head`` heads (with
    ``need_weights``, ``Q`` scaled once, a plain softmax, and the weights averaged over the
    heads), the output projection."""
    q, k, e, heads = a["query"], a["key"], a["embed_dim"], a["num_head"]
    b, lq, lk, d = q.shape[0], q.shape[1], k.shape[1], e // heads  # query: (B, Lq, E)

    def projection(rows: int) -> Parts:
        return {PRODUCTS: dot_products(rows * e, e), BIAS: {"adds": rows * e}}

    weights = a.get("need_weights", True)
    attention = attention_cost(b * heads, lq, lk, d, d, mask=a.get("mask") is not None,
                               weights=weights)
    if weights and a.get("average_attn_weights", True):
        attention[REDUCTION] = {"adds": b * lq * lk * (heads - 1), "divs": b * lq * lk}
    return _merge(projection(b * lq), projection(b * lk), projection(b * lk), attention,
                  projection(b * lq))


# --------------------------------------------------------------------------- aten: normalisation

def _norm(a: dict, out, ctx) -> Parts:
    """``native_layer_norm`` (a group per row of ``normalized_shape``) and
    ``native_group_norm`` (``N * group`` groups)."""
    x = a["input"]
    if "normalized_shape" in a:
        d = math.prod(a["normalized_shape"])
        groups = x.numel() // d
    else:
        groups = a["N"] * a["group"]
        d = x.numel() // groups
    return norm_counts(groups, d, x.numel(), weight=a.get("weight") is not None,
                       bias=a.get("bias") is not None)


def _batch_norm(a: dict, out, ctx) -> Parts:
    """Inference with stored statistics: per channel ``+ eps``, a square root and a
    reciprocal; per value ``(x - mean) * (1/sigma) * gamma + beta``."""
    if a.get("training", False) or a.get("running_mean") is None:
        raise Uncountable("batch norm with batch statistics is not counted (count_ops counts "
                          "inference, with the running statistics)")
    x = a["input"]
    n, c = x.numel(), x.shape[1] if x.dim() > 1 else x.shape[0]
    weight = a.get("weight") is not None
    parts = {NORM: {"adds": n + c, "sqrts": c, "divs": c, "mults": n * (2 if weight else 1)}}
    if a.get("bias") is not None:
        parts[BIAS] = {"adds": n}
    return parts


# --------------------------------------------------------------------------- aten: elementwise

def _additions(a: dict, out, ctx) -> Parts:
    """``add``, ``sub``, ``rsub``: one addition per output (``alpha != 1``: one
    multiplication more); a bias parameter's additions are ``bias``."""
    n = out.numel()
    biased = ctx.is_bias(a["self"]) or ctx.is_bias(a.get("other"))
    parts = {BIAS if biased else ELEMENTWISE: {"adds": n}}
    if a.get("alpha", 1) != 1:
        parts = _merge(parts, {ELEMENTWISE: {"mults": n}})
    return parts


def _per_element(category: str, **counts: int) -> Cost:
    def cost(a: dict, out, ctx) -> Parts:
        n = _first(out).numel()
        return {category: {kind: k * n for kind, k in counts.items()}}

    return cost


def _clamp(a: dict, out, ctx) -> Parts:
    """A comparison with a constant bound is free (ReLU); with a tensor bound it is
    ``maximum``/``minimum``: one comparison per output and tensor bound."""
    tensors = sum(isinstance(a.get(bound), torch.Tensor) for bound in ("min", "max"))
    if not tensors:
        return {ACTIVATION: {}}
    return {ELEMENTWISE: {"comparisons": tensors * out.numel()}}


def _gelu(a: dict, out, ctx) -> Parts:
    """``x/2 (1 + erf(x/sqrt 2))``; the tanh form ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715
    x^3)))`` costs six multiplications, two additions and one tanh."""
    n = out.numel()
    if a.get("approximate", "none") == "tanh":
        return {ACTIVATION: {"mults": 6 * n, "adds": 2 * n, "exps": n}}
    return {ACTIVATION: {"mults": 3 * n, "adds": n, "exps": n}}


_POWERS = {2: {"mults": 1}, 3: {"mults": 2}, 0.5: {"sqrts": 1}, -1: {"divs": 1},
           -0.5: {"sqrts": 1, "divs": 1}}


def _pow(a: dict, out, ctx) -> Parts:
    exponent = a.get("exponent")
    if isinstance(exponent, torch.Tensor) or exponent not in _POWERS:
        raise Uncountable(f"pow with exponent {exponent!r} is not counted")
    return {ELEMENTWISE: {kind: k * out.numel() for kind, k in _POWERS[exponent].items()}}


def _addcmul(kind: str) -> Cost:  # self + value * t1 (* or /) t2
    def cost(a: dict, out, ctx) -> Parts:
        n = out.numel()
        counts = {kind: n, "adds": n}
        if a.get("value", 1) != 1:
            counts["mults"] = counts.get("mults", 0) + n
        return {ELEMENTWISE: counts}

    return cost


# --------------------------------------------------------------------------- aten: reductions

_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


def _reduction(kind: str, *, mean: bool = False) -> Cost:
    """A reduction of ``m`` values to each output: ``m - 1`` of ``kind``; ``mean`` one
    division more. With a second tensor (``max(a, b)``) it is elementwise instead."""

    def cost(a: dict, out, ctx) -> Parts:
        x, o = a["self"], _first(out)
        if isinstance(a.get("other"), torch.Tensor):
            return {ELEMENTWISE: {kind: o.numel()}}
        m = x.numel() // max(o.numel(), 1)
        if mean and isinstance(ctx.module, _ADAPTIVE_AVG):  # a global pool run as a mean
            return {POOLING: pool_counts("avg", x.numel(), o.numel())}
        return {REDUCTION: reduction(kind, o.numel(), m, mean=mean)}

    return cost


def _vector_norm(a: dict, out, ctx) -> Parts:
    """The Euclidean norm of ``m`` values per output (``F.normalize``, SwinV2's cosine
    attention): ``m`` squares, a sum of them, a square root; other orders are refused."""
    if a.get("ord", 2) != 2:
        raise Uncountable(f"a vector norm of ord={a['ord']!r} is not counted (only ord=2)")
    x, o = a["self"], _first(out)
    counts = plus({"mults": x.numel()}, reduction("adds", o.numel(), x.numel() // o.numel()))
    return {REDUCTION: plus(counts, {"sqrts": o.numel()})}


def _softmax(*, log: bool = False, guarded: bool = False) -> Cost:
    def cost(a: dict, out, ctx) -> Parts:
        x = a["self"]
        n = x.shape[a["dim"]] if x.dim() else 1
        rows = x.numel() // max(n, 1)
        counts = softmax_counts(rows, n, guards=n if guarded else 0)
        if log:  # log(sum) once per row, then x - max - log(sum): no divisions
            counts = {"comparisons": counts["comparisons"], "adds": rows * (3 * n - 1),
                      "exps": rows * (n + 1)}
        return {SOFTMAX: counts}

    return cost


# --------------------------------------------------------------------------- aten: pooling

def _ints(value, dims: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return values * dims if len(values) == 1 else values


def _pool(dims: int, mode: str) -> Cost:
    """Fixed (``kernel_size`` in the arguments) or adaptive pooling over ``dims`` dims."""

    def cost(a: dict, out, ctx) -> Parts:
        x, o = a["self"], _first(out)
        sizes = zip(x.shape[-dims:], o.shape[-dims:], strict=True)
        if "kernel_size" in a:
            k = _ints(a["kernel_size"], dims)
            s = _ints(a.get("stride") or k, dims)
            p, d = _ints(a.get("padding", 0), dims), _ints(a.get("dilation", 1), dims)
            windows = math.prod(pool_windows(n, m, *axis) for (n, m), *axis in zip(
                sizes, k, s, p, d, strict=True))
        else:
            windows = math.prod(adaptive_windows(n, m) for n, m in sizes)
        planes = o.numel() // math.prod(o.shape[-dims:])  # N * C
        counts = pool_counts(mode, planes * windows, o.numel())
        return {POOLING: counts} if counts else {}

    return cost


# --------------------------------------------------------------------------- aten: writes

def _indexed_count(x: torch.Tensor, indices) -> int:
    """How many elements ``x[indices]`` selects: the broadcast size of the index tensors times
    the dimensions they leave whole (a boolean mask selects as many as it holds ``True``)."""
    selected, whole, dims = [], 1, 0
    for index in indices:
        if index is None:
            whole *= x.shape[dims]
            dims += 1
        elif index.dtype in (torch.bool, torch.uint8):
            if index.is_meta:
                raise Uncountable("an accumulating write through a boolean mask is not counted "
                                  "on the meta device (its count depends on the mask's "
                                  "values); count on the CPU")
            selected.append((int(index.sum()),))
            dims += index.dim()
        else:
            selected.append(tuple(index.shape))
            dims += 1
    return math.prod(torch.broadcast_shapes(*selected)) * whole * math.prod(x.shape[dims:])


def _accumulated(count: Callable[[dict], int], flag: str | None = None) -> Cost:
    """A write that adds each value to its target when ``flag`` (an argument) is true, or, with
    no flag, that always adds (``index_add``, ``scatter_add``); ``count(arguments)`` is the
    number of values written. ``index_add``'s ``alpha != 1`` multiplies each value first;
    ``scatter``'s ``reduce="multiply"`` multiplies instead of adding."""

    def cost(a: dict, out, ctx) -> Parts:
        reduce = a.get("reduce")
        if flag is not None and not a.get(flag, False):
            return {}  # a plain write: moves data only
        n = count(a)
        if reduce == "multiply":
            return {ELEMENTWISE: {"mults": n}}
        if reduce not in (None, "add", "sum"):
            raise Uncountable(f"scatter with reduce={reduce!r} is not counted")
        return {ELEMENTWISE: {"adds": n, **({"mults": n} if a.get("alpha", 1) != 1 else {})}}

    return cost


# --------------------------------------------------------------------------- the table

COSTS: dict[str, Cost] = {
    "convolution": convolution_cost, "_convolution": convolution_cost,
    "mm": matmul_cost("self"), "bmm": matmul_cost("self"), "mv": matmul_cost("self"),
    "addmm": matmul_cost("mat1", "self"), "baddbmm": matmul_cost("batch1", "self"),
    "addmv": matmul_cost("mat", "self"), "dot": _dot, "vdot": _dot,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa("attn_mask"),
    "_scaled_dot_product_flash_attention": _sdpa("attn_mask"),
    "_scaled_dot_product_efficient_attention": _sdpa("attn_bias"),
    "_scaled_dot_product_cudnn_attention": _sdpa("attn_bias"),
    "_scaled_dot_product_fused_attention_overrideable": _sdpa("attn_bias"),
    "_native_multi_head_attention": _native_mha,
    "native_layer_norm": _norm, "native_group_norm": _norm,
    "native_batch_norm": _batch_norm, "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm, "cudnn_batch_norm": _batch_norm,
    "add": _additions, "sub": _additions, "rsub": _additions,
    "mul": _per_element(ELEMENTWISE, mults=1), "div": _per_element(ELEMENTWISE, divs=1),
    "reciprocal": _per_element(ELEMENTWISE, divs=1), "exp": _per_element(ELEMENTWISE, exps=1),
    "erf": _per_element(ELEMENTWISE, exps=1),
    "sqrt": _per_element(ELEMENTWISE, sqrts=1),
    "rsqrt": _per_element(ELEMENTWISE, sqrts=1, divs=1),
    "pow": _pow, "addcmul": _addcmul("mults"), "addcdiv": _addcmul("divs"),
    **{op: _per_element(ELEMENTWISE, comparisons=1)
       for op in ("eq", "ne", "lt", "le", "gt", "ge", "maximum", "minimum")},
    **{op: (lambda a, out, ctx: {ACTIVATION: {}}) for op in ("relu", "hardtanh", "threshold")},
    "clamp": _clamp, "clamp_min": _clamp, "clamp_max": _clamp,
    "sigmoid": _per_element(ACTIVATION, exps=1, adds=1, divs=1),
    "silu": _per_element(ACTIVATION, exps=1, adds=1, divs=1),
    "hardsigmoid": _per_element(ACTIVATION, adds=1, divs=1),
    "hardswish": _per_element(ACTIVATION, adds=1, mults=1, divs=1),
    "tanh": _per_element(ACTIVATION, exps=1), "gelu": _gelu,
    "leaky_relu": _per_element(ACTIVATION, mults=1),
    "_prelu_kernel": _per_element(ACTIVATION, mults=1),
    "embedding": lambda a, out, ctx: {},  # a table lookup: known, and no arithmetic
    "index_put": _accumulated(lambda a: _indexed_count(a["self"], a["indices"]), "accumulate"),
    "put": _accumulated(lambda a: a["index"].numel(), "accumulate"),
    "index_add": _accumulated(lambda a: a["source"].numel()),
    "scatter_add": _accumulated(lambda a: a["index"].numel()),
    "scatter": _accumulated(lambda a: a["index"].numel(), "reduce"),
    "sum": _reduction("adds"), "mean": _reduction("adds", mean=True),
    **{op: _reduction("comparisons") for op in ("amax", "amin", "max", "min", "argmax",
                                                "argmin")},
    "linalg_vector_norm": _vector_norm,
    "_softmax": _softmax(), "_safe_softmax": _softmax(guarded=True),
    "_log_softmax": _softmax(log=True),
    "avg_pool1d": _pool(1, "avg"), "avg_pool2d": _pool(2, "avg"), "avg_pool3d": _pool(3, "avg"),
    "max_pool1d": _pool(1, "max"), "max_pool2d": _pool(2, "max"),
    "max_pool1d_with_indices": _pool(1, "max"), "max_pool2d_with_indices": _pool(2, "max"),
    "max_pool3d_with_indices": _pool(3, "max"),
    "_adaptive_avg_pool2d": _pool(2, "avg"), "_adaptive_avg_pool3d": _pool(3, "avg"),
    "adaptive_max_pool2d": _pool(2, "max"), "adaptive_max_pool3d": _pool(3, "max"),
}
