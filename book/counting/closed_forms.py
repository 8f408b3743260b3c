"""The book's one cost model: what an operation costs, from its sizes.

The per-operation formulas (:func:`dot_products`, :func:`reduction`, :func:`softmax_counts`,
:func:`pool_counts`; :func:`norm_counts` and :func:`attention_cost` split by
:data:`CATEGORIES`, so that a table can say what the multiplications are) price the aten
operators of :mod:`book.counting.costs`, a layer from its hyper-parameters (:func:`conv2d_ops`,
:func:`linear_ops`) and the Transformer (:mod:`book.transformer.costs`). Sizes may be ints or
sympy symbols (the formulas use no ``max``, ``int`` or comparison of a size), so the same
functions give the polynomials of Part d and of the Transformer. Counts are for the whole
batch; a bad argument raises ``ValueError`` naming it.
"""

from __future__ import annotations

import torch

from book.checks import is_int, positive_int

__all__ = [
    "CATEGORIES", "Uncountable", "adaptive_windows", "attention_cost", "conv2d_ops",
    "conv_output_size", "dot_products", "int_tuple", "linear_ops", "norm_counts", "plus",
    "pool_counts", "pool_windows", "reduction", "softmax_counts",
]

PRODUCTS, BIAS, NORM, ELEMENTWISE = "products", "bias", "normalization", "elementwise"
ACTIVATION, SOFTMAX, REDUCTION, POOLING = "activation", "softmax", "reduction", "pooling"
CATEGORIES = (PRODUCTS, BIAS, NORM, ELEMENTWISE, ACTIVATION, SOFTMAX, REDUCTION, POOLING)

Counts = dict[str, int]  # kind of operation ("mults", "adds", ...) -> count
Parts = dict[str, Counts]  # category -> counts


class Uncountable(ValueError):
    """A known operation called in a way the cost model does not count (a transposed
    convolution, batch statistics, dropout): refused, never counted as zero."""


