"""The operator table of book.counting.costs: a fused kernel counts what the operators it replaces
count, and arithmetic the table does not know is refused, naming the operator and module."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from book.counting.closed_forms import attention_cost
from book.counting.costs import COSTS, ZERO_COST
from book.counting.counter import OP_KINDS, UncountedOperationError, count_operators, count_ops


def costs(model, inputs, **options):
    """Counts per layer and category, without the zero-cost operators."""
    ops = count_operators(model, inputs, **options)
    ops = ops[ops["category"] != "data movement"]
    return ops.groupby(["layer", "category"])[list(OP_KINDS)].sum()


def row(table) -> list[int]:
    return table[list(OP_KINDS)].sum().tolist()


def test_every_listed_operator_is_an_aten_operator_listed_once():
    for name in ZERO_COST | set(COSTS):
        assert isinstance(getattr(torch.ops.aten, name), torch._ops.OpOverloadPacket), name
    assert not ZERO_COST & set(COSTS)


# --------------------------------------------------------------------------- fused = unfused

class Attention(nn.Module):
    """``F.scaled_dot_product_attention`` of ``q`` over itself and three more keys."""

    def __init__(self, mask=None, **options):
        super().__init__()
        self.mask, self.options = mask, options

    def forward(self, q):  # q: (B, h, L, E)
        k = torch.cat([q, q[..., :3, :]], dim=-2)  # (B, h, L + 3, E)
        shape = (q.shape[-2], k.shape[-2])
        mask = {"float": lambda: q.new_zeros(shape),
                "bool": lambda: q.new_ones(shape, dtype=torch.bool)}.get(self.mask)
        return F.scaled_dot_product_attention(q, k, k, attn_mask=mask and mask(),
                                              **self.options)


@pytest.mark.parametrize("options", [{}, {"mask": "float"}, {"mask": "bool"},
                                     {"is_causal": True}, {"scale": 0.3}])
def test_fused_attention_counts_what_the_reference_implementation_runs(options):
    q = torch.zeros(2, 4, 5, 8)
    fused = count_operators(Attention(**options), q)
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in set(fused["operator"])
    reference = costs(Attention(**options), q.to("meta"))  # decomposed: mul, bmm, softmax
    assert costs(Attention(**options), q).equals(reference)
    masked = bool(options.get("mask") or options.get("is_causal"))
    expected = attention_cost(2 * 4, 5, 8, 8, 8, mask=masked)
    assert row(fused) == [sum(part.get(k, 0) for part in expected.values()) for k in OP_KINDS]


class SelfAttention(nn.Module):
    def __init__(self, need_weights, masked):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.need_weights, self.masked = need_weights, masked

    def forward(self, x):  # x: (B, L, 8)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1) if self.masked \
            else None
        return self.attention(x, x, x, need_weights=self.need_weights, attn_mask=mask)[0]


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_multihead_attention_fast_path_counts_what_its_slow_path_runs(need_weights, masked):
    torch.manual_seed(0)
    model = SelfAttention(need_weights, masked)
    fused = count_operators(model, (3, 5, 8), bias=True)
    assert "aten._native_multi_head_attention" in set(fused["operator"])
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        unfused = costs(model, (3, 5, 8), bias=True)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert costs(model, (3, 5, 8), bias=True).equals(unfused)
    products = 3 * 5 * (4 * 8 * 8) + 2 * (3 * 2 * 5 * 5 * 4)  # 4 projections, QK^T and PV
    assert fused.query("category == 'products'")["mults"].sum() == products


def test_vision_transformer_counts_the_same_on_the_cpu_and_on_the_meta_device():
    def vit():
        torch.manual_seed(0)
        return VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2,
                                 hidden_dim=16, mlp_dim=32)

    cpu = count_operators(vit(), (2, 3, 32, 32), bias=True)
    assert "aten._native_multi_head_attention" in set(cpu["operator"])
    with torch.device("meta"):
        meta = vit()
    assert costs(vit(), (2, 3, 32, 32), bias=True).equals(costs(meta, (2, 3, 32, 32),
                                                                  bias=True))


# --------------------------------------------------------------------------- fused = written out

class WrittenLayerNorm(nn.Module):
    """LayerNorm over the last dimension, one operator per step of the documented count."""

    def __init__(self, d):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x):
        xc = x - x.mean(-1, keepdim=True)
        r = torch.sqrt((xc * xc).mean(-1, keepdim=True) + 1e-5).reciprocal()
        return xc * r * self.weight + self.bias


class WrittenGroupNorm(WrittenLayerNorm):
    def __init__(self, groups, channels):
        super().__init__(channels)
        self.groups = groups

    def forward(self, x):  # x: (N, C, H, W)
        g = x.unflatten(1, (self.groups, -1)).flatten(2)  # (N, G, C/G * H * W)
        gc = g - g.mean(-1, keepdim=True)
        r = torch.sqrt((gc * gc).mean(-1, keepdim=True) + 1e-5).reciprocal()
        y = (gc * r).view(x.shape)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class WrittenBatchNorm(WrittenLayerNorm):
    def forward(self, x):  # inference: stored mean 0, variance 1
        mean = torch.zeros(x.shape[1], 1, 1)
        r = torch.sqrt(torch.ones(x.shape[1], 1, 1) + 1e-5).reciprocal()
        return (x - mean) * r * self.weight[:, None, None] + self.bias[:, None, None]


@pytest.mark.parametrize(("fused", "written", "shape"), [
    (nn.LayerNorm(6), WrittenLayerNorm(6), (2, 3, 6)),
    (nn.GroupNorm(2, 4), WrittenGroupNorm(2, 4), (2, 4, 3, 3)),
    (nn.BatchNorm2d(4), WrittenBatchNorm(4), (2, 4, 3, 3)),
])
def test_normalisations_count_as_their_documented_steps(fused, written, shape):
    for bias in (False, True):
        assert row(count_ops(fused, shape, bias=bias)) == row(count_ops(written, shape,
                                                                          bias=bias))
    n = math.prod(shape)
    assert row(count_ops(fused, shape, bias=True))[1] - row(count_ops(fused, shape))[1] == n


class WrittenGelu(nn.Module):
    def forward(self, x):
        return x * 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))


class WrittenSoftmax(nn.Module):
    def forward(self, x):
        e = torch.exp(x - x.amax(-1, keepdim=True))
        return e / e.sum(-1, keepdim=True)


class WrittenHardswish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3) / 6


@pytest.mark.parametrize(("fused", "written"), [
    (nn.GELU(), WrittenGelu()), (nn.Softmax(-1), WrittenSoftmax()),
    (nn.Hardswish(), WrittenHardswish()), (nn.Hardsigmoid(), lambda x: F.relu6(x + 3) / 6),
])
def test_activations_count_as_their_formulas(fused, written):
    module = written if isinstance(written, nn.Module) else Lambda(written)
    assert row(count_ops(fused, (2, 3, 5))) == row(count_ops(module, (2, 3, 5)))


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_activation_counts_per_element():
    n = 2 * 3 * 5
    per_element = {nn.ReLU(): [0] * 6, nn.ReLU6(): [0] * 6, nn.Hardtanh(): [0] * 6,
                   nn.Sigmoid(): [0, 1, 1, 1, 0, 0], nn.SiLU(): [0, 1, 1, 1, 0, 0],
                   nn.Tanh(): [0, 0, 0, 1, 0, 0], nn.GELU("tanh"): [6, 2, 0, 1, 0, 0],
                   nn.LeakyReLU(): [1, 0, 0, 0, 0, 0], nn.PReLU(): [1, 0, 0, 0, 0, 0]}
    for module, counts in per_element.items():
        assert row(count_ops(module, (2, 3, 5))) == [n * c for c in counts], module
    # attention's _safe_softmax over 5 scores: the maximum (4) and each score against -inf (5)
    safe = count_ops(Lambda(lambda x: torch.ops.aten._safe_softmax(x, -1)), (1, 5))
    assert row(safe) == [0, 4 + 5, 5, 5, 0, 4 + 5]


def test_softmax_counts_what_a_hand_count_of_its_steps_gives():
    # one row of 4: max 3 comparisons, 4 subtractions, 4 exps, sum 3 additions, 4 divisions
    assert row(count_ops(nn.Softmax(-1), (1, 4))) == [0, 4 + 3, 4, 4, 0, 3]


# --------------------------------------------------------------------------- argument-dependent

class Accumulate(nn.Module):
    """Writes of ``values`` into a zero (4, 3) tensor, accumulating or not."""

    def __init__(self, write):
        super().__init__()
        self.write = write

    def forward(self, values):  # values: (3, 3)
        return self.write(torch.zeros(4, 3), values)


ROWS = torch.tensor([0, 1, 1])
MASK = torch.tensor([True, False, True, True])  # three of the four rows
WRITES = {  # name -> (write, additions it does into the (4, 3) target)
    "index_put accumulating": (lambda t, v: t.index_put_((ROWS,), v, accumulate=True), 9),
    "index_put plain": (lambda t, v: t.index_put_((ROWS,), v), 0),
    "index_put of a column": (lambda t, v: t.index_put_((ROWS, ROWS), v[0], accumulate=True), 3),
    "index_put through a mask": (lambda t, v: t.index_put_((MASK,), v[0], accumulate=True),
                                 3 * 3),
    "put accumulating": (lambda t, v: t.put_(ROWS, v[0], accumulate=True), 3),
    "index_add": (lambda t, v: t.index_add_(0, ROWS, v), 9),
    "scatter_add": (lambda t, v: t.scatter_add_(0, ROWS[:, None].expand(3, 3), v), 9),
    "scatter reducing": (lambda t, v: t.scatter_(0, ROWS[:, None].expand(3, 3), 2.0,
                                                 reduce="add"), 9),
    "scatter plain": (lambda t, v: t.scatter_(0, ROWS[:, None].expand(3, 3), v), 0),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_a_write_that_accumulates_counts_one_addition_per_value_written(name):
    write, additions = WRITES[name]
    assert row(count_ops(Accumulate(write), torch.ones(3, 3))) == [0, additions, 0, 0, 0, 0]


def test_clamp_counts_a_comparison_per_tensor_bound_and_none_for_a_constant():
    bound = Lambda(lambda x: torch.clamp(x, min=x[:1], max=x[1:2]))
    assert row(count_ops(bound, (2, 3))) == [0, 0, 0, 0, 0, 2 * 6]
    assert row(count_ops(Lambda(lambda x: torch.clamp(x, min=0.0)), (2, 3))) == [0] * 6


@pytest.mark.parametrize("module", [nn.RNN(3, 4), nn.RNN(3, 4, num_layers=2, bidirectional=True),
                                    nn.MultiheadAttention(4, 2)])
def test_biases_named_otherwise_are_counted_only_with_bias(module):
    # bias_ih_l0, bias_hh_l1_reverse, in_proj_bias: their additions are bias, off by default
    x = (torch.zeros(2, 1, 3),) if isinstance(module, nn.RNN) else (torch.zeros(2, 1, 4),) * 3
    without = count_operators(module, x)
    with_bias = count_operators(module, x, bias=True)
    assert "bias" not in set(without["category"])
    biased = with_bias.query("category == 'bias'")["adds"].sum()
    assert with_bias["adds"].sum() - without["adds"].sum() == biased > 0


def test_an_rnn_without_bias_counts_what_its_products_and_sums_do():
    # per step and direction: x W_ih^T (4 outputs of 3 terms) + h W_hh^T (4 of 4), added
    counted = row(count_ops(nn.RNN(3, 4, bias=False), (2, 1, 3), bias=True))
    assert counted[:2] == [2 * 4 * (3 + 4), 2 * 4 * ((3 - 1) + (4 - 1) + 1)]


# --------------------------------------------------------------------------- refused

REFUSED = {  # arithmetic that the deny-list before this table let through as zero
    "atan2": lambda x: torch.atan2(x, x), "logsumexp": lambda x: torch.logsumexp(x, -1),
    "l1 norm": lambda x: x.norm(p=1, dim=-1),
    "addr": lambda x: torch.addr(x[0, 0], x[0, 0, 0], x[0, 0, 0]),
    "cdist": lambda x: torch.cdist(x, x), "glu": lambda x: F.glu(x, -1),
    "logsigmoid": F.logsigmoid, "cumsum": lambda x: x.cumsum(-1),
    "bilinear": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
    "grid_sample": lambda x: F.grid_sample(x, x.new_zeros(2, 2, 2, 2), align_corners=False),
    "rfft": lambda x: torch.fft.rfft(x).real, "log": torch.log, "sin": torch.sin,
    "abs": torch.abs, "neg": torch.neg, "var": lambda x: x.var(-1),
"softplus": F.softplus, "elu": F.elu, "mish": F.mish,
    "prod": lambda x: x.prod(-1), "lerp": lambda x: torch.lerp(x, x, 0.3),
    "topk": lambda x: x.topk(2, -1).values, "pow 0.75": lambda x: x ** 0.75,
    "logical and": lambda x: (x > 0) & (x < 1),
    "dropout in training": lambda x: F.dropout(x, 0.5, training=True),
    "batch statistics": lambda x: F.batch_norm(x, None, None, training=True),
    "transposed convolution": lambda x: F.conv_transpose2d(x, x.new_zeros(4, 2, 3, 3)),
    "attention dropout": lambda x: F.scaled_dot_product_attention(x, x, x, dropout_p=0.5),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_arithmetic_the_table_does_not_know_is_refused_naming_it(name):
    model = nn.Sequential()
    model.add_module("block", Lambda(REFUSED[name]))
    with pytest.raises(UncountedOperationError, match=r"aten\.\w+\.\w+.* layer 'block' "
                                                      r"\(Lambda\)"):
        count_ops(model, torch.rand(2, 4, 4, 4))
