"""What each aten operator costs: the table that :func:`book.counting.counter.count_ops` reads.

PyTorch runs every network, however its ``forward`` is written (modules, ``F.`` calls, ``x +
y``, fused kernels), as a sequence of aten operators. Each operator here is either

- **zero-cost** (:data:`ZERO_COST`): it moves, copies, selects or creates data and does no
  arithmetic on it: views, reshapes, concatenation, padding, indexing, ``where`` and
  ``masked_fill``, factories (``zeros``, ``arange``, ...);
- **costed** (:data:`COSTS`): a function of the operator's arguments and output that returns
  its counts, split by *category* (:data:`CATEGORIES`) so that a table can say what the
  multiplications are: matrix ``products`` (convolutions, linear layers, matrix products,
  attention's two products), ``bias`` additions, ``normalization``, ``elementwise``
  arithmetic (residual additions, gating and scaling products, comparisons), ``activation``,
  ``softmax``, ``reduction`` and ``pooling``;
- or **unknown**, and then it is refused (``count_ops`` raises): an operator this table does
  not list is never counted as zero.

The conventions, per operator (``n`` is the number of output elements):

- a dot product of length ``K``: ``K`` multiplications and ``K - 1`` additions (equation
  opc-conv), so a convolution output costs ``C_in/groups * K_h * K_w`` of each (minus one
  addition) and ``mm``, ``bmm``, ``addmm`` and ``baddbmm`` cost their inner size ``K``;
  padded positions count like any other. A bias adds one addition per output (category
  ``bias``, counted only with ``bias=True``), as does every addition of a parameter whose name
  ends in ``bias`` (a linear layer on a non-contiguous input runs ``mm`` then ``add``).
- elementwise ``add``/``sub``: ``n`` additions; ``mul``: ``n`` multiplications; ``div`` and
  ``reciprocal``: ``n`` divisions; ``sqrt`` ``n`` square roots (``rsqrt`` and a division);
  ``exp`` and ``erf`` ``n`` exponentials; ``pow`` with exponent 2, 3, 1/2, -1 or -1/2 as the
  products, root or division it is (other exponents are refused); comparisons (``eq``, ``gt``,
  ``maximum``, ...): ``n`` comparisons; an embedding is a table lookup and costs nothing.
- activations that only compare with constants (ReLU, ReLU6, hardtanh, clamp) count zero, as
  the book counts ReLU; the others count their arithmetic per element: sigmoid and SiLU
  ``1/(1 + e^-x)`` and ``x/(1 + e^-x)`` one exponential, one addition, one division;
  hardsigmoid ``relu6(x + 3)/6`` one addition and one division; hardswish one addition, one
  multiplication, one division; GELU ``x/2 (1 + erf(x/sqrt 2))`` three multiplications, one
  addition and one erf; leaky ReLU and PReLU one multiplication; ``exps`` counts the
  evaluations of exp, erf and tanh alike.
- softmax over ``L``: per row ``L - 1`` comparisons (the maximum), ``L`` subtractions, ``L``
  exponentials, ``L - 1`` additions and ``L`` divisions; the ``_safe_softmax`` of attention
  also compares each score with ``-inf`` (``L`` comparisons); log-softmax subtracts the log of
  the sum instead of dividing by it.
- a normalisation over groups of ``D`` values (LayerNorm: a row; GroupNorm: a group), per
  group: the mean (``D - 1`` additions, a division), ``D`` subtractions, the variance (``D``
  squares, ``D - 1`` additions, a division), ``+ eps``, a square root and a reciprocal; then
  per value one multiplication by ``1/sigma``, one by ``gamma`` and one addition of ``beta``
  (category ``bias``). BatchNorm at inference uses stored statistics: per channel ``+ eps``,
  a square root and a reciprocal, per value a subtraction of the mean and the same three.
- reductions: a sum of ``m`` values ``m - 1`` additions, a mean one division more, a maximum
  ``m - 1`` comparisons.
- pooling (category ``pooling``, counted only with ``pooling=True``): a window of ``m``
  positions costs ``m - 1`` additions and one multiplication (by the reciprocal of the
  divisor, ``1/m`` without padding) for an average, ``m - 1`` comparisons for a maximum. A
  window holds the positions of the kernel that lie inside the input: PyTorch's pooling
  kernels never read padding, and with ``ceil_mode`` the last window may be partial. An
  average whose windows all hold a single value (an adaptive pool to the input's own size, as
  in AlexNet) is an identity and costs nothing. An
  adaptive average pool to 1 x 1 runs as ``mean``: inside an ``nn.AdaptiveAvgPool*`` module
  it is counted as that pooling layer; called as a function in a ``forward``
  (``F.adaptive_avg_pool2d(x, 1)``) it is a reduction, always counted.
- attention (:func:`attention_cost`) is counted as PyTorch's reference implementation
  computes it, fused kernel or not, so that a fused call and the operators it replaces count
  the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "CATEGORIES", "COSTS", "ZERO_COST", "Uncountable", "attention_cost", "convolution_cost",
    "dot_products", "matmul_cost", "norm_cost", "softmax_counts",
]

PRODUCTS, BIAS, NORM, ELEMENTWISE = "products", "bias", "normalization", "elementwise"
ACTIVATION, SOFTMAX, REDUCTION, POOLING = "activation", "softmax", "reduction", "pooling"
CATEGORIES = (PRODUCTS, BIAS, NORM, ELEMENTWISE, ACTIVATION, SOFTMAX, REDUCTION, POOLING)

Counts = dict[str, int]
Parts = dict[str, Counts]  # category -> counts
Cost = Callable[[dict, object, object], Parts]  # (named arguments, output, context) -> parts


class Uncountable(ValueError):
    """A known operator called in a way this table does not count (a transposed convolution,
    batch statistics, dropout): refused, never counted as zero."""


# Operators that do no arithmetic on data: views, copies, selection, indexing, factories.
ZERO_COST = frozenset("""
    _reshape_alias _to_copy _unsafe_view alias as_strided cat clone constant_pad_nd copy
    detach diagonal expand flip gather index index_put index_select narrow permute repeat
    repeat_interleave
    roll select slice split split_with_sizes squeeze stack t transpose unbind unfold
    unsqueeze view channel_shuffle pixel_shuffle pixel_unshuffle reflection_pad1d
    reflection_pad2d replication_pad1d replication_pad2d upsample_nearest1d
    upsample_nearest2d upsample_nearest3d masked_fill where tril triu _local_scalar_dense
    arange empty empty_like empty_strided fill full full_like lift_fresh lift_fresh_copy
    new_empty new_empty_strided new_full new_ones new_zeros ones ones_like scalar_tensor zero
    zeros zeros_like