def int_tuple(name: str, value, dims: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int for every dimension, or ``dims`` ints) as a tuple of ``dims`` ints of
    at least ``minimum``; ``ValueError`` names the argument otherwise."""
    values = (value,) * dims if is_int(value) else tuple(value) if isinstance(
        value, (tuple, list, torch.Size)) else None
    if values is None or len(values) != dims or not all(map(is_int, values)):
        raise ValueError(f"{name} must be an int or {dims} ints, got {value!r}")
    if min(values) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return tuple(int(v) for v in values)


def conv_output_size(input_size, kernel_size, *, stride=1, padding=0, dilation=1):
    """Output size of a convolution (or pooling) over ``input_size`` (an int for a square 2-D
    input, or one int per spatial dimension); ``ValueError`` names the bad argument."""
    dims = 2 if is_int(input_size) else len(input_size) if isinstance(
        input_size, (tuple, list, torch.Size)) else 0
    if dims == 0:
        raise ValueError(f"input_size must be an int or a tuple of ints, got {input_size!r}")
    size = int_tuple("input_size", input_size, dims)
    kernel = int_tuple("kernel_size", kernel_size, dims)
    stride = int_tuple("stride", stride, dims)
    padding = int_tuple("padding", padding, dims, minimum=0)
    dilation = int_tuple("dilation", dilation, dims)
    out = []
    for axis, (n, k, s, p, d) in enumerate(zip(size, kernel, stride, padding, dilation,
                                               strict=True)):
        span = d * (k - 1) + 1
        if span > n + 2 * p:
            raise ValueError(
                f"kernel_size {k} (dilation {d}, so it spans {span}) is larger than the padded "
                f"input {n + 2 * p} (input_size {n} + 2 * padding {p}) along dimension {axis}")
        out.append((n + 2 * p - span) // s + 1)
    return tuple(out)


# Sizes may be ints or sympy symbols: no max(), int() or comparison of a size from here on,
# except in the window sums of pooling, which take ints.

def plus(*counts: Counts) -> Counts:
    """The counts added up, kind by kind (a kind missing from one of them counts 0 there)."""
    out: Counts = {}
    for c in counts:
        for kind, n in c.items():
            out[kind] = out.get(kind, 0) + n
    return out


def dot_products(count, length, *, bias: bool = False) -> Counts:
    """``count`` dot products of ``length`` terms: ``length`` multiplications and
    ``length - 1`` additions each (equation opc-conv); with ``bias``, one addition more each.
    A matrix product ``[M, K] @ [K, N]`` is ``M N`` dot products of length ``K``."""
    return {"mults": count * length, "adds": count * (length - 1) + (count if bias else 0)}


def reduction(kind: str, outputs, m, *, mean: bool = False) -> Counts:
    """``outputs`` reductions of ``m`` values each: ``m - 1`` of ``kind`` (``"adds"`` for a sum,
    ``"comparisons"`` for a maximum); a ``mean`` divides once more per output."""
    counts = {kind: outputs * (m - 1)}
    if mean:
        counts["divs"] = outputs
    return counts


def softmax_counts(rows, n, *, guards=0) -> Counts:
    """Softmax of ``rows`` rows of ``n``, the book's one convention: per row the maximum
    (``n - 1`` comparisons), ``n`` subtractions, ``n`` exponentials, the sum (``n - 1``
    additions), ``n`` divisions, and ``guards`` comparisons that keep a fully masked row
    finite (``n`` for PyTorch's ``_safe_softmax``, which compares each score with ``-inf``;
    2 for the book's Transformer, which compares the maximum and the sum once each)."""
    return plus(reduction("comparisons", rows, n), {"comparisons": rows * guards},
                {"adds": rows * n, "exps": rows * n}, reduction("adds", rows, n),
                {"divs": rows * n})


def pool_windows(n_in: int, n_out: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Positions inside the input, summed over the ``n_out`` windows of a pool along one axis
    (kernel ``k``, stride ``s``, padding ``p``, dilation ``d``): padding is never read, and
    with ``ceil_mode`` the last window may be partial."""
    return sum(sum(0 <= o * s - p + i * d < n_in for i in range(k)) for o in range(n_out))


def adaptive_windows(n_in: int, n_out: int) -> int:
    """Window sizes of an adaptive pool along one axis, summed: PyTorch's window ``i`` is
    ``[floor(i n_in / n_out), ceil((i + 1) n_in / n_out))``."""
    return sum(-((-(i + 1) * n_in) // n_out) - (i * n_in) // n_out for i in range(n_out))


def pool_counts(mode: str, positions, outputs) -> Counts:
    """Pooling ``outputs`` windows that hold ``positions`` input positions in all: a maximum
    (``mode="max"``) compares ``m - 1`` times per window of ``m``; an average (``"avg"``) adds
    ``m - 1`` times and multiplies once (by ``1/m``), unless every window holds one value (an
    identity: free)."""
    if mode == "max":
        return {"comparisons": positions - outputs}
    if positions == outputs:
        return {}
    return {"adds": positions - outputs, "mults": outputs}


def norm_counts(groups, d, numel, *, weight: bool, bias: bool) -> Parts:
    """Normalising ``groups`` groups of ``d`` values (``numel = groups * d``; LayerNorm: a row,
    GroupNorm: a group), per group: the mean (``d - 1`` additions, a division), ``d``
    subtractions, the variance (``d`` squares, ``d - 1`` additions, a division), ``+ eps``, a
    square root and a reciprocal; per value a product by ``1/sigma``, with ``weight`` one by
    ``gamma``, and with ``bias`` an addition of ``beta`` (category ``bias``)."""
    norm = plus(reduction("adds", groups, d, mean=True), {"adds": numel},  # mean, x - mean
                {"mults": numel}, reduction("adds", groups, d, mean=True),  # variance
                {"adds": groups, "sqrts": groups, "divs": groups},  # 1 / sqrt(var + eps)
                {"mults": numel + (numel if weight else 0)})  # * (1/sigma), * gamma
    parts = {NORM: norm}
    if bias:
        parts[BIAS] = {"adds": numel}
    return parts


def attention_cost(batch, lq, lk, e, ev, *, mask: bool, weights: bool = False) -> Parts:
    """``softmax(Q K^T * scale + M) V`` for ``batch`` (batch x heads) attentions of ``lq``
    queries over ``lk`` keys, query/key width ``e`` and value width ``ev``, counted as
    PyTorch's reference implementation computes it: ``Q`` and ``K`` each multiplied by
    ``sqrt(scale)``, the two products, the mask added (``mask``: an attention mask or causal
    masking), and ``_safe_softmax`` over the keys. With ``weights`` (``nn.MultiheadAttention``
    returning its attention weights), ``Q`` alone is scaled and the softmax is unguarded."""
    scores = batch * lq * lk
    scaled = batch * (lq if weights else lq + lk) * e
    return {
        PRODUCTS: plus(dot_products(scores, e), dot_products(batch * lq * ev, lk)),
        ELEMENTWISE: {"mults": scaled, "adds": scores if mask else 0},
        SOFTMAX: softmax_counts(batch * lq, lk, guards=0 if weights else lk),
    }


def conv2d_ops(in_channels, out_channels, input_size, kernel_size, *, stride=1, padding=0,
               dilation=1, groups=1, bias=False, batch=1) -> dict[str, int]:
    """Multiplications and additions of ``nn.Conv2d`` on ``[batch, in_channels, *input_size]``:
    every output element costs ``in_channels/groups * K_h * K_w`` multiplications and one
    fewer additions, plus one addition with ``bias``."""
    in_channels = positive_int("in_channels", in_channels)
    out_channels = positive_int("out_channels", out_channels)
    groups = positive_int("groups", groups)
    batch = positive_int("batch", batch)
    for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
        if channels % groups:
            raise ValueError(f"{name} ({channels}) must be divisible by groups ({groups})")
    h_out, w_out = conv_output_size(int_tuple("input_size", input_size, 2), kernel_size,
                                    stride=stride, padding=padding, dilation=dilation)
    k_h, k_w = int_tuple("kernel_size", kernel_size, 2)
    per_output = in_channels // groups * k_h * k_w  # (opc-conv)
    return dot_products(batch * out_channels * h_out * w_out, per_output, bias=bias)


def linear_ops(in_features, out_features, *, bias=False, batch=1) -> dict[str, int]:
    """``nn.Linear`` on ``batch`` rows: ``in_features`` multiplications and ``in_features - 1``
    additions per output, plus one addition with ``bias``."""
    n = positive_int("batch", batch) * positive_int("out_features", out_features)
    return dot_products(n, positive_int("in_features", in_features), bias=bias)
