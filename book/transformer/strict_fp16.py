"""Strict 16-bit accumulation: the running sums of products and reductions kept in 16 bits.

PyTorch's 16-bit matrix products and sums keep their running sum in float32 and round only the
final sum; the functions below do the same by default. ``with strict_fp16(block=b):`` makes
them keep it in the operands' 16-bit dtype instead: each block of ``b`` consecutive terms is
summed in float32, added to the running sum in float32 and rounded to 16 bits, once per block
(``b = 1``: ``acc <- round16(acc + a_k * b_k)``, a fused multiply-add). Other dtypes are left to
PyTorch. Emulated on float32 units, and slow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch.nn import functional as F

from book.checks import positive_int

__all__ = ["SIXTEEN_BIT", "accumulate", "linear", "matmul", "row_mean", "row_sum", "strict_block",
           "strict_fp16"]

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


def strict_block(x: torch.Tensor) -> int | None:
    """The block size of the strict mode in force if ``x`` is 16-bit, else None (PyTorch's
    float32 accumulation)."""
    return _block.get() if x.dtype in SIXTEEN_BIT else None


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
    block = strict_block(a)
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
    block = strict_block(x)
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
