"""Operation counts: the per-layer count, the closed forms and PyTorch's FlopCounterMode agree
exactly, and arithmetic the counter does not know is refused."""

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import MNIST, SETTINGS, conv_configs, pool_configs, totals
from torch import nn

from book.counting.closed_forms import conv2d_ops, conv_output_size, linear_ops
from book.counting.counter import (
    OP_KINDS,
    UncountedOperationError,
    closed_form_ops,
    count_operators,
    count_ops,
    pytorch_flops,
)
from book.mnist.models import DepthwiseSeparableConv2d, LeNet5, LeNet5DSC

# --------------------------------------------------------------------------- LeNet-5 totals

# Output elements of the layers with a bias, per stage, and of the two pooling layers.
REGULAR_BIASED = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84 + 10
SEPARABLE_BIASED = (28 * 28 + 6 * 28 * 28) + (6 * 10 * 10 + 16 * 10 * 10) + (16 + 120) + 84 + 10
POOL_OUTPUTS = 6 * 14 * 14 + 16 * 5 * 5


@pytest.mark.parametrize(("model", "mults", "adds"), [
    (LeNet5, 416_520, 410_002),
    (LeNet5DSC, 62_144, 54_226),
])
def test_lenet_totals_match_the_earlier_report(model, mults, adds):
    torch.manual_seed(0)
    net = model()
    assert totals(count_ops(net, MNIST)) == (mults, adds)
    biased = REGULAR_BIASED if model is LeNet5 else SEPARABLE_BIASED
    assert totals(count_ops(net, MNIST, bias=True)) == (mults, adds + biased)
    assert totals(count_ops(net, MNIST, pooling=True)) == (mults + POOL_OUTPUTS,
                                                           adds + 3 * POOL_OUTPUTS)


def test_with_bias_every_layer_adds_as_often_as_it_multiplies():
    for model in (LeNet5(), LeNet5DSC()):
        table = count_ops(model, MNIST, bias=True)
        assert (table["mults"] == table["adds"]).all()


def test_separable_rows_are_the_two_stages_in_execution_order():
    table = count_ops(LeNet5DSC(), MNIST)
    convs = table[table["kind"] == "Conv2d"]
    assert list(convs["layer"]) == ["c1.depthwise", "c1.pointwise", "c3.depthwise",
                                    "c3.pointwise", "c5.depthwise", "c5.pointwise"]
    assert list(convs["mults"]) == [19_600, 4_704, 15_000, 9_600, 400, 1_920]
    assert list(convs["adds"]) == [18_816, 0, 14_400, 8_000, 384, 1_800]
    assert list(convs["output_shape"]) == [(1, 1, 28, 28), (1, 6, 28, 28), (1, 6, 10, 10),
                                           (1, 16, 10, 10), (1, 16, 1, 1), (1, 120, 1, 1)]


def test_every_call_is_a_row_and_activations_count_zero():
    table = count_ops(LeNet5(), MNIST)
    assert list(table["layer"]) == ["c1", "act", "s2", "c3", "act", "s4", "c5", "act", "f6",
                                    "act", "output"]
    assert list(table.columns) == ["layer", "kind", "output_shape", *OP_KINDS]
    zero = table[table["kind"].isin(["ReLU", "AvgPool2d"])]
    assert (zero[list(OP_KINDS)] == 0).all().all()
    assert all(table[k].dtype == "int64" for k in OP_KINDS)


def test_counts_scale_with_the_batch_and_restore_training_mode():
    model = LeNet5DSC().train()
    one = totals(count_ops(model, MNIST))
    assert totals(count_ops(model, (7, 1, 28, 28))) == (7 * one[0], 7 * one[1])
    assert all(m.training for m in model.modules())


def test_inputs_as_tensor_tuple_and_model_dtype():
    model = LeNet5().double()
    expected = totals(count_ops(LeNet5(), MNIST))
    assert totals(count_ops(model, MNIST)) == expected  # zeros made in float64
    x = torch.zeros(MNIST, dtype=torch.float64)
    assert totals(count_ops(model, x)) == totals(count_ops(model, (x,))) == expected


