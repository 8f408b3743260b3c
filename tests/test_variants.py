"""The variants of the separable net: a width multiplier and a regular first convolution,
with LeNet-5 and LeNet-5 DSC themselves unchanged."""

import pytest
import torch
from strategies import MNIST
from torch import nn

from book.counting.counter import count_ops
from book.mnist.models import DepthwiseSeparableConv2d, LeNet5, LeNet5DSC, LeNet5DSCFullFirst


def separable_mults(w: int) -> int:
    """Multiplications of LeNet5DSC(width=w) for one image, by hand: channels 6w, 16w, 120w,
    84w; depthwise 5x5 per input channel, pointwise one per input-output pair."""
    c1, c3, c5, f6 = 6 * w, 16 * w, 120 * w, 84 * w
    return (28 * 28 * (25 + c1)            # c1: one 5x5 filter, then 1 -> c1
            + 10 * 10 * c1 * (25 + c3)     # c3 on 10 x 10 outputs
            + 1 * c3 * (25 + c5)           # c5 on a 1 x 1 output
            + c5 * f6 + f6 * 10)           # f6, output


def test_the_default_nets_are_the_ones_of_chapters_one_to_four():
    assert sum(p.numel() for p in LeNet5().parameters()) == 61_706
    assert sum(p.numel() for p in LeNet5DSC().parameters()) == 13_776
    assert repr(LeNet5DSC(width=1)) == repr(LeNet5DSC())
    assert repr(LeNet5(width=1.0)) == repr(LeNet5())


@pytest.mark.parametrize("width", [1, 2, 3])
def test_a_width_multiplier_scales_every_hidden_layer(width):
    model = LeNet5DSC(width=width)
    assert model.c1.pointwise.out_channels == 6 * width
    assert model.c3.depthwise.in_channels == 6 * width
    assert model.c3.pointwise.out_channels == 16 * width
    assert model.c5.pointwise.out_channels == 120 * width
    assert (model.f6.in_features, model.f6.out_features) == (120 * width, 84 * width)
    assert (model.output.in_features, model.output.out_features) == (84 * width, 10)
    assert model.c1.depthwise.in_channels == 1  # the digit still has one channel
    assert int(count_ops(model, MNIST)["mults"].sum()) == separable_mults(width)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_fractional_width_rounds_the_channels():
    model = LeNet5(width=0.5)
    assert (model.c1.out_channels, model.c3.out_channels, model.c5.out_channels,
            model.f6.out_features) == (3, 8, 60, 42)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "2", True])
def test_a_bad_width_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="width"):
        LeNet5DSC(width=bad)


def test_the_full_first_variant_has_lenet_c1_and_separable_c3_c5():
    model = LeNet5DSCFullFirst()
    assert type(model.c1) is nn.Conv2d
    assert (model.c1.in_channels, model.c1.out_channels, model.c1.kernel_size,
            model.c1.padding) == (1, 6, (5, 5), (2, 2))
    assert isinstance(model.c3, DepthwiseSeparableConv2d)
    assert isinstance(model.c5, DepthwiseSeparableConv2d)
    assert repr(model).startswith("LeNet5DSCFullFirst(\n  (c1): Conv2d(1, 6, kernel_size=(5, 5)")
    # LeNet-5's c1 (28 x 28 x 6 outputs of 25 products) plus the separable net after c1
    lenet_c1 = 28 * 28 * 6 * 25
    separable_c1 = 28 * 28 * (25 + 6)
    assert int(count_ops(model, MNIST)["mults"].sum()) == (
        separable_mults(1) - separable_c1 + lenet_c1) == 155_440
    wide = LeNet5DSCFullFirst(width=2)
    assert type(wide.c1) is nn.Conv2d and wide.c1.out_channels == 12
