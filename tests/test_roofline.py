"""The roofline: the two roofs and the ridge, measured roofs that are plausible, and layer
calls that line up with the rows of the operation and traffic counts."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from book.mnist.models import LeNet5, LeNet5DSC
from book.speed.roofline import Roofs, layer_calls, layer_rates, measure_roofs
from book.speed.traffic import count_traffic

ROOFS = Roofs(peak=1e12, bandwidth=1e11, matmul_size=512, copy_bytes=2**28)


def test_the_attainable_rate_is_the_lower_of_the_two_roofs():
    roofs = Roofs(peak=100e9, bandwidth=10e9, matmul_size=512, copy_bytes=2**20)
    assert roofs.ridge == 10.0
    np.testing.assert_allclose(roofs.attainable([0.5, 10, 1000]), [5e9, 100e9, 100e9])


def test_measured_roofs_are_positive_and_record_how_they_were_measured():
    with torch.inference_mode():
        roofs = measure_roofs(matmul_size=64, copy_bytes=2**20, rounds=2)
    assert type(roofs.peak) is float and type(roofs.bandwidth) is float
    assert (roofs.matmul_size, roofs.copy_bytes) == (64, 2**20)
    # any CPU of this century: between a megaflop and a petaflop, a MB/s and a TB/s
    assert 1e6 < roofs.peak < 1e15 and 1e6 < roofs.bandwidth < 1e12
    assert math.isclose(roofs.ridge, roofs.peak / roofs.bandwidth)


@pytest.mark.parametrize(("kwargs", "name"), [({"matmul_size": 0}, "matmul_size"),
                                              ({"copy_bytes": -4}, "copy_bytes")])
def test_bad_roof_sizes_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        measure_roofs(**kwargs)


@pytest.mark.parametrize("make", [LeNet5, LeNet5DSC])
def test_layer_calls_are_the_rows_of_the_traffic_table_with_their_own_inputs(make):
    model = make()
    x = torch.randn(2, 1, 28, 28)
    calls = layer_calls(model, x)
    table = count_traffic(model, (2, 1, 28, 28))
    assert [name for name, _, _ in calls] == table["layer"].tolist()
    for (name, _, args), read in zip(calls, table["input_bytes"], strict=True):
        assert args[0].numel() * args[0].element_size() == read, name
    first_act = next(args for name, _, args in calls if name == "act")
    assert first_act[0].min() < 0  # copied before the in-place ReLU overwrote it


def test_layer_rates_time_every_call_of_every_net():
    nets = {"a": nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "b": nn.Sequential(nn.Linear(4, 2))}
    table = layer_rates(nets, torch.randn(5, 4), ROOFS, rounds=3, block_seconds=0.001)
    assert list(zip(table["net"], table["layer"], strict=True)) == [("a", "0"), ("a", "1"),
                                                                    ("b", "0")]
    assert (table["min"] > 0).all()
    assert (table["min"] <= table["median"]).all() and (table["median"] <= table["max"]).all()


def test_layer_rates_put_each_call_under_the_roof_with_its_counts():
    x = torch.randn(4, 1, 28, 28)
    table = layer_rates({"LeNet-5": LeNet5(), "DSC": LeNet5DSC()}, x, ROOFS, rounds=2,
                        block_seconds=0.001)
    counts = count_traffic(LeNet5DSC(), (4, 1, 28, 28), bias=True, pooling=True)
    dsc = table[table["net"] == "DSC"].reset_index(drop=True)
    assert dsc["layer"].tolist() == counts["layer"].tolist()
    assert (dsc["ops"] == counts["ops"]).all() and (dsc["bytes"] == counts["bytes"]).all()
    np.testing.assert_allclose(table["rate"], table["ops"] / table["min"])
    np.testing.assert_allclose(table["of_roof"],
                               table["rate"] / ROOFS.attainable(table["intensity"]))


def test_layer_rates_refuse_a_net_with_arithmetic_outside_its_leaf_modules():
    class Gated(nn.Sequential):
        def forward(self, x):
            return x * super().forward(x)

    with pytest.raises(ValueError, match="does arithmetic in its own forward"):
        layer_rates({"g": Gated(nn.Linear(3, 3))}, torch.randn(2, 3), ROOFS, rounds=1)


def test_layer_rates_refuse_a_net_counted_by_units_it_cannot_time_alone():
    from book.mnist.models import DepthwiseSeparableConv2d

    counters = {DepthwiseSeparableConv2d: lambda m, i, o, **flags: {}}
    with pytest.raises(ValueError, match="the layer calls and the count's rows differ"):
        layer_rates({"DSC": LeNet5DSC()}, torch.randn(1, 1, 28, 28), ROOFS, rounds=1,
                    counters=counters)