# --------------------------------------------------------------------------- three counts agree

def test_lenet_layers_agree_with_closed_forms_and_flop_counter():
    for model in (LeNet5(), LeNet5DSC()):
        for bias in (False, True):
            hooks = count_ops(model, MNIST, bias=bias)
            hooks = hooks[hooks["kind"].isin(["Conv2d", "Linear"])].reset_index(drop=True)
            closed = closed_form_ops(model, MNIST, bias=bias)
            assert len(closed) == (5 if type(model) is LeNet5 else 8)
            pd.testing.assert_frame_equal(closed, hooks[["layer", "mults", "adds"]])
        flops = pytorch_flops(model, MNIST)
        assert [flops[name] for name in closed["layer"]] == list(2 * closed["mults"])
        assert flops[""] == 2 * int(closed["mults"].sum())


@SETTINGS
@given(conv_configs())
def test_conv_hooks_closed_form_and_flop_counter_agree(cfg):
    layer = nn.Conv2d(cfg["c_in"], cfg["c_out"], cfg["k"], stride=cfg["stride"],
                      padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    shape = (cfg["batch"], cfg["c_in"], *cfg["size"])
    table = count_ops(layer, shape, bias=cfg["bias"])
    closed = conv2d_ops(cfg["c_in"], cfg["c_out"], cfg["size"], cfg["k"], stride=cfg["stride"],
                        padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"],
                        bias=cfg["bias"], batch=cfg["batch"])
    assert (len(table), totals(table)) == (1, (closed["mults"], closed["adds"]))
    assert table.loc[0, "output_shape"][2:] == conv_output_size(
        cfg["size"], cfg["k"], stride=cfg["stride"], padding=cfg["padding"],
        dilation=cfg["dilation"])
    assert pytorch_flops(layer, shape)[""] == 2 * closed["mults"]


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.lists(st.integers(1, 4), max_size=2),
       st.booleans())
def test_linear_hooks_closed_form_and_flop_counter_agree(n_in, n_out, lead, bias):
    layer = nn.Linear(n_in, n_out)
    shape = (*lead, n_in) if lead else (1, n_in)
    batch = int(torch.Size(shape[:-1]).numel())
    closed = linear_ops(n_in, n_out, bias=bias, batch=batch)
    assert totals(count_ops(layer, shape, bias=bias)) == (closed["mults"], closed["adds"])
    assert pytorch_flops(layer, shape)[""] == 2 * closed["mults"]


def test_pooling_counts():
    avg = count_ops(nn.AvgPool2d(3, stride=2), (2, 4, 9, 9), pooling=True)
    assert totals(avg) == (2 * 4 * 16, 2 * 4 * 16 * 8)
    maxed = count_ops(nn.MaxPool2d((2, 3)), (1, 3, 8, 9), pooling=True)
    assert maxed.loc[0, "comparisons"] == 3 * 4 * 3 * 5
    assert totals(maxed) == (0, 0)
    assert (count_ops(nn.MaxPool2d(2), (1, 3, 8, 8))[list(OP_KINDS)] == 0).all().all()
    # adaptive windows of 5 -> 3 are [0, 2), [1, 4), [3, 5): 2 + 3 + 2 = 7 elements per axis
    adaptive = count_ops(nn.AdaptiveAvgPool2d(3), (1, 2, 5, 5), pooling=True)
    assert totals(adaptive) == (2 * 9, 2 * (7 * 7 - 9))
    assert count_ops(nn.AdaptiveMaxPool2d((3, 5)), (1, 2, 5, 5), pooling=True).loc[
        0, "comparisons"] == 2 * (7 * 5 - 15)
    # an average over windows of one value each (AlexNet's 6x6 -> 6x6) is an identity
    assert totals(count_ops(nn.AdaptiveAvgPool2d(6), (1, 3, 6, 6), pooling=True)) == (0, 0)


