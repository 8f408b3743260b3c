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
count maps to an int. Counts follow the book's convention (:mod:`book.counting.closed_forms`, whose
:func:`~book.counting.closed_forms.conv2d_ops` gives the closed form of each stage).
"""

from __future__ import annotations

from fractions import Fraction

from book.checks import non_negative_int, positive_int
from book.counting.closed_forms import conv2d_ops, conv_output_size, int_tuple

__all__ = [
    "adds_ratio",
    "mapped_count",
    "mults_ratio",
    "ops_ratio",
    "separable_adds_from_regular",
    "separable_conv2d_ops",
    "separable_mults_from_regular",
    "separable_ops_from_regular",
]


def separable_conv2d_ops(in_channels, out_channels, input_size, kernel_size, *, stride=1,
                         padding=0, dilation=1, bias=False, batch=1) -> dict[str, int]:
    """The depthwise ``K_h x K_w`` convolution (``groups=in_channels``, with the given stride,
    padding and dilation) followed by the pointwise ``1x1`` one: the sum of both stages."""
    depthwise = conv2d_ops(in_channels, in_channels, input_size, kernel_size, stride=stride,
                           padding=padding, dilation=dilation, groups=in_channels, bias=bias,
                           batch=batch)
    size = conv_output_size(int_tuple("input_size", input_size, 2), kernel_size, stride=stride,
                            padding=padding, dilation=dilation)
    pointwise = conv2d_ops(in_channels, out_channels, size, 1, bias=bias, batch=batch)
    return {k: depthwise[k] + pointwise[k] for k in ("mults", "adds")}


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
    c_in, c_out = positive_int("c_in", c_in), positive_int("c_out", c_out)
    k, b = positive_int("k_h", k_h) * positive_int("k_w", k_w), int(bool(bias))
    if c_in * k - 1 + b == 0:
        raise ValueError("adds_ratio is undefined for c_in=1, k_h=k_w=1 without bias: the "
                         "regular convolution does no additions")
    return Fraction(c_in * (k - 1 + b) + c_out * (c_in - 1 + b), c_out * (c_in * k - 1 + b))


def ops_ratio(c_in, c_out, k_h, k_w, *, bias=False) -> Fraction:
    """Separable / regular operations (multiplications + additions, equation map-h-ops):
    ``(C_in (2K - 1 + b) + C_out (2 C_in - 1 + b)) / (C_out (2 C_in K - 1 + b))``."""
    c_in, c_out = positive_int("c_in", c_in), positive_int("c_out", c_out)
    k, b = positive_int("k_h", k_h) * positive_int("k_w", k_w), int(bool(bias))
    return Fraction(c_in * (2 * k - 1 + b) + c_out * (2 * c_in - 1 + b),
                    c_out * (2 * c_in * k - 1 + b))


def mapped_count(name: str, count, ratio: Fraction) -> int | Fraction:
    """``count * ratio``, exactly: an int when the product is whole, as it is whenever
    ``count`` is a real count of the regular layer; ``name`` is the argument's name for the
    ``ValueError`` that a count which is not a non-negative int raises."""
    mapped = non_negative_int(name, count) * ratio
    return mapped.numerator if mapped.denominator == 1 else mapped


def separable_mults_from_regular(x, c_out, k_h, k_w) -> int | Fraction:
    """``y = x (1/C_out + 1/(K_h K_w))``: the multiplications of the separable convolution from
    the ``x`` multiplications of the regular one (an int whenever ``x`` is a real count)."""
    return mapped_count("x", x, mults_ratio(c_out, k_h, k_w))


def separable_adds_from_regular(x_add, c_in, c_out, k_h, k_w, *, bias=False) -> int | Fraction:
    """The additions of the separable convolution from the ``x_add`` additions of the regular
    one: ``x_add * adds_ratio(...)``. Unlike multiplications this needs ``C_in``."""
    x_add = non_negative_int("x_add", x_add)
    c_in, c_out = positive_int("c_in", c_in), positive_int("c_out", c_out)
    k_h, k_w = positive_int("k_h", k_h), positive_int("k_w", k_w)
    if c_in == 1 and k_h * k_w == 1 and not bias:
        if x_add:
            raise ValueError(f"x_add must be 0 for c_in=1, k_h=k_w=1 without bias, got {x_add}")
        return 0  # neither convolution adds anything
    return mapped_count("x_add", x_add, adds_ratio(c_in, c_out, k_h, k_w, bias=bias))


def separable_ops_from_regular(x_ops, c_in, c_out, k_h, k_w, *, bias=False) -> int | Fraction:
    """Operations (multiplications + additions) of the separable convolution from the
    ``x_ops`` of the regular one: ``x_ops * ops_ratio(...)``."""
    return mapped_count("x_ops", x_ops, ops_ratio(c_in, c_out, k_h, k_w, bias=bias))
