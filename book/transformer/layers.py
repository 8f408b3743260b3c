"""The leaf modules of the Transformer: all of its arithmetic, safe in 16 bits.

Each module does one step of the earlier report's equations, cited as "(R10)" to "(R17)" (that
report's numbers, not the assignment's), and is one unit for :mod:`book.transformer.costs`.
Matrix products and sums go through :mod:`book.transformer.strict_fp16`; constants are buffers
in the model's dtype, not Python floats that would enter the arithmetic at float32 precision.
Every step whose result can leave the dtype's range checks it with :func:`checked`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from book.transformer.strict_fp16 import linear, matmul, row_mean, row_sum

__all__ = ["Add", "ApplyMask", "CausalMask", "KeyPaddingMask", "LayerNorm", "Linear", "MatMul",
           "PositionalEncoding", "RangeError", "Scale", "Scores", "Softmax", "TokenEmbedding",
           "check_batch", "check_tokens", "checked"]


class RangeError(OverflowError):
    """A step's result lies outside its dtype's finite range (``step``, ``magnitude``)."""

    def __init__(self, message: str, step: str, magnitude: float):
        super().__init__(message)
        self.step, self.magnitude = step, magnitude


def checked(step: nn.Module, out: torch.Tensor, *inputs) -> torch.Tensor:
    """``out`` if every value is finite; else :class:`RangeError` naming ``step`` and the
    largest magnitude of the same step computed in float64 from the same ``inputs``."""
    if out.numel() == 0 or bool(torch.isfinite(torch.stack(torch.aminmax(out))).all()):
        return out  # one pass: the extremes are finite, or inf, or NaN (which propagates)
    name = getattr(step, "qualified_name", "") or type(step).__name__  # as Transformer names it
    floats = [isinstance(x, torch.Tensor) and x.is_floating_point() for x in inputs]
    if not all(torch.isfinite(x).all() for x, f in zip(inputs, floats, strict=True) if f):
        raise RangeError(f"{name}: an input already holds inf or NaN", name, math.inf)
    wide = copy.deepcopy(step).double()
    exact = wide.forward(*(x.double() if f else x for x, f in zip(inputs, floats, strict=True)))
    magnitude = exact.abs().max().item()
    top = torch.finfo(out.dtype).max
    where = ("the result" if magnitude > top else
             "an intermediate value (the result itself fits)")
    raise RangeError(f"{name}: {str(out.dtype).removeprefix('torch.')} overflow: {where} is "
                     f"out of range (largest finite value {top:.6g}); computed in float64 the "
                     f"result reaches {magnitude:.4g}", name, magnitude)


class PositionalEncoding(nn.Module):
    """Adds the sinusoids of equations (R10) and (R11) to ``x`` of shape ``[B, L, d_model]``.
    The table is a constant: computed in float64, rounded once when the model is cast."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # 2i = 0, 2, ..., d_model - 2
        angle = pos / 10000 ** (two_i / d_model)  # (max_len, d_model / 2)
        pe = torch.empty(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)  # (R10)
        pe[:, 1::2] = torch.cos(angle)  # (R11)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``offset``: the position of ``x[:, 0]`` (incremental decoding feeds one at a time)."""
        return checked(self, x + self.pe[offset : offset + x.shape[-2]], x)


class TokenEmbedding(nn.Embedding):
    """``nn.Embedding`` that names its argument when a token id is outside the vocabulary."""

    def __init__(self, vocab: int, d_model: int, argument: str):
        super().__init__(vocab, d_model)
        self.argument = argument

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        low, high = (v.item() for v in torch.aminmax(tokens))
        if low < 0 or high >= self.num_embeddings:
            raise ValueError(f"{self.argument} must hold token ids in [0, "
                             f"{self.num_embeddings - 1}], got ids from {low} to {high}")
        return super().forward(tokens)


