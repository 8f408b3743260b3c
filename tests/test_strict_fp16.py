"""Strict 16-bit accumulation: the running sums are rounded to 16 bits after every block."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from book.transformer.model import Transformer, TransformerConfig
from book.transformer.reversal import DIGIT_OFFSET, VOCAB
from book.transformer.strict_fp16 import (
    linear,
    matmul,
    row_mean,
    row_sum,
    strict_block,
    strict_fp16,
)


def test_one_plus_ten_thousand_ten_thousandths():
    x = torch.tensor([1.0] + [1e-4] * 10_000, dtype=torch.float16)
    assert row_sum(x).item() == 2.0  # PyTorch: a float32 running sum, rounded once
    with strict_fp16():
        assert row_sum(x).item() == 1.0  # 1 + 1e-4 rounds back to 1 in float16, every time
        assert row_mean(x[None]).item() == pytest.approx(1 / 10_001, rel=1e-3)
    assert row_mean(x[None]).item() == pytest.approx(2 / 10_001, rel=1e-3)
    with strict_fp16(block=10_001):
        assert row_sum(x).item() == 2.0  # one block: one rounding, PyTorch's result
    x32 = x.float()
    with strict_fp16():
        assert torch.equal(row_sum(x32), x32.sum(-1, keepdim=True))  # float32: PyTorch's


def per_term(acc, a, b):
    """The definition for block 1, spelt out: acc <- round16(acc + a_k b_k), exact in float64."""
    for k in range(a.shape[-1]):
        acc = (acc.double() + a[..., k : k + 1].double() * b[..., k : k + 1, :].double())
        acc = acc.half()
    return acc


def per_block(acc, a, b, block):
    """The definition for block b: the block summed in float32, added in float32, rounded."""
    for k in range(0, a.shape[-1], block):
        acc = (acc.float() + a[..., k : k + block].float() @ b[..., k : k + block, :].float())
        acc = acc.half()
    return acc


@pytest.mark.parametrize("shape", [(5, 40, 7), (2, 3, 6, 33, 4)])
def test_strict_matmul_is_its_definition(shape):
    g = torch.Generator().manual_seed(0)
    *batch, m, k, n = shape
    a = (torch.randn(*batch, m, k, generator=g) * 3).half()
    b = torch.randn(*batch, k, n, generator=g).half()
    zero = torch.zeros(*batch, m, n, dtype=torch.float16)
    with strict_fp16():
        got = matmul(a, b)
    assert torch.equal(got, per_term(zero, a, b))
    assert not torch.equal(got, a @ b)  # it does differ from PyTorch's float32 accumulation
    for block in (4, 16):
        with strict_fp16(block=block):
            assert torch.equal(matmul(a, b), per_block(zero, a, b, block))


def test_strict_linear_starts_its_running_sum_at_the_bias():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 64, generator=g).half()
    w = (torch.randn(8, 64, generator=g) * 0.2).half()
    bias = torch.randn(8, generator=g).half()
    start = bias.expand(3, 5, 8)
    with strict_fp16():
        assert torch.equal(linear(x, w, bias), per_term(start, x, w.t()))
        assert torch.equal(linear(x, w, None), per_term(torch.zeros_like(start), x, w.t()))
    with strict_fp16(block=8):
        assert torch.equal(linear(x, w, bias), per_block(start, x, w.t(), 8))


def test_the_mode_is_scoped_and_checked():
    half, single = torch.zeros(1, dtype=torch.float16), torch.zeros(1)
    assert strict_block(half) is None
    with strict_fp16(block=4):
        assert strict_block(half) == 4 and strict_block(single) is None
        with strict_fp16():
            assert strict_block(half) == 1
        assert strict_block(half) == 4
    assert strict_block(half) is None
    with pytest.raises(ValueError, match="block must be a positive int"), strict_fp16(block=0):
        pass


class _Accumulations(TorchDispatchMode):
    """The floating-point dtypes of every aten result, and the reductions run on 16 bits."""

    SUMS = frozenset({"mm", "bmm", "addmm", "baddbmm", "matmul", "sum", "mean", "dot", "linear",
                      "_softmax", "native_layer_norm", "var", "var_mean"})

    def __init__(self):
        super().__init__()
        self.dtypes, self.sums = set(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        inputs = [t for t in tree_leaves(args) if isinstance(t, torch.Tensor)]
        if name in self.SUMS and any(t.dtype == torch.float16 for t in inputs):
            self.sums.append(name)
        self.dtypes |= {t.dtype for t in tree_leaves(out)
                        if isinstance(t, torch.Tensor) and t.is_floating_point()}
        return out


def test_in_strict_mode_the_model_never_accumulates_outside_16_bits():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(VOCAB, VOCAB, max_len=16)).eval()
    src = torch.randint(DIGIT_OFFSET, VOCAB, (2, 7))
    tgt = torch.randint(DIGIT_OFFSET, VOCAB, (2, 5))
    with torch.no_grad(), _Accumulations() as default:
        expected = model(src, tgt)
    assert default.sums  # PyTorch's kernels do the sums (in float32 registers)
    with torch.no_grad(), strict_fp16(), _Accumulations() as strict:
        got = model(src, tgt)
    assert strict.sums == [] and strict.dtypes == {torch.float16}
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    assert 0 < (got.float() - expected.float()).abs().max() < 0.1  # close, not the same
