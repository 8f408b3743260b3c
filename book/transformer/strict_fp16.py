"""Strict 16-bit accumulation: the running sums of products and reductions kept in 16 bits.

What "16 bits" means in this book. Every tensor the Transformer stores (parameters, buffers,
activations, constants) is 16-bit, and every elementwise operation (``+ - * /``, square root,
exponential) returns the 16-bit rounding of its result: PyTorch computes it in float32 and
rounds once, which for ``+ - * /`` and the square root is exactly the correctly rounded 16-bit
result. Matrix products and sums are different: PyTorch's 16-bit kernels accumulate their
running sum in float32 registers and round only the final sum. A sum of 1 and ten thousand
1e-4 in float16 gives 2.0 that way; a float16 running sum gives 1.0, because 1 + 1e-4 rounds
back to 1. By default the model computes as PyTorch does.

``with strict_fp16(block=b):`` switches the functions below (which every layer of
:mod:`book.transformer.layers` uses) to a running sum kept in the operands' 16-bit dtype, so
that "all intermediate operations in 16 bits" holds literally for the sums too. A sum of
``K`` terms (a dot product of length ``K``, or a reduction over ``K`` values) is taken in
blocks of ``b`` consecutive terms: each block's terms are summed in float32, added to the
running sum in float32, and the result is rounded to 16 bits, once per block. With ``b = 1``
every partial sum is rounded: ``acc <- round16(acc + a_k * b_k)``, a 16-bit multiply-add with
one rounding (a fused multiply-add, as 16-bit hardware has). With ``b >= K`` it is one
rounding at the end, as in PyTorch's kernels. Tensors of other dtypes (float32, float64) are
left to PyTorch. Emulated, not native: the arithmetic runs on float32 units, and it is slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch.nn import functional as F

from book.checks import positive_int

__all__ = ["SIXTEEN_BIT", "accumulate", "accumulation_block", "linear", "matmul", "row_mean",
           "row_sum", "strict_block", "strict_fp16"]

SIXTEEN_BIT = (torch.float16, torch.bfloat16)
_block: ContextVar[int | None] = ContextVar("strict_fp16_block", default=None)


@contextmanager
def strict_fp16(block: int = 1) -> Iterator[None]:
    """Inside this block, 16-bit sums keep their running sum in 16 bits, rounded after each
    ``block`` terms (``block=1``: after every term)."""
    token = _block.set(positive_int("block", block))
    try:
        yield
    finally:
        _block.reset(token)


def accumulation_block() -> int | None:
    """The block size of the strict mode in force, or None (PyTorch's float32 accumulation)."""
    return _block.get()


def strict_block(*tensors: torch.Tensor) -> int | None:
    """The block size to use for these operands: None unless strict mode is on and they are
    16-bit."""
    block = _block.get()
    return block if block is not None and tensors[0].dtype in SIXTEEN_BIT else None


def accumulate(acc: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor,
               block: int) -> torch.Tensor:
    """``acc + a @ b`` with the running sum rounded to ``a.dtype`` after each block of the
    inner dimension; ``acc`` None is a running sum that starts at zero."""
    dtype, inner = a.dtype, a.shape[-1]
    if block == 1:  # addcmul computes acc + a_k * b_k in float32 and rounds once
        columns = a.movedim(-1, 0).unsqueeze(-1).contiguous()  # (K, ..., M, 1)
        rows = b.movedim(-2, 0).unsqueeze(-2).contiguous()  # (K, ..., 1, N)
        start = 0
        if acc is None:
            acc, start = columns[0] * rows[0], 1  # round16(0 + a_0 b_0)
        else:
            acc = acc.clone()
        for k in range(start, inner):
            acc.addcmul_(columns[k], rows[k])
        return acc
    a32, b32 = a.float(), b.float()
    for k in range(0, inner, block):
        part = a32[..., k : k + block] @ b32[..., k : k + block, :]
        acc = (part if acc is None else acc.float() + part).to(dtype)
    return acc


def matmul(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """``start + a @ b`` for ``[..., M, K] @ [..., K, N]``, ``start`` broadcastable to
    ``[..., M, N]`` (None: zero). The running sum starts at ``start``, so it is added before
    the one rounding (PyTorch's kernels: float32, rounded once) or, in strict mode, is the
    16-bit running sum's first value."""
    block = strict_block(a, b)
    if block is not None:
        return accumulate(None if start is None else start.expand(*a.shape[:-1], b.shape[-1]),
                          a, b, block)
    if start is None:
        return a @ b
    *batch, m, n = torch.broadcast_shapes(a.shape[:-1] + b.shape[-1:], start.shape)
    flat = (a.expand(*batch, m, a.shape[-1]).reshape(-1, m, a.shape[-1]),
            b.expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:]))
    out = torch.baddbmm(start.expand(*batch, m, n).reshape(-1, m, n), *flat)  # (batch, M, N)
    return out.view(*batch, m, n)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + b``; in strict mode the running sum starts at the bias and stays 16-bit."""
    block = strict_block(x, weight)
    if block is None:
        return F.linear(x, weight, bias)
    start = None if bias is None else bias.expand(*x.shape[:-1], weight.shape[0])
    return accumulate(start, x, weight.t(), block)


def row_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension, kept: ``[..., n] -> [..., 1]``; strict: 16-bit."""
    block = strict_block(x)
    if block is None:
        return x.sum(dim=-1, keepdim=True)
    if block == 1:  # a 16-bit addition per term, rounded
        acc = x[..., :1]
        for k in range(1, x.shape[-1]):
            acc = acc + x[..., k : k + 1]
        return acc
    acc = None
    for k in range(0, x.shape[-1], block):
        part = x[..., k : k + block].float().sum(dim=-1, keepdim=True)
        acc = (part if acc is None else acc.float() + part).to(x.dtype)
    return acc


def row_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last dimension, kept: :func:`row_sum` divided by ``n`` (one rounding)."""
    if strict_block(x) is None:
        return x.mean(dim=-1, keepdim=True)
    return row_sum(x) / x.shape[-1]
