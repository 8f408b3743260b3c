"""Memory traffic: every layer's bytes read and written agree with counts made by hand."""

import pytest
import torch
from torch import nn

from book.counting.counter import count_ops
from book.mnist.models import DepthwiseSeparableConv2d, LeNet5, LeNet5DSC
from book.speed.traffic import TRAFFIC_COLUMNS, count_traffic

F32 = 4  # bytes per float32 value


def only_row(model, shape, **flags):
    table = count_traffic(model, shape, **flags)
    assert len(table) == 1
    return table.iloc[0]


def assert_traffic(row, inputs, weights, outputs):
    """``inputs``, ``weights``, ``outputs``: numbers of float32 values, counted by hand."""
    assert tuple(int(row[c]) for c in TRAFFIC_COLUMNS) == (F32 * inputs, F32 * weights,
                                                            F32 * outputs)
    assert row["bytes"] == F32 * (inputs + weights + outputs)


def test_a_convolution_reads_its_input_and_kernel_once_and_writes_its_output_once():
    # 2 images of 3 x 10 x 10, 8 kernels of 3 x 3 x 3 and 8 biases, output 2 x 8 x 10 x 10
    row = only_row(nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 10), bias=True)
    assert_traffic(row, 2 * 3 * 10 * 10, 8 * 3 * 3 * 3 + 8, 2 * 8 * 10 * 10)
    outputs = 2 * 8 * 10 * 10
    assert (row["mults"], row["adds"]) == (outputs * 27, outputs * 26 + outputs)
    assert row["ops"] == outputs * 54
    assert row["intensity"] == pytest.approx(outputs * 54 / (F32 * (600 + 224 + 1600)))


def test_a_depthwise_convolution_reads_one_small_kernel_per_channel():
    # 4 channels of 12 x 12, one 5 x 5 kernel and one bias per channel, output 4 x 8 x 8
    row = only_row(nn.Conv2d(4, 4, 5, groups=4), (1, 4, 12, 12))
    assert_traffic(row, 4 * 12 * 12, 4 * 5 * 5 + 4, 4 * 8 * 8)
    ops = 4 * 64 * 25 + 4 * 64 * 24  # 8 x 8 outputs per channel, 25 products, 24 sums
    assert row["intensity"] == pytest.approx(ops / (F32 * (576 + 104 + 256)))


def test_a_pointwise_convolution_reads_a_matrix_of_channel_weights():
    # 6 -> 16 channels on 7 x 7: a 16 x 6 weight matrix and 16 biases
    row = only_row(nn.Conv2d(6, 16, 1), (3, 6, 7, 7))
    assert_traffic(row, 3 * 6 * 49, 16 * 6 + 16, 3 * 16 * 49)


def test_a_linear_layer_reads_its_weight_matrix_once_for_the_whole_batch():
    row = only_row(nn.Linear(120, 84), (5, 120))
    assert_traffic(row, 5 * 120, 120 * 84 + 84, 5 * 84)
    # at batch 5 the weights dominate the bytes; a batch of 1000 reads them once for all
    for batch in (5, 1000):
        ops = batch * 84 * (120 + 119)
        bytes_ = F32 * (batch * 120 + 120 * 84 + 84 + batch * 84)
        intensity = only_row(nn.Linear(120, 84), (batch, 120))["intensity"]
        assert intensity == pytest.approx(ops / bytes_)
    assert intensity > 10 * row["intensity"]


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.MaxPool2d(2)])
def test_a_pooling_layer_has_no_weights_and_writes_a_quarter_of_what_it_reads(pool):
    row = only_row(pool, (2, 6, 28, 28), pooling=True)
    assert_traffic(row, 2 * 6 * 28 * 28, 0, 2 * 6 * 14 * 14)
    outputs = 2 * 6 * 14 * 14
    assert row["ops"] == (4 * outputs if isinstance(pool, nn.AvgPool2d) else 3 * outputs)
    assert row["intensity"] == pytest.approx(row["ops"] / (F32 * 5 * outputs))


def test_a_pooling_layer_counted_without_pooling_has_zero_intensity_but_its_bytes():
    row = only_row(nn.AvgPool2d(2), (1, 1, 4, 4))
    assert (row["ops"], row["bytes"], row["intensity"]) == (0, F32 * (16 + 4), 0)


def test_an_in_place_activation_reads_and_writes_its_whole_tensor():
    row = only_row(nn.ReLU(inplace=True), (2, 3, 5, 5))
    assert_traffic(row, 2 * 75, 0, 2 * 75)


def test_bytes_follow_the_element_size_of_the_dtype():
    row = only_row(nn.Conv2d(2, 3, 3).double(), (1, 2, 5, 5))
    assert (row["input_bytes"], row["weight_bytes"], row["output_bytes"]) == (
        8 * 50, 8 * (3 * 2 * 9 + 3), 8 * 27)


def test_a_batch_norm_reads_its_statistics_but_not_its_step_counter():
    row = only_row(nn.BatchNorm2d(5), (2, 5, 3, 3))
    # weight, bias, running mean and running variance; num_batches_tracked is an int64 counter
    assert_traffic(row, 90, 4 * 5, 90)


def test_every_layer_of_lenet_reads_its_own_weights_and_sees_the_shape_it_outputs():
    for make in (LeNet5, LeNet5DSC):
        model = make()
        table = count_traffic(model, (3, 1, 28, 28))
        assert table["weight_bytes"].sum() == F32 * sum(p.numel() for p in model.parameters())
        # each call of the shared ReLU is counted on its own input, which it overwrites
        for _, row in table[table["layer"] == "act"].iterrows():
            values = torch.Size(row["output_shape"]).numel()
            assert row["input_bytes"] == row["output_bytes"] == F32 * values
        # a layer's output is the next layer's input (the ReLUs work in place)
        convs = table[table["kind"] != "ReLU"]
        assert (convs["input_bytes"].iloc[1:].to_numpy()
                == convs["output_bytes"].iloc[:-1].to_numpy()).all()


def test_the_counts_are_those_of_count_ops_and_work_on_the_meta_device():
    model = LeNet5DSC().to("meta")
    table = count_traffic(model, (1024, 1, 28, 28), bias=True, pooling=True)
    ops = count_ops(model, (1024, 1, 28, 28), bias=True, pooling=True)
    assert table[list(ops.columns)].equals(ops)
    assert table.loc[table["layer"] == "c1.depthwise", "input_bytes"].item() == F32 * 1024 * 784


def test_a_container_doing_its_own_arithmetic_is_refused_not_guessed():
    class Gated(nn.Sequential):  # its own forward multiplies: a gating product
        def forward(self, x):
            return x * super().forward(x)

    with pytest.raises(ValueError, match="'' \\(Gated\\) does arithmetic in its own forward"):
        count_traffic(Gated(nn.Linear(3, 3)), (2, 3))


def test_a_module_counted_as_a_unit_reads_all_its_weights_in_one_row():
    def separable(module, inputs, output, *, bias, pooling):
        return {"mults": 1}

    row = only_row(DepthwiseSeparableConv2d(3, 5, 3), (1, 3, 6, 6),
                   counters={DepthwiseSeparableConv2d: separable})
    assert_traffic(row, 3 * 36, 3 * 9 + 3 + 5 * 3 + 5, 5 * 16)
