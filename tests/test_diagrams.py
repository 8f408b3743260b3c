"""Network diagrams are read off the models: every layer, its shape and its parameters."""

import matplotlib
import pytest
import torch
from torch import nn

from book.mnist.figures import network_rows, plot_network
from book.mnist.models import LeNet5, LeNet5DSC

matplotlib.use("Agg")


def test_rows_follow_the_forward_pass_of_lenet5():
    rows = network_rows(LeNet5())
    assert [name for name, _ in rows] == ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    stages = [stage for _, st in rows for stage in st]
    assert [s.shape for s in stages] == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5),
                                         (120, 1, 1), (84,), (10,)]
    assert stages[0].text == "conv 5×5, 1 → 6, padding 2, ReLU"
    assert stages[-1].text == "linear 84 → 10"  # no activation after the output
    assert sum(s.parameters for s in stages) == sum(p.numel() for p in LeNet5().parameters())


def test_separable_rows_have_a_depthwise_and_a_pointwise_stage():
    rows = dict(network_rows(LeNet5DSC()))
    assert [s.name for s in rows["c3"]] == ["c3.depthwise", "c3.pointwise"]
    assert [s.kind for s in rows["c3"]] == ["depthwise", "pointwise"]
    assert [s.shape for s in rows["c3"]] == [(6, 10, 10), (16, 10, 10)]
    # the ReLU follows the whole separable layer, so it is written into the pointwise box
    assert rows["c1"][1].text == "pointwise 1×1, 1 → 6, ReLU"
    assert "ReLU" not in rows["c1"][0].text


def test_an_unknown_layer_is_an_error_not_a_blank_box():
    class Odd(nn.Module):
        def forward(self, x):
            return 2 * x

    model = nn.Sequential(nn.Flatten(), Odd())
    with pytest.raises(TypeError, match="Flatten"):
        network_rows(model, (1, 4))


def test_models_with_different_layers_cannot_share_a_diagram():
    with pytest.raises(ValueError, match="same top-level layers"):
        plot_network({"LeNet-5": LeNet5(), "pool": nn.Sequential(nn.AvgPool2d(2))})


def test_plot_network_draws_one_box_per_stage():
    fig = plot_network({"LeNet-5": LeNet5(), "LeNet-5 DSC": LeNet5DSC()})
    boxes = [p for p in fig.axes[0].patches if p.get_width() > 1]
    assert len(boxes) == 7 + 10
    assert torch.is_grad_enabled()  # tracing does not leave gradients switched off