""".split())


def _plus(*counts: Counts) -> Counts:
    out: Counts = {}
    for c in counts:
        for kind, n in c.items():
            out[kind] = out.get(kind, 0) + n
    return out


def _first(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def dot_products(count: int, length: int) -> Counts:
    """``count`` dot products of ``length`` terms: ``length`` multiplications and
    ``length - 1`` additions each (equation opc-conv)."""
    return {"mults": count * length, "adds": count * max(length - 1, 0)}


# --------------------------------------------------------------------------- products

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
        extra: Counts = {}
        if a.get("alpha", 1) != 1:
            extra["mults"] = n
        if added is not None and a.get("beta", 1) != 0:
            category = BIAS if ctx.is_bias(a[added]) else ELEMENTWISE
            parts[category] = _plus(parts.get(category, {}), {"adds": n})
            if a.get("beta", 1) != 1:
                extra["mults"] = extra.get("mults", 0) + n
        if extra:
            parts[ELEMENTWISE] = _plus(parts.get(ELEMENTWISE, {}), extra)
        return parts

    return cost


def _dot(a: dict, out, ctx) -> Parts:  # dot, vdot: one dot product of the vectors' length
    return {PRODUCTS: dot_products(1, a["self"].numel())}


# --------------------------------------------------------------------------- attention

def softmax_counts(rows: int, n: int, *, guarded: bool = False) -> Counts:
    """Softmax of ``rows`` rows of ``n``: per row the maximum (``n - 1`` comparisons), ``n``
    subtractions, ``n`` exponentials, the sum (``n - 1`` additions), ``n`` divisions; with
    ``guarded`` (``_safe_softmax``), ``n`` comparisons more (each score with ``-inf``)."""
    return {"comparisons": rows * (n - 1 + (n if guarded else 0)), "adds": rows * (2 * n - 1),
            "exps": rows * n, "divs": rows * n}


def attention_cost(batch: int, lq: int, lk: int, e: int, ev: int, *, mask: bool) -> Parts:
    """``softmax(Q K^T * scale + M) V`` for ``batch`` (batch x heads) attentions of ``lq``
    queries over ``lk`` keys, query/key width ``e`` and value width ``ev``, counted as
    PyTorch's reference implementation computes it: ``Q`` and ``K`` each multiplied by
    ``sqrt(scale)``, the two products, the mask added (``mask``: an attention mask or causal
    masking), and a guarded softmax over the keys."""
    scores = batch * lq * lk
    return {
        PRODUCTS: _plus(dot_products(scores, e), dot_products(batch * lq * ev, lk)),
        ELEMENTWISE: {"mults": batch * (lq + lk) * e, "adds": scores if mask else 0},
        SOFTMAX: softmax_counts(batch * lq, lk, guarded=True),
    }


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
    ``need_weights``, ``Q`` scaled once and the weights averaged over the heads), the output
    projection."""
    q, k, e, heads = a["query"], a["key"], a["embed_dim"], a["num_head"]
    b, lq, lk, d = q.shape[0], q.shape[1], k.shape[1], e // heads  # query: (B, Lq, E)

    def projection(rows: int) -> Parts:
        return {PRODUCTS: dot_products(rows * e, e), BIAS: {"adds": rows * e}}

    masked = a.get("mask") is not None
    if a.get("need_weights", True):
        scores = b * heads * lq * lk
        attention = {
            PRODUCTS: _plus(dot_products(scores, d), dot_products(b * heads * lq * d, lk)),
            ELEMENTWISE: {"mults": b * heads * lq * d, "adds": scores if masked else 0},
            SOFTMAX: softmax_counts(b * heads * lq, lk),
        }
        if a.get("average_attn_weights", True):
            attention[REDUCTION] = {"adds": b * lq * lk * (heads - 1), "divs": b * lq * lk}
    else:
        attention = attention_cost(b * heads, lq, lk, d, d, mask=masked)
    return _merge(projection(b * lq), projection(b * lk), projection(b * lk), attention,
                  projection(b * lq))


