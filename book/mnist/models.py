"""LeNet-5 and its depthwise-separable variant.

Both nets take MNIST digits as ``[N, 1, 28, 28]`` tensors and return logits ``[N, 10]``.
The 28x28 digit is zero-padded to the 32x32 input of LeCun et al. (1998) by the first
convolution's ``padding=2``. The inputs are only scaled, never centred
(:func:`book.mnist.training.normalise`), so a blank pixel is exactly 0 and those zeros are the same
as a border of background.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from book.checks import positive_float, positive_int
from book.inspection import forward_hooks

__all__ = ["DepthwiseSeparableConv2d", "LayerCall", "LeNet5", "LeNet5DSC",
           "LeNet5DSCFullFirst", "lecun_c3_table", "parameter_table", "trace"]


class DepthwiseSeparableConv2d(nn.Module):
    """A KxK convolution factored into a depthwise and a pointwise step.

    ``depthwise`` filters every input channel with its own KxK kernel (``groups=in_channels``,
    weight ``[C_in, 1, K, K]``); ``pointwise`` mixes channels with a 1x1 convolution
    (weight ``[C_out, C_in, 1, 1]``). The output has the shape of
    ``nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)``.

    Both stages keep their bias, as two plain ``nn.Conv2d`` do. Nothing nonlinear lies between
    them, so the depthwise bias is redundant: it adds the same constant to every position of
    each output channel, which the pointwise bias can do alone (it absorbs ``P @ beta``, the
    pointwise weights ``P [C_out, C_in]`` times the depthwise bias ``beta [C_in]``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 padding: int | tuple[int, int] = 0, bias: bool = True) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("out_channels", out_channels)
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding,
                                   groups=in_channels, bias=bias)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with ReLU activations and average pooling.

    ==========  ==============  =================
    layer       operation       output
    ==========  ==============  =================
    ``c1``      conv 5x5, 1->6  ``[N, 6, 28, 28]``
    ``s2``      avg-pool 2x2    ``[N, 6, 14, 14]``
    ``c3``      conv 5x5, 6->16 ``[N, 16, 10, 10]``
    ``s4``      avg-pool 2x2    ``[N, 16, 5, 5]``
    ``c5``      conv 5x5 16->120 ``[N, 120, 1, 1]``
    ``f6``      linear 120->84  ``[N, 84]``
    ``output``  linear 84->10   ``[N, 10]``
    ==========  ==============  =================

    Unlike the 1998 net: ``c3`` connects every ``s2`` map to every ``c3`` map (the paper's
    Table I connects 60 of the 96 pairs, :func:`lecun_c3_table`); ReLU replaces the scaled
    tanh; the pools are plain averages, without the paper's trainable coefficient and bias per
    map; and ``output`` is a linear layer giving logits, not a layer of RBF units.

    ``width`` multiplies the channels of every hidden layer (6, 16, 120, 84 become
    ``round(width * n)``), as MobileNet's width multiplier does; ``LeNet5()`` is the net above.
    """

    conv: type[nn.Module] = nn.Conv2d
    first_conv: type[nn.Module] | None = None  # c1's convolution, when it is not ``conv``

    def __init__(self, width: float = 1) -> None:
        super().__init__()
        width = positive_float("width", width)
        c1, c3, c5, f6 = (max(1, round(width * n)) for n in (6, 16, 120, 84))
        conv = self.conv
        self.c1 = (self.first_conv or conv)(1, c1, 5, padding=2)  # pads 28x28 to LeNet's 32x32
        self.s2 = nn.AvgPool2d(2)
        self.c3 = conv(c1, c3, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = conv(c3, c5, 5)
        self.f6 = nn.Linear(c5, f6)
        self.output = nn.Linear(f6, 10)
        self.act = nn.ReLU(inplace=True)  # in place: saves a pass over the largest activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected input of shape [N, 1, 28, 28], got {list(x.shape)}")
        x = self.s2(self.act(self.c1(x)))  # (N, 6 width, 14, 14)
        x = self.s4(self.act(self.c3(x)))  # (N, 16 width, 5, 5)
        x = self.act(self.c5(x)).flatten(1)  # (N, 120 width)
        x = self.act(self.f6(x))  # (N, 84 width)
        return self.output(x)  # (N, 10)


class LeNet5DSC(LeNet5):
    """LeNet-5 with each of its three convolutions replaced by a
    :class:`DepthwiseSeparableConv2d` of the same shape; everything else is unchanged."""

    conv = DepthwiseSeparableConv2d


class LeNet5DSCFullFirst(LeNet5DSC):
    """LeNet-5 DSC with a regular first convolution, as MobileNet keeps one (Howard et al.,
    2017): with a single input channel, a separable ``c1`` has one depthwise filter, so its
    six output maps are one filtered image scaled six ways. ``c3`` and ``c5`` stay separable."""

    first_conv = nn.Conv2d


def lecun_c3_table() -> torch.Tensor:
    """Table I of LeCun et al. (1998): ``table[o, c]`` is True when C3's map ``o`` reads S2's
    map ``c``; ``bool [16, 6]``, 60 of the 96 pairs.

    Maps 0-5 read three cyclically contiguous S2 maps, 6-11 four contiguous ones, 12-14 four
    that are not contiguous, and map 15 reads all six.
    """
    table = torch.zeros(16, 6, dtype=torch.bool)
    for o in range(6):
        table[o, [(o + i) % 6 for i in range(3)]] = True
        table[6 + o, [(o + i) % 6 for i in range(4)]] = True
    for o in range(3):
        table[12 + o, [(o + i) % 6 for i in (0, 1, 3, 4)]] = True
    table[15] = True
    return table


@dataclass(frozen=True)
class LayerCall:
    """One call of a named submodule during a forward pass."""

    name: str  # as in ``model.named_modules()``, e.g. ``"c1.depthwise"``
    module: nn.Module
    output: torch.Tensor  # a copy, taken before any in-place activation could change it


@torch.no_grad()
def trace(model: nn.Module, x: torch.Tensor) -> list[LayerCall]:
    """Every call of every named submodule in one forward pass of ``x``, in the order the
    calls finish (a container finishes after its parts; a module called twice appears twice)."""
    calls: list[LayerCall] = []

    def record(name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            calls.append(LayerCall(name, module, output.detach().clone()))
        return hook

    with forward_hooks([(m, record(name)) for name, m in model.named_modules() if name]):
        model(x)
    return calls


def parameter_table(model: nn.Module) -> pd.DataFrame:
    """Trainable parameters per top-level layer, with a ``total`` row."""
    rows = [(name, sum(p.numel() for p in child.parameters()))
            for name, child in model.named_children()]
    rows = [(name, n) for name, n in rows if n]
    rows.append(("total", sum(n for _, n in rows)))
    return pd.DataFrame(rows, columns=["layer", "parameters"]).set_index("layer")