def test_partial_pooling_windows_count_what_they_compute():
    # 3x3 windows, stride 3, on 4x4 with ceil_mode: row and column windows of 3 and 1
    # positions, so the four windows hold 9 + 3 + 3 + 1 = 16 positions: 12 additions
    table = count_ops(nn.AvgPool2d(3, ceil_mode=True), (1, 1, 4, 4), pooling=True)
    assert (table.loc[0, "output_shape"], totals(table)) == ((1, 1, 2, 2), (4, 12))
    # padding is never read: windows of 2, 3 and 2 positions per axis on 5 inputs
    table = count_ops(nn.MaxPool2d(3, stride=2, padding=1), (1, 1, 5, 5), pooling=True)
    assert table.loc[0, "comparisons"] == 7 * 7 - 9


@SETTINGS
@given(pool_configs())
def test_pooling_windows_are_those_pytorch_averages_over(cfg):
    """An average pool of ones that sums (``divisor_override=1``) and skips the padding gives
    the size of every window: an oracle for both pooling counts."""
    shape, k, s, p = cfg["shape"], cfg["k"], cfg["stride"], cfg["padding"]
    window = torch.nn.functional.avg_pool2d(torch.ones(shape), k, s, p, ceil_mode=cfg["ceil"],
                                            count_include_pad=False, divisor_override=1)
    outputs, positions = window.numel(), int(window.sum())
    avg = count_ops(nn.AvgPool2d(k, s, p, ceil_mode=cfg["ceil"]), shape, pooling=True)
    identity = positions == outputs  # every window one value: nothing to multiply
    assert totals(avg) == (0 if identity else outputs, positions - outputs)
    maxed = count_ops(nn.MaxPool2d(k, s, p, ceil_mode=cfg["ceil"]), shape, pooling=True)
    assert maxed.loc[0, "comparisons"] == positions - outputs


# --------------------------------------------------------------------------- every operator

class Atan2(nn.Module):  # arithmetic that book.counting.costs does not know
    def forward(self, x):
        return torch.atan2(x, x)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


def test_unknown_operator_raises_naming_it_and_the_module():
    message = r"aten\.atan2\.default ran in layer '1' \(Atan2\).*refused rather than counted"
    with pytest.raises(UncountedOperationError, match=message):
        count_ops(nn.Sequential(nn.Linear(3, 3), Atan2()), (1, 3))
    with pytest.raises(UncountedOperationError, match=r"ran in the model \(Atan2\)"):
        count_ops(Atan2(), (1, 3))

    class Unused(nn.Module):  # a leaf that is never called is not an error
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 3), Atan2()

        def forward(self, x):
            return self.used(x)

    assert totals(count_ops(Unused(), (1, 3))) == (9, 6)


def test_a_module_with_parameters_that_counted_nothing_is_an_error():
    class Token(nn.Module):  # prepends a learned token: no arithmetic, yet parameters
        def __init__(self):
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 1, 4))

        def forward(self, x):  # x: (B, T, 4)
            return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)

    with pytest.raises(UncountedOperationError, match=r"layer '0' \(Token\) holds parameters"):
        count_ops(nn.Sequential(Token(), nn.Linear(4, 2)), (2, 3, 4))


def test_arithmetic_in_a_forward_body_is_counted_in_its_modules_row():
    model = nn.Sequential()
    model.add_module("block", Residual())
    table = count_ops(model, (1, 2, 4, 4))
    assert list(table["layer"]) == ["block.conv", "block"]  # block's row: where its + ran
    assert list(table["kind"]) == ["Conv2d", "Residual"]
    assert table.loc[1, ["mults", "adds"]].tolist() == [0, 32]  # x + conv(x): 2 * 4 * 4
    assert table.loc[1, "output_shape"] == (1, 2, 4, 4)

    class Gate(nn.Module):  # squeeze-and-excitation style: x * sigmoid(mean(x))
        def forward(self, x):
            return x * torch.sigmoid(x.mean((2, 3), keepdim=True))

    gate = count_ops(Gate(), (1, 3, 4, 4)).loc[0]
    assert gate[list(OP_KINDS)].tolist() == [48, 3 * 15 + 3, 3 + 3, 3, 0, 0]