class Add(nn.Module):
    """``x + y``: the residual connections, checked for overflow."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return checked(self, x + y, x, y)


class ApplyMask(nn.Module):
    """``scores + mask``, the additive mask of (R16): ``-inf`` where attention is not allowed."""

    def forward(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return scores + mask


class Scale(nn.Module):
    """Multiplies by a constant ``factor``, stored in the model's dtype."""

    def __init__(self, factor: float):
        super().__init__()
        self.register_buffer("factor", torch.tensor(float(factor)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checked(self, x * self.factor, x)


class Linear(nn.Linear):
    """``x W^T + b`` through :func:`book.transformer.strict_fp16.linear`, checked for overflow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checked(self, linear(x, self.weight, self.bias), x)


class MatMul(nn.Module):
    """Batched matrix product ``a @ b``: ``[..., M, K] @ [..., K, N] -> [..., M, N]``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return checked(self, matmul(a, b), a, b)


CENTRED = (torch.float16,)  # the dtypes whose scores Scores centres (see there)


def exponent_limits(dtype: torch.dtype) -> tuple[int, int]:
    """``(low, high)`` for ``dtype``: ``2**low`` is its smallest normal number and ``2**high``
    the smallest power of two beyond its largest finite one (float16: -14 and 16)."""
    info = torch.finfo(dtype)
    return math.frexp(info.tiny)[1] - 1, math.frexp(info.max)[1]


class Scores(nn.Module):
    """The attention scores ``q k^T`` of (R12), at a scale the dtype can hold; in float16,
    centred on each row's largest score before they are rounded.

    ``q [B, h, Lq, d_k]``, ``k [B, h, Lk, d_k]``, ``mask`` (additive, broadcastable to
    ``[B, h, Lq, Lk]``, or None) -> ``(a, shift)``: ``a = (q k^T - m) / 2**shift`` of shape
    ``[B, h, Lq, Lk]``, which the softmax, given ``shift``, turns into the weights of ``q k^T``.

    - ``shift``: the smallest integer >= 0 that keeps ``d_k max|q| max|k| / 2**shift`` below
      ``2**(high - 2)`` (:func:`exponent_limits`; ``2**14`` in float16), so that no partial
      sum of a score, or of a score less ``m``, overflows in either accumulation mode.
    - ``m``: the row's largest score where ``mask`` allows it, in :data:`CENTRED` dtypes (else
      0); the running sum starts at ``-m`` and is rounded once. bfloat16 would gain too; it
      keeps the one product so that the demonstration's training (bfloat16 autocast) is
      unchanged.
    """

    def __init__(self, d_k: int):
        super().__init__()
        self.d_k = d_k

    def shift(self, q: torch.Tensor, k: torch.Tensor) -> int:
        """From the exponents of the largest magnitudes, ``max|q| < 2**eq`` and so on:
        ``d_k max|q| max|k| < 2**(eq + ek + ceil(log2 d_k))``, integer arithmetic."""
        q_max, k_max = q.abs().amax().item(), k.abs().amax().item()  # numel - 1 comparisons
        if q_max == 0 or k_max == 0:
            return 0
        bits = math.frexp(q_max)[1] + math.frexp(k_max)[1] + (self.d_k - 1).bit_length()
        return max(0, bits - (exponent_limits(q.dtype)[1] - 2))

    def forward(self, q: torch.Tensor, k: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        shift = self.shift(q, k)
        if shift:
            q = q * 2.0**-shift  # exact: a power of two
        k_t = k.transpose(-2, -1)
        a = matmul(q, k_t)  # (B, h, Lq, Lk)
        if q.dtype not in CENTRED:
            return a, shift
        m = (a if mask is None else a + mask).amax(dim=-1, keepdim=True)  # (B, h, Lq, 1)
        m = torch.where(m == -math.inf, 0.0, m)  # a fully masked row: nothing to centre on
        return matmul(q, k_t, start=-m), shift  # (B, h, Lq, Lk)


class Softmax(nn.Module):
    """Softmax over the last dimension of ``x * 2**shift`` that is safe in 16 bits.

    The row maximum is subtracted first, so ``exp`` lies in (0, 1] however large the logits. A
    row masked everywhere (all ``-inf``) returns zeros, not NaN, so a sequence that is all
    padding contributes nothing. ``shift`` undoes the scaling of :class:`Scores`.
    """

    def forward(self, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
        m = x.amax(dim=-1, keepdim=True)  # L - 1 comparisons per row
        m = torch.where(m == -math.inf, 0.0, m)  # fully masked row: exp(-inf - 0) = 0
        z = x - m  # L adds; each value <= 0
        if shift:
            z = z * 2.0**shift  # L mults, only when Scores scaled down; exact or -> -inf
        e = torch.exp(z)  # L exps; each value in [0, 1]
        s = row_sum(e)  # L - 1 adds; 1 <= s <= L unless the row is masked
        s = torch.where(s == 0, 1.0, s)  # fully masked row: 0 / 1 = 0 rather than 0 / 0
        return e / s  # L divs


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension (width ``D``), computed in the input's dtype.

    Each row is first multiplied by a power of two ``p`` (exact) that brings its largest
    magnitude into [1/2, 1) (by 2**14 for a row below 2**-14), with ``eps`` scaled alike:
    ``c = sqrt(eps) p``. The centred row ``xc`` is divided by ``m = max(s, c)``, ``s`` its
    largest magnitude, before squaring, so ``u = xc / m`` and ``r = c / m`` lie in [-1, 1]:

        std = m * sqrt(mean(u**2) + r**2) = p * sqrt(var(x) + eps).

    Then ``y = xc / std * weight + bias`` (the last two operations fused, rounded once).
    """

    EPS = 1e-5  # as nn.LayerNorm's

    def __init__(self, d: int, eps: float = EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.register_buffer("sqrt_eps", torch.tensor(math.sqrt(eps)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.abs().amax(dim=-1, keepdim=True)  # D - 1 comparisons (abs clears a sign bit)
        low = exponent_limits(x.dtype)[0]
        e = torch.frexp(t).exponent.clamp(min=low)  # 1 comparison; t < 2**e, read from bits
        p = torch.ldexp(torch.ones_like(t), -e)  # the power of two 2**-e, built from bits
        xs = x * p  # D mults, exact: the row scaled to max|xs| in [1/2, 1)
        mu = row_mean(xs)  # D - 1 adds, 1 div
        xc = xs - mu  # D adds; |xc| < 2
        s = xc.abs().amax(dim=-1, keepdim=True)  # D - 1 comparisons
        c = self.sqrt_eps * p  # 1 mult: sqrt(eps) at the row's scale
        m = torch.maximum(s, c)  # 1 comparison; m > 0 even for a constant row
        u = xc / m  # D divs; |u| <= 1
        var = row_mean(u * u)  # D mults, D - 1 adds, 1 div; var / m**2 <= 1
        r = c / m  # 1 div; r <= 1
        std = m * torch.sqrt(var + r * r)  # 2 mults, 1 add, 1 sqrt
        y = torch.addcmul(self.bias, xc / std, self.weight)  # D divs, D mults, D adds
        return checked(self, y, x)


class KeyPaddingMask(nn.Module):
    """Token ids ``[B, L]`` -> additive mask ``[B, 1, 1, L]``: ``-inf`` at ``pad_id``, else 0."""

    def __init__(self, pad_id: int):
        super().__init__()
        self.pad_id = pad_id
        self.register_buffer("fill", torch.tensor([0.0, -math.inf]), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        is_pad = tokens[:, None, None, :] == self.pad_id  # one comparison per token
        return torch.where(is_pad, self.fill[1], self.fill[0])


class CausalMask(nn.Module):
    """Adds the causal mask ``M`` of (R16), ``-inf`` for ``j > i``, else 0, to a key padding
    mask: ``[B, 1, 1, T] -> [B, 1, T, T]``."""

    def __init__(self, max_len: int):
        super().__init__()
        self.register_buffer("m", torch.full((max_len, max_len), -math.inf).triu(1),
                             persistent=False)

    def forward(self, padding: torch.Tensor) -> torch.Tensor:
        t = padding.shape[-1]
        return self.m[:t, :t] + padding  # (B, 1, T, T)


def check_tokens(name: str, tokens: torch.Tensor, max_len: int, offset: int = 0) -> None:
    """A ``ValueError`` naming ``name`` unless ``tokens`` is ``[B, L]`` of dtype long with
    ``1 <= L`` and ``offset + L <= max_len``; the ids themselves are checked by the embedding."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
        got = (f"{list(tokens.shape)} {tokens.dtype}" if isinstance(tokens, torch.Tensor)
               else type(tokens).__name__)
        raise ValueError(f"{name} must be token ids of shape [B, L] and dtype long, got {got}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sequence and one position, got shape "
                         f"{list(tokens.shape)}")
    if offset + tokens.shape[1] > max_len:
        raise ValueError(f"{name} reaches position {offset + tokens.shape[1]}, more than "
                         f"max_len = {max_len} positions")


def check_batch(**tensors: torch.Tensor) -> None:
    """A ``ValueError`` unless the tensors have the same batch size (first dimension)."""
    sizes = {name: t.shape[0] for name, t in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError("batch sizes must match: " + ", ".join(f"{n} has {b}"
                                                                for n, b in sizes.items()))
