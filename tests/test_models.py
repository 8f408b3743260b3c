"""The two LeNet-5 variants: shapes, parameter counts, and the separable layer's structure."""

import copy

import pytest
import torch
from torch import nn

from book.mnist.models import (
    DepthwiseSeparableConv2d,
    LeNet5,
    LeNet5DSC,
    lecun_c3_table,
    parameter_table,
    trace,
)


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


def test_lecun_c3_table_is_table_one_of_the_paper():
    table = lecun_c3_table()
    assert table.shape == (16, 6) and table.dtype == torch.bool
    assert table.sum(dim=1).tolist() == [3] * 6 + [4] * 9 + [6]
    # the paper: C3 has 1,516 trainable parameters (60 5x5 kernels and 16 biases)
    assert int(table.sum()) * 5 * 5 + 16 == 1_516
    # maps 0-5 and 6-11: every cyclically contiguous run of 3 and of 4 S2 maps, once each
    runs = {frozenset(torch.nonzero(row).flatten().tolist()) for row in table[:12]}
    assert runs == {frozenset((o + i) % 6 for i in range(n)) for n in (3, 4) for o in range(6)}
    # maps 12-14: four S2 maps that are not a cyclic run; every S2 map is read by 10 C3 maps
    for row in table[12:15]:
        assert frozenset(torch.nonzero(row).flatten().tolist()) not in runs
    assert table.sum(dim=0).tolist() == [10] * 6


@torch.no_grad()
def fold_depthwise_bias(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose separable layers have no depthwise bias ``beta``: the pointwise
    weights ``P [C_out, C_in]`` carry it into every output channel as the constant ``P @ beta``,
    which is added to the pointwise bias instead."""
    folded = copy.deepcopy(model)
    for layer in folded.modules():
        if isinstance(layer, DepthwiseSeparableConv2d) and layer.depthwise.bias is not None:
            layer.pointwise.bias += layer.pointwise.weight[:, :, 0, 0] @ layer.depthwise.bias
            layer.depthwise.bias = None
    return folded


@pytest.mark.parametrize("make", [LeNet5DSC, lambda: DepthwiseSeparableConv2d(3, 5, 3, padding=1),
                                  lambda: DepthwiseSeparableConv2d(2, 4, (3, 5), bias=False)])
def test_folding_the_depthwise_bias_keeps_the_function(make):
    torch.manual_seed(0)
    model = make()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # biases far from zero, so a wrong fold shows
    channels = 1 if isinstance(model, LeNet5DSC) else model.depthwise.in_channels
    x = torch.randn(2, channels, 28, 28)
    folded = fold_depthwise_bias(model)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-4)
    layers = [m for m in folded.modules() if isinstance(m, DepthwiseSeparableConv2d)]
    assert layers and all(m.depthwise.bias is None for m in layers)


def test_trace_records_every_call_in_order_before_in_place_activations():
    model = LeNet5()
    x = torch.randn(2, 1, 28, 28)
    calls = trace(model, x)
    assert [c.name for c in calls] == ["c1", "act", "s2", "c3", "act", "s4", "c5", "act", "f6",
                                       "act", "output"]
    assert calls[0].output.min() < 0  # c1 copied before the in-place ReLU
    torch.testing.assert_close(calls[-1].output, model(x))
    assert all(not m._forward_hooks for m in model.modules())
    names = [c.name for c in trace(LeNet5DSC(), x)]
    assert names[:3] == ["c1.depthwise", "c1.pointwise", "c1"]