def _merge(*parts: Parts) -> Parts:
    out: Parts = {}
    for p in parts:
        for category, counts in p.items():
            out[category] = _plus(out.get(category, {}), counts)
    return out


# --------------------------------------------------------------------------- normalisation

def norm_cost(groups: int, d: int, numel: int, *, weight: bool, bias: bool) -> Parts:
    """Normalising ``groups`` groups of ``d`` values (``numel = groups * d``), as in the module
    docstring: per group the mean, the centring, the variance, ``+ eps``, a square root and a
    reciprocal; per value the product by ``1/sigma``, then ``gamma`` and ``beta``."""
    norm = {"adds": groups * (3 * d - 1), "divs": 3 * groups, "sqrts": groups,
            "mults": groups * d + numel + (numel if weight else 0)}
    parts = {NORM: norm}
    if bias:
        parts[BIAS] = {"adds": numel}
    return parts


def _layer_norm(a: dict, out, ctx) -> Parts:
    x = a["input"]
    d = math.prod(a["normalized_shape"])
    return norm_cost(x.numel() // d, d, x.numel(), weight=a.get("weight") is not None,
                     bias=a.get("bias") is not None)


def _group_norm(a: dict, out, ctx) -> Parts:
    x = a["input"]
    groups = a["N"] * a["group"]
    return norm_cost(groups, x.numel() // groups, x.numel(),
                     weight=a.get("weight") is not None, bias=a.get("bias") is not None)


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


# --------------------------------------------------------------------------- elementwise

def _additions(a: dict, out, ctx) -> Parts:
    """``add``, ``sub``, ``rsub``: one addition per output (``alpha != 1``: one
    multiplication more); a bias parameter's additions are ``bias``."""
    n = out.numel()
    biased = ctx.is_bias(a["self"]) or ctx.is_bias(a.get("other"))
    parts = {BIAS if biased else ELEMENTWISE: {"adds": n}}
    if a.get("alpha", 1) != 1:
        parts[ELEMENTWISE] = _plus(parts.get(ELEMENTWISE, {}), {"mults": n})
    return parts


def _per_element(category: str, **counts: int) -> Cost:
    def cost(a: dict, out, ctx) -> Parts:
        n = _first(out).numel()
        return {category: {kind: k * n for kind, k in counts.items()}}

    return cost


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


# --------------------------------------------------------------------------- reductions

def _reduction(kind: str, *, mean: bool = False) -> Cost:
    """A reduction of ``m`` values to each output: ``m - 1`` of ``kind``; ``mean`` one
    division more. With a second tensor (``max(a, b)``) it is elementwise instead."""

    def cost(a: dict, out, ctx) -> Parts:
        x, o = a["self"], _first(out)
        if isinstance(a.get("other"), torch.Tensor):
            return {ELEMENTWISE: {kind: o.numel()}}
        counts = {kind: x.numel() - o.numel()}
        if mean and isinstance(ctx.module, _ADAPTIVE_AVG):  # a global pool run as a mean
            return {POOLING: _plus(counts, {"mults": o.numel()})}
        if mean:
            counts["divs"] = o.numel()
        return {REDUCTION: counts}

    return cost