def test_subclass_with_its_own_forward_does_not_inherit_a_counter():
    def count_residual(module, inputs, output, *, bias, pooling):
        return {"adds": 1}

    counters = {Residual: count_residual}

    class DoubledResidual(Residual):
        def forward(self, x):
            return super().forward(x) * 2

    class PlainResidual(Residual):
        pass

    assert count_ops(PlainResidual(), (1, 2, 4, 4), counters=counters)["adds"].tolist() == [1]
    # counted operator by operator
    doubled = count_ops(DoubledResidual(), (1, 2, 4, 4), counters=counters)
    assert list(doubled["layer"]) == ["conv", ""]
    assert doubled.loc[1, ["mults", "adds"]].tolist() == [32, 32]


def test_a_linear_layer_counts_the_same_whatever_kernel_runs_it():
    layer = nn.Linear(4, 3)
    x = torch.zeros(5, 2, 4).transpose(0, 1)  # not contiguous: mm, then add the bias
    for bias in (False, True):
        expected = linear_ops(4, 3, bias=bias, batch=10)
        for inputs in (x, x.contiguous()):
            assert totals(count_ops(layer, inputs, bias=bias)) == (expected["mults"],
                                                                   expected["adds"])


def test_count_operators_adds_up_to_count_ops():
    for model in (LeNet5(), LeNet5DSC()):
        for options in ({}, {"bias": True, "pooling": True}):
            rows = count_ops(model, MNIST, **options)
            ops = count_operators(model, MNIST, **options)
            assert (ops[list(OP_KINDS)].sum() == rows[list(OP_KINDS)].sum()).all()
            convs = ops[ops["operator"] == "aten.convolution"]
            assert convs.query("category == 'products'")["layer"].tolist() == list(
                rows.query("kind == 'Conv2d'")["layer"])
    ops = count_operators(LeNet5(), MNIST)
    assert (ops.query("category == 'data movement'")[list(OP_KINDS)] == 0).all().all()
    assert "aten.view" in set(ops["operator"])  # flatten: listed, at no cost


def test_harmless_tensor_ops_in_a_container_are_allowed():
    class Plumbing(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):  # x: (B, T, 4)
            t = x.shape[1]
            mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
            scores = torch.zeros(t, t).masked_fill(mask, float("-inf"))
            keep = (scores == 0).unsqueeze(0).expand(x.shape[0], t, t)
            pos = torch.arange(t)
            y = torch.cat([x[:, :, :2], x[:, :, 2:]], dim=-1).clone()
            y = torch.stack([y[:, pos], y.detach()]).select(0, 0)
            y = y.transpose(1, 2).contiguous().view(x.shape[0], 4, t).transpose(1, 2)
            y = torch.where(keep[:, :, :1], y, y).to(torch.float32).reshape(-1, 4)
            return self.proj(y).unflatten(0, (x.shape[0], t))

    assert totals(count_ops(Plumbing(), (2, 3, 4))) == (6 * 16, 6 * 12)


