"""LeNet-5 and its depthwise-separable variant.

Both nets take MNIST digits as ``[N, 1, 28, 28]`` tensors and return logits ``[N, 10]``.
The 28x28 digit is zero-padded to the 32x32 input of LeCun et al. (1998) by the first
convolution's ``padding=2``, which gives exactly the same numbers as padding the image.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .checks import positive_int

__all__ = ["DepthwiseSeparableConv2d", "LeNet5", "LeNet5DSC", "parameter_table"]


class DepthwiseSeparableConv2d(nn.Module):
    """A KxK convolution factored into a depthwise and a pointwise step.

    ``depthwise`` filters every input channel with its own KxK kernel (``groups=in_channels``,
    weight ``[C_in, 1, K, K]``); ``pointwise`` mixes channels with a 1x1 convolution
    (weight ``[C_out, C_in, 1, 1]``). The output has the shape of
    ``nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)``.
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
    """

    conv: type[nn.Module] = nn.Conv2d

    def __init__(self) -> None:
        super().__init__()
        conv = self.conv
        self.c1 = conv(1, 6, 5, padding=2)  # pads the 28x28 digit to LeNet's 32x32 input
        self.s2 = nn.AvgPool2d(2)
        self.c3 = conv(6, 16, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = conv(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)
        self.act = nn.ReLU(inplace=True)  # in place: saves a pass over the largest activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected input of shape [N, 1, 28, 28], got {list(x.shape)}")
        x = self.s2(self.act(self.c1(x)))  # (N, 6, 14, 14)
        x = self.s4(self.act(self.c3(x)))  # (N, 16, 5, 5)
        x = self.act(self.c5(x)).flatten(1)  # (N, 120)
        x = self.act(self.f6(x))  # (N, 84)
        return self.output(x)  # (N, 10)


class LeNet5DSC(LeNet5):
    """LeNet-5 with each of its three convolutions replaced by a
    :class:`DepthwiseSeparableConv2d` of the same shape; everything else is unchanged."""

    conv = DepthwiseSeparableConv2d


def parameter_table(model: nn.Module) -> pd.DataFrame:
    """Trainable parameters per top-level layer, with a ``total`` row."""

    rows = [(name, sum(p.numel() for p in child.parameters()))
            for name, child in model.named_children()]
    rows = [(name, n) for name, n in rows if n]
    rows.append(("total", sum(n for _, n in rows)))
    return pd.DataFrame(rows, columns=["layer", "parameters"]).set_index("layer")
