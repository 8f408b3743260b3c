"""Part d: from the operation counts of a regular convolution to those of its separable replacement.

A regular ``K_h x K_w`` convolution ``C_in -> C_out`` and its depthwise-separable replacement
(a depthwise ``K_h x K_w`` convolution with the same stride, padding and dilation, then a
pointwise ``1 x 1`` one) produce the same ``L = N * H_out * W_out`` output positions per
channel (equation map-p). With ``K = K_h * K_w`` and ``b = 1`` when the bias is counted:

    regular:   mults x = C_out L C_in K                                 (map-x-mult)
               adds    = C_out L (C_in K - 1 + b)                       (map-x-add)
    separable: mults y = C_in L K + C_out L C_in                        (map-y-mult)
               adds    = C_in L (K - 1 + b) + C_out L (C_in - 1 + b)    (map-y-add)

Every map below multiplies the regular count by separable / regular, in which ``L`` cancels,
so no input size is needed. The ratios are exact :class:`~fractions.Fraction` s, so a real
count maps to an int. Counts follow the book's convention (:mod:`book.counting.closed_forms`).
"""

from __future__ import annotations

from fractions import Fraction

from book.checks import non_negative_int, positive_int

__all__ = [
    "adds_ratio", "mults_ratio", "ops_ratio", "separable_adds_from_regular",
    "separable_mults_from_regular", "separable_ops_from_regular",
]


def _sizes(c_in, c_out, k_h, k_w, bias) -> tuple[int, int, int, int]:
    """``(C_in, C_out, K = K_h K_w, b)``, each size checked to be a positive int."""
    return (positive_int("c_in", c_in), positive_int("c_out", c_out),
            positive_int("k_h", k_h) * positive_int("k_w", k_w), int(bool(bias)))


def mults_ratio(c_out, k_h, k_w) -> Fraction:
    """Separable / regular multiplications (equation map-f-mult): ``1/C_out + 1/(K_h K_w)``
    (Howard et al., 2017)."""
    return Fraction(1, positive_int("c_out", c_out)) + Fraction(
        1, positive_int("k_h", k_h) * positive_int("k_w", k_w))


def adds_ratio(c_in, c_out, k_h, k_w, *, bias=False) -> Fraction:
    """Separable / regular additions (equation map-g-add):
    ``(C_in (K - 1 + b) + C_out (C_in - 1 + b)) / (C_out (C_in K - 1 + b))``, ``K = K_h K_w``.
    With ``bias`` it equals :func:`mults_ratio`; without it the ratio is undefined for a
    1x1 convolution of one channel, which adds nothing."""
    c_in, c_out, k, b = _sizes(c_in, c_out, k_h, k_w, bias)
    if c_in * k - 1 + b == 0:
        raise ValueError("adds_ratio is undefined for c_in=1, k_h=k_w=1 without bias: the "
                         "regular convolution does no additions")
    return Fraction(c_in * (k - 1 + b) + c_out * (c_in - 1 + b), c_out * (c_in * k - 1 + b))


def ops_ratio(c_in, c_out, k_h, k_w, *, bias=False) -> Fraction:
    """Separable / regular operations (multiplications + additions, equation map-h-ops):
    ``(C_in (2K - 1 + b) + C_out (2 C_in - 1 + b)) / (C_out (2 C_in K - 1 + b))``."""
    c_in, c_out, k, b = _sizes(c_in, c_out, k_h, k_w, bias)
    return Fraction(c_in * (2 * k - 1 + b) + c_out * (2 * c_in - 1 + b),
                    c_out * (2 * c_in * k - 1 + b))


def _mapped_count(name: str, count, ratio: Fraction) -> int | Fraction:
    """``count * ratio``, exactly: an int when the product is whole, as it is whenever
    ``count`` (the argument ``name``) is a real count of the regular layer."""
    mapped = non_negative_int(name, count) * ratio
    return mapped.numerator if mapped.denominator == 1 else mapped


def separable_mults_from_regular(x, c_out, k_h, k_w) -> int | Fraction:
    """``y = x (1/C_out + 1/(K_h K_w))``: the multiplications of the separable convolution from
    the ``x`` multiplications of the regular one (an int whenever ``x`` is a real count)."""
    return _mapped_count("x", x, mults_ratio(c_out, k_h, k_w))


def separable_adds_from_regular(x_add, c_in, c_out, k_h, k_w, *, bias=False) -> int | Fraction:
    """The additions of the separable convolution from the ``x_add`` additions of the regular
    one: ``x_add * adds_ratio(...)``. Unlike multiplications this needs ``C_in``."""
    x_add = non_negative_int("x_add", x_add)
    c_in, _, k, b = _sizes(c_in, c_out, k_h, k_w, bias)
    if c_in * k - 1 + b == 0:  # one channel, a 1x1 kernel, no bias: neither convolution adds
        if x_add:
            raise ValueError(f"x_add must be 0 for c_in=1, k_h=k_w=1 without bias, got {x_add}")
        return 0
    return _mapped_count("x_add", x_add, adds_ratio(c_in, c_out, k_h, k_w, bias=bias))


def separable_ops_from_regular(x_ops, c_in, c_out, k_h, k_w, *, bias=False) -> int | Fraction:
    """Operations (multiplications + additions) of the separable convolution from the
    ``x_ops`` of the regular one: ``x_ops * ops_ratio(...)``."""
    return _mapped_count("x_ops", x_ops, ops_ratio(c_in, c_out, k_h, k_w, bias=bias))
