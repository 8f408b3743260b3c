"""The two LeNet-5 variants: shapes, parameter counts, and the separable layer's structure."""

import pytest
import torch
from torch import nn

from book.models import DepthwiseSeparableConv2d, LeNet5, LeNet5DSC, parameter_table


def test_lenet5_shapes_and_parameters():
    model = LeNet5()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    table = parameter_table(model)["parameters"]
    # (weights + biases) per layer: 5*5*1*6+6, 5*5*6*16+16, 5*5*16*120+120, 120*84+84, 84*10+10
    assert table.to_dict() == {"c1": 156, "c3": 2_416, "c5": 48_120, "f6": 10_164,
                               "output": 850, "total": 61_706}


def test_lenet5_dsc_parameters():
    table = parameter_table(LeNet5DSC())["parameters"]
    # depthwise C_in*K*K + C_in, pointwise C_in*C_out + C_out
    expected = {"c1": (25 + 1) + (6 + 6), "c3": (150 + 6) + (96 + 16),
                "c5": (400 + 16) + (1920 + 120), "f6": 10_164, "output": 850}
    expected["total"] = sum(expected.values())
    assert table.to_dict() == expected
    assert expected["total"] == 13_776


@pytest.mark.parametrize("bad", [torch.zeros(1, 28, 28), torch.zeros(2, 3, 28, 28),
                                 torch.zeros(2, 1, 32, 32)])
def test_wrong_input_shape_is_refused(bad):
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        LeNet5()(bad)


@pytest.mark.parametrize("c_in,c_out,k,padding,size", [
    (1, 6, 5, 2, 28), (6, 16, 5, 0, 14), (16, 120, 5, 0, 5), (3, 8, 3, 1, 9),
    (4, 4, 1, 0, 7), (5, 2, (3, 5), (1, 2), 11), (8, 32, 7, 3, 16)])
def test_separable_layer_matches_regular_shapes(c_in, c_out, k, padding, size):
    x = torch.randn(2, c_in, size, size)
    regular = nn.Conv2d(c_in, c_out, k, padding=padding)
    separable = DepthwiseSeparableConv2d(c_in, c_out, k, padding=padding)
    assert separable(x).shape == regular(x).shape
    kh, kw = (k, k) if isinstance(k, int) else k
    assert separable.depthwise.weight.shape == (c_in, 1, kh, kw)
    assert separable.depthwise.groups == c_in
    assert separable.pointwise.weight.shape == (c_out, c_in, 1, 1)
    n_params = sum(p.numel() for p in separable.parameters())
    assert n_params == c_in * kh * kw + c_in + c_in * c_out + c_out


def test_separable_layer_is_the_composition_it_claims():
    layer = DepthwiseSeparableConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 6, 6)
    by_hand = nn.functional.conv2d(x, layer.depthwise.weight, layer.depthwise.bias,
                                   padding=1, groups=3)
    by_hand = nn.functional.conv2d(by_hand, layer.pointwise.weight, layer.pointwise.bias)
    torch.testing.assert_close(layer(x), by_hand)


@pytest.mark.parametrize("name,value", [("in_channels", 0), ("out_channels", -3)])
def test_separable_layer_refuses_bad_channels(name, value):
    kwargs = {"in_channels": 2, "out_channels": 2, name: value}
    with pytest.raises(ValueError, match=name):
        DepthwiseSeparableConv2d(kernel_size=3, **kwargs)