def test_a_type_given_a_counter_is_counted_as_one_unit_in_that_count_only():
    def count_residual(module, inputs, output, *, bias, pooling):
        inner = conv2d_ops(2, 2, tuple(output.shape[-2:]), 3, padding=1, bias=bias)
        return {"mults": inner["mults"], "adds": inner["adds"] + output.numel()}

    model = nn.Sequential(Residual(), nn.ReLU(), Residual())
    table = count_ops(model, (1, 2, 4, 4), counters={Residual: count_residual})
    assert list(table["layer"]) == ["0", "1", "2"]
    assert list(table["kind"]) == ["Residual", "ReLU", "Residual"]
    assert totals(table) == (2 * 32 * 18, 2 * (32 * 17 + 32))
    operators = count_operators(model, (1, 2, 4, 4), counters={Residual: count_residual})
    assert operators.query("layer == '0'")["category"].tolist() == ["counted as a unit"]

    def count_nothing(module, inputs, output, *, bias, pooling):
        return {"divs": 1}

    assert count_ops(model, (1, 2, 4, 4), counters={Residual: count_nothing})[
        "divs"].tolist() == [1, 0, 1]
    plain = count_ops(model, (1, 2, 4, 4))  # no counters given: operator by operator
    assert list(plain["layer"]) == ["0.conv", "0", "1", "2.conv", "2"]


def test_a_counter_must_return_known_kinds_and_counts():
    def flops(module, inputs, output, *, bias, pooling):
        return {"flops": 1}

    def negative(module, inputs, output, *, bias, pooling):
        return {"mults": -1}

    with pytest.raises(TypeError, match="keys from"):
        count_ops(Atan2(), (1, 3), counters={Atan2: flops})
    with pytest.raises(ValueError, match="mults=-1"):
        count_ops(Atan2(), (1, 3), counters={Atan2: negative})


@pytest.mark.parametrize(("counters", "message"), [
    ({int: lambda *a, **k: {}}, r"counters: expected nn\.Module subclasses as keys, got <class"),
    ({nn.Linear: "count"}, "counters: the counter for Linear is not callable"),
    ([nn.Linear], "counters: expected a mapping"),
])
def test_bad_counters_are_refused_saying_what_is_wrong(counters, message):
    with pytest.raises(TypeError, match=message):
        count_ops(nn.Linear(3, 3), (1, 3), counters=counters)


def test_the_refusals_say_how_to_count_a_module_as_a_unit():
    with pytest.raises(UncountedOperationError, match=r"counters=\{ModuleType: counter\}"):
        count_ops(Atan2(), (1, 3))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: conv2d_ops(0, 6, 28, 5), "in_channels must be a positive int"),
    (lambda: conv2d_ops(1, -6, 28, 5), "out_channels must be a positive int"),
    (lambda: conv2d_ops(1, 6, (28, 0), 5), "input_size must be positive"),
    (lambda: conv2d_ops(1, 6, 4, 5), r"kernel_size 5 .* larger than the padded input 4"),
    (lambda: conv2d_ops(1, 6, 4, 5, padding=-1), "padding must be non-negative"),
    (lambda: conv2d_ops(1, 6, 4, 3, dilation=2), "spans 5"),
    (lambda: conv2d_ops(6, 16, 14, 5, groups=4), r"in_channels \(6\) must be divisible by groups"),
    (lambda: conv2d_ops(6, 9, 14, 5, groups=2), r"out_channels \(9\) must be divisible"),
    (lambda: conv2d_ops(1, 6, 28, 5, stride=0), "stride must be positive"),
    (lambda: conv2d_ops(1, 6, 28, (5, 5, 5)), "kernel_size must be an int or 2 ints"),
    (lambda: linear_ops(0, 10), "in_features must be a positive int"),
    (lambda: linear_ops(10, 10, batch=0), "batch must be a positive int"),
    (lambda: count_ops(LeNet5(), (1, 1, 0, 28)), "inputs: every size of the shape"),
    (lambda: count_ops(LeNet5(), "1x28"), "inputs: expected a shape"),
    (lambda: count_ops(nn.Conv2d(1, 1, 5), (1, 1, 4, 4)),
     r"the model \(Conv2d\): kernel_size 5 .* padded input 4"),
    (lambda: count_ops(nn.Sequential(DepthwiseSeparableConv2d(1, 2, 7)), (1, 1, 6, 6)),
     r"layer '0.depthwise' \(Conv2d\): kernel_size 7"),
])
def test_bad_arguments_raise_value_error_saying_which(call, message):
    with pytest.raises(ValueError, match=message):
        call()
