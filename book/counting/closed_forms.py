"""The closed forms that the counts of :mod:`book.counting.counter` must agree with.

The book's convention (equation opc-conv): one output element of a convolution needs
``C_in/groups * K_h * K_w`` multiplications and one fewer additions, one output of a linear
layer ``in_features`` multiplications and ``in_features - 1`` additions; ``bias=True`` adds one
addition per output element. A ``k x k`` average pool costs ``k*k - 1`` additions and one
multiplication (by ``1/k^2``) per output, a max pool ``k*k - 1`` comparisons. Counts are for
the whole batch; a bad argument raises ``ValueError`` naming it.
"""

from __future__ import annotations

import torch

from book.checks import is_int, positive_int

__all__ = ["conv2d_ops", "conv_output_size", "int_tuple", "linear_ops", "pool2d_ops"]


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
    n = batch * out_channels * h_out * w_out
    return {"mults": n * per_output, "adds": n * (per_output - 1) + (n if bias else 0)}


def linear_ops(in_features, out_features, *, bias=False, batch=1) -> dict[str, int]:
    """``nn.Linear`` on ``batch`` rows: ``in_features`` multiplications and ``in_features - 1``
    additions per output, plus one addition with ``bias``."""
    in_features = positive_int("in_features", in_features)
    n = positive_int("batch", batch) * positive_int("out_features", out_features)
    return {"mults": n * in_features, "adds": n * (in_features - 1) + (n if bias else 0)}


def pool2d_ops(channels, input_size, kernel_size, *, stride=None, padding=0, mode="avg",
               batch=1) -> dict[str, int]:
    """2-D pooling: an average of a ``K_h x K_w`` window costs ``K_h*K_w - 1`` additions and
    one multiplication per output (none for a 1 x 1 window: an identity); a maximum
    ``K_h*K_w - 1`` comparisons."""
    if mode not in ("avg", "max"):
        raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
    k_h, k_w = int_tuple("kernel_size", kernel_size, 2)
    h_out, w_out = conv_output_size(int_tuple("input_size", input_size, 2), (k_h, k_w),
                                    stride=(k_h, k_w) if stride is None else stride,
                                    padding=padding)
    n = positive_int("batch", batch) * positive_int("channels", channels) * h_out * w_out
    if mode == "max":
        return {"comparisons": n * (k_h * k_w - 1)}
    return {"mults": n if k_h * k_w > 1 else 0, "adds": n * (k_h * k_w - 1)}
