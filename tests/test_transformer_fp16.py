"""Float16 at its edges: rows of tiny scale, scores beyond 65504, and no silent inf or NaN."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from book.inspection import forward_hooks
from book.transformer.layers import exponent_limits
from book.transformer.model import (
    LayerNorm,
    MatMul,
    RangeError,
    Scores,
    Softmax,
    Transformer,
    TransformerConfig,
)
from book.transformer.numerics import (
    FINITE,
    NON_FINITE,
    against_pytorch,
    layer_norm_sweep,
    magnitude_sweep,
    precision_table,
    textbook_layer_norm,
)
from book.transformer.reversal import DIGIT_OFFSET, VOCAB, ReversalTask
from book.transformer.strict_fp16 import strict_fp16


def rows(scale, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 256, generator=g, dtype=torch.float64) * scale).half()


def test_layer_norm_keeps_the_signal_of_rows_of_scale_5e_6():
    x = rows(5e-6)  # the failing input: the old r = sqrt(eps) / s squared to inf
    reference = nn.functional.layer_norm(x.double(), (256,), eps=1e-5)
    ours = (LayerNorm(256).half()(x).double() - reference).abs().max().item()
    pytorch = (nn.functional.layer_norm(x, (256,), eps=1e-5).double() - reference).abs().max()
    assert reference.abs().max() > 5e-3  # outputs of that size; the old error was 4.7e-3
    assert ours < 1e-5 and ours < 3 * pytorch.item()


def test_layer_norm_is_accurate_at_every_row_scale():
    sweep = layer_norm_sweep(np.geomspace(1e-8, 1e4, 13), rows=16)
    ours = sweep[sweep["model"] == "ours"]
    assert (ours["outcome"] == FINITE).all()
    assert ours["relative_error"].max() < 3e-3  # a few float16 roundings, at every scale
    textbook = sweep[sweep["model"] == "textbook formula"].set_index("scale")
    assert textbook.loc[1e4, "relative_error"] == pytest.approx(1.0)  # variance overflows: 0


def test_layer_norm_of_rows_near_the_float16_ceiling():
    x = rows(5e3)
    x[:, :2] = torch.tensor([60000.0, -60000.0], dtype=torch.float16)  # centred: beyond 65504
    y = LayerNorm(256).half()(x)
    reference = nn.functional.layer_norm(x.double(), (256,), eps=1e-5)
    assert torch.isfinite(y).all()
    assert (y.double() - reference).abs().max() < 1e-2
    assert not torch.isfinite(textbook_layer_norm(x)).all() or (
        textbook_layer_norm(x).double() - reference).abs().max() > 0.5


def test_scores_scale_down_by_a_power_of_two_only_when_needed():
    g = torch.Generator().manual_seed(0)
    scores, softmax = Scores(32), Softmax()
    q, k = torch.randn(1, 2, 5, 32, generator=g).half(), torch.randn(1, 2, 7, 32, generator=g)
    exact = q.double() @ k.half().double().transpose(-2, -1)
    a, shift = scores(q, k.half())
    assert shift == 0
    torch.testing.assert_close(softmax(a).double(), torch.softmax(exact, -1), rtol=0, atol=1e-3)
    big_q, big_k = (q * 400).half(), (k * 400).half()  # scores up to about 1e6
    exact = big_q.double() @ big_k.double().transpose(-2, -1)
    assert exact.abs().max() > 65504
    a, shift = scores(big_q, big_k)
    assert shift > 0 and torch.isfinite(a).all()
    p = softmax(a, shift)
    torch.testing.assert_close(p.double(), torch.softmax(exact, -1), rtol=0, atol=2e-3)


@pytest.mark.parametrize(("dtype", "low", "high"), [(torch.float16, -14, 16),
                                                    (torch.bfloat16, -126, 128)])
def test_the_limits_are_those_of_the_dtype_in_use(dtype, low, high):
    assert exponent_limits(dtype) == (low, high)
    # scores up to about 1e6: beyond float16's range, far inside bfloat16's
    g = torch.Generator().manual_seed(0)
    q = (400 * torch.randn(1, 2, 5, 32, generator=g)).to(dtype)
    k = (400 * torch.randn(1, 2, 7, 32, generator=g)).to(dtype)
    shift = Scores(32).shift(q, k)
    assert (shift > 0) == (dtype == torch.float16)
    bound = 32 * q.abs().max().item() * k.abs().max().item() / 2.0**shift
    assert bound < 2.0 ** (high - 2) <= 2 * bound or shift == 0
    # a row below float16's smallest normal number is an ordinary row in bfloat16
    x = (torch.randn(4, 256, generator=g, dtype=torch.float64) * 2.0**-40).to(dtype)
    y = LayerNorm(256).to(dtype)(x).double()
    reference = nn.functional.layer_norm(x.double(), (256,), eps=1e-5)
    assert (y - reference).abs().max() <= 2 * torch.finfo(dtype).eps * reference.abs().max()


def test_centred_scores_keep_the_precision_float16_scores_lose():
    # keys 1 apart at scores of about 4,000, where float16 is 2 apart (rounding: +-1)
    q = torch.zeros(1, 1, 1, 32, dtype=torch.float16)
    q[..., :2] = torch.tensor([64.0, 1.0])
    k = torch.zeros(1, 1, 4, 32, dtype=torch.float16)
    k[..., 0], k[..., 1] = 62.5, torch.arange(4.0)  # q k^T: 4000, 4001, 4002, 4003
    exact = torch.softmax(q.double() @ k.double().transpose(-2, -1), -1)
    rounded = torch.softmax((q @ k.transpose(-2, -1)).double(), -1)
    assert (rounded - exact).abs().max() > 0.1  # the scores as float16 holds them
    a, shift = Scores(32)(q, k)
    torch.testing.assert_close(Softmax()(a, shift).double(), exact, rtol=0, atol=1e-3)


def test_ours_is_as_accurate_as_pytorchs_float16_at_every_scale_where_it_is_finite():
    # seed 2: where rounding q / sqrt(d_k) and the scores to float16 made ours up to 98 times
    # as far from float64 as PyTorch's composite path (sigma 46, 1000 and 4642)
    table = against_pytorch(magnitude_sweep(np.geomspace(1, 1e4, 13), seed=2))
    assert table["ours"].notna().all()  # finite at every scale
    assert table["PyTorch float16, composite (train)"].notna().all()
    assert (table["ours / PyTorch"] < 2.5).all(), table


def test_embedded_inputs_of_std_167_and_300_give_finite_accurate_output():
    # The float64 scores of the encoder exceed float16's 65504 here: the old model returned
    # NaN. PyTorch's composite float16 path (float32 attention inside) is the yardstick.
    sweep = magnitude_sweep([167.0, 300.0], batch=2).set_index(["sigma", "model"])
    for sigma in (167.0, 300.0):
        ours = sweep.loc[(sigma, "ours")]
        composite = sweep.loc[(sigma, "PyTorch float16, composite (train)")]
        assert ours["outcome"] == FINITE
        assert ours["max_abs_error"] < 2 * composite["max_abs_error"] + 2e-3


def test_the_textbook_formulas_break_where_ours_does_not():
    sweep = magnitude_sweep([1.0, 10.0], batch=2).set_index(["sigma", "model"])
    assert sweep.loc[(10.0, "textbook formulas"), "outcome"] == NON_FINITE
    assert sweep.loc[(10.0, "ours"), "outcome"] == FINITE
    assert sweep.loc[(1.0, "textbook formulas"), "outcome"] == FINITE


def test_rows_shared_counts_every_row_of_both_self_attentions():
    # At a tiny scale every weight is near 1/L: every row shares its weight, except the first
    # row of the causal self-attention, which has one key. Encoder: 12 rows per head and
    # sequence; decoder: 9, of which 1 has no second key.
    sweep = magnitude_sweep([1e-3], batch=2)
    assert (sweep["rows_shared"] == (12 + 8) / (12 + 9)).all()


def model_in(seed=0):
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(VOCAB, VOCAB, max_len=16)).eval()


def test_an_unrepresentable_value_raises_naming_the_step_and_its_magnitude():
    model = model_in()
    src = torch.randint(DIGIT_OFFSET, VOCAB, (2, 6))
    tgt = torch.randint(DIGIT_OFFSET, VOCAB, (2, 5))
    seen = []
    watch = [(model.generator, lambda m, args: seen.append(args[0]))]
    with torch.no_grad(), forward_hooks(watch, pre=True):
        model.decoder_norm.bias.fill_(1000)
        model.generator.weight.fill_(1)  # every logit about 256 * 1000: beyond 65504
        with pytest.raises(RangeError, match="generator: float16 overflow: the result") as info:
            model(src, tgt)
        with pytest.raises(RangeError, match="generator"):
            model.generate(src, 4)
    w, b = model.generator.weight.double(), model.generator.bias.double()
    exact = (seen[0].double() @ w.T + b).abs().max().item()
    assert info.value.step == "generator"
    assert info.value.magnitude == pytest.approx(exact, rel=1e-6) and exact > 65504
    assert f"reaches {exact:.4g}" in str(info.value)


def test_a_hidden_layer_that_overflows_is_named():
    model = model_in()
    with torch.no_grad():
        model.encoder.ffn.linear1.weight[:, 0] = 60000
        with pytest.raises(RangeError, match=r"encoder\.ffn\.linear1: float16 overflow: the "
                                             r"result is out of range"):
            model(torch.randint(DIGIT_OFFSET, VOCAB, (2, 6)),
                  torch.randint(DIGIT_OFFSET, VOCAB, (2, 3)))


def test_a_strict_partial_sum_that_overflows_is_reported_as_such():
    a = torch.tensor([[40000.0, 40000.0, -40000.0]], dtype=torch.float16)
    b = torch.ones(3, 1, dtype=torch.float16)
    assert (a @ b).item() == 40000  # PyTorch's float32 running sum holds 80000
    with strict_fp16(), pytest.raises(RangeError, match=r"an intermediate value \(the result "
                                                        r"itself fits\)") as info:
        MatMul()(a, b)
    assert info.value.magnitude == 40000


def test_inputs_holding_inf_are_refused():
    model = model_in()
    x = torch.zeros(1, 3, 256, dtype=torch.float16)
    x[0, 1, 7] = math.inf
    with pytest.raises(ValueError, match="src_x holds inf or NaN"):
        model.core(x, torch.zeros(1, 2, 256, dtype=torch.float16), None, None)


@pytest.mark.parametrize("weight_scale", [1.0, 30.0, 1000.0])
def test_a_float16_forward_pass_never_returns_inf_or_nan(weight_scale):
    """Across input magnitudes and weight scales: a finite output, or a RangeError."""
    model = model_in(seed=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(weight_scale)
    g = torch.Generator().manual_seed(3)
    for sigma in (1.0, 100.0, 3000.0):
        src_x = (sigma * torch.randn(2, 6, 256, generator=g)).half()
        tgt_x = (sigma * torch.randn(2, 4, 256, generator=g)).half()
        try:
            with torch.no_grad():
                out = model.core(src_x, tgt_x, None, model.causal(
                    torch.zeros(2, 1, 1, 4, dtype=torch.float16)))
        except RangeError as error:
            assert error.magnitude > 65504 or "intermediate" in str(error)
            continue
        assert torch.isfinite(out).all()


def test_the_precision_table_compares_four_ways_against_float64():
    task = ReversalTask(n_train=50, n_test=20)
    torch.manual_seed(0)
    model = Transformer(task.model_config(torch.float32)).eval()
    data = task.data()
    table = precision_table(model, task, data["src_test"][:8], data["tgt_test"][:8],
                            n_random=16)
    assert list(table.index) == ["float32", "bfloat16", "float16", "float16, strict"]
    error = table["mean_abs_error"]
    assert error["float32"] < 1e-5 < error["float16"] < error["bfloat16"]
    assert error["float16, strict"] != error["float16"]  # the strict mode did run
    assert table["exact_match"].between(0, 1).all()
    assert model.dtype == torch.float32  # left as it was