def _softmax(*, log: bool = False, guarded: bool = False) -> Cost:
    def cost(a: dict, out, ctx) -> Parts:
        x = a["self"]
        n = x.shape[a["dim"]] if x.dim() else 1
        rows = x.numel() // max(n, 1)
        counts = softmax_counts(rows, n, guarded=guarded)
        if log:  # log(sum) once per row, then x - max - log(sum): no divisions
            counts = {"comparisons": counts["comparisons"], "adds": rows * (3 * n - 1),
                      "exps": rows * (n + 1)}
        return {SOFTMAX: counts}

    return cost


# --------------------------------------------------------------------------- pooling

_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


def _ints(value, dims: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return values * dims if len(values) == 1 else values


def _inside(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> int:
    """Positions inside the input, summed over the ``n_out`` windows along one axis."""
    return sum(sum(0 <= o * s - p + i * d < n_in for i in range(k)) for o in range(n_out))


def _adaptive(n_in: int, n_out: int) -> int:
    """Window sizes of an adaptive pool along one axis, summed: PyTorch's window ``i`` is
    ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))``."""
    return sum(-((-(i + 1) * n_in) // n_out) - (i * n_in) // n_out for i in range(n_out))


def _pool(dims: int, mode: str) -> Cost:
    """Fixed (``kernel_size`` in the arguments) or adaptive pooling over ``dims`` dims."""

    def cost(a: dict, out, ctx) -> Parts:
        x, o = a["self"], _first(out)
        sizes = zip(x.shape[-dims:], o.shape[-dims:], strict=True)
        if "kernel_size" in a:
            k = _ints(a["kernel_size"], dims)
            s = _ints(a.get("stride") or k, dims)
            p, d = _ints(a.get("padding", 0), dims), _ints(a.get("dilation", 1), dims)
            windows = math.prod(_inside(n, m, *axis) for (n, m), *axis in zip(
                sizes, k, s, p, d, strict=True))
        else:
            windows = math.prod(_adaptive(n, m) for n, m in sizes)
        planes = o.numel() // math.prod(o.shape[-dims:])  # N * C
        window_sum, n = planes * windows, o.numel()
        if mode == "max":
            return {POOLING: {"comparisons": window_sum - n}}
        if window_sum == n:  # every window holds one value: an identity, nothing to compute
            return _ZERO
        return {POOLING: {"adds": window_sum - n, "mults": n}}  # one product by 1/m each

    return cost


# --------------------------------------------------------------------------- the table

_ZERO: Parts = {}

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
    "native_layer_norm": _layer_norm, "native_group_norm": _group_norm,
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
    **{op: (lambda a, out, ctx: {ACTIVATION: _ZERO})
       for op in ("relu", "hardtanh", "threshold", "clamp", "clamp_min", "clamp_max")},
    "sigmoid": _per_element(ACTIVATION, exps=1, adds=1, divs=1),
    "silu": _per_element(ACTIVATION, exps=1, adds=1, divs=1),
    "hardsigmoid": _per_element(ACTIVATION, adds=1, divs=1),
    "hardswish": _per_element(ACTIVATION, adds=1, mults=1, divs=1),
    "tanh": _per_element(ACTIVATION, exps=1), "gelu": _gelu,
    "leaky_relu": _per_element(ACTIVATION, mults=1),
    "_prelu_kernel": _per_element(ACTIVATION, mults=1),
    "embedding": lambda a, out, ctx: {},  # a table lookup: known, and no arithmetic
    "sum": _reduction("adds"), "mean": _reduction("adds", mean=True),
    **{op: _reduction("comparisons") for op in ("amax", "amin", "max", "min", "argmax",
                                                "argmin")},
    "_softmax": _softmax(), "_safe_softmax": _softmax(guarded=True),
    "_log_softmax": _softmax(log=True),
    "avg_pool1d": _pool(1, "avg"), "avg_pool2d": _pool(2, "avg"), "avg_pool3d": _pool(3, "avg"),
    "max_pool1d": _pool(1, "max"), "max_pool2d": _pool(2, "max"),
    "max_pool1d_with_indices": _pool(1, "max"), "max_pool2d_with_indices": _pool(2, "max"),
    "max_pool3d_with_indices": _pool(3, "max"),
    "_adaptive_avg_pool2d": _pool(2, "avg"), "_adaptive_avg_pool3d": _pool(3, "avg"),
    "adaptive_max_pool2d": _pool(2, "max"), "adaptive_max_pool3d": _pool(3, "max"),
}
