"""The 16-bit Transformer of Problem 2: one encoder layer, one decoder layer, 8 heads.

Written from the equations of the assignment hand-out; "(A10)" means its equation (10):
sinusoidal positions (A10, A11), scaled dot-product attention (A12) with an additive mask
(A16), cross-attention (A17), multi-head attention, residual + LayerNorm after each
sub-layer (A13, A15) and the ReLU feed-forward network (A14).
The layout is post-norm, as in ``torch.nn.Transformer`` with ``norm_first=False``, including
the final LayerNorm that ``nn.Transformer`` puts after its encoder and after its decoder, so
that :meth:`Transformer.load_torch_weights` reproduces PyTorch's outputs. There is no dropout.

16 bits: every parameter, buffer, input, output and intermediate tensor has the model's
``dtype`` (``torch.float16`` by default; ``bfloat16`` and ``float32`` are options). Nothing is
cast up. PyTorch's fp16 kernels for matrix products and sums accumulate in fp32 registers and
round the result once, as GPU tensor cores do; every tensor the model stores is 16-bit. The
two steps that would overflow a naive fp16 implementation are handled in :class:`Softmax` and
:class:`LayerNorm`.

Every piece of arithmetic happens inside a leaf module whose operation count is registered
with :mod:`book.opcount`, so ``count_ops`` can count the whole model (matrix products,
softmax and LayerNorm each get their own row); containers only reshape.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from book.io import load_json, load_torch, save_json, save_torch
from book.opcount import OP_KINDS, register_counter
from book.paths import RESULTS_DIR
from book.timing import benchmark_module

__all__ = [
    "BLOCKS", "BOS", "DTYPES", "EOS", "PAD",
    "Add", "CausalMask", "DecoderLayer", "EncoderLayer", "FeedForward", "KeyPaddingMask",
    "LayerNorm", "MatMul", "MultiHeadAttention", "PositionalEncoding", "ReversalTask", "Scale",
    "ScaledDotProductAttention", "Softmax", "TrainConfig", "Transformer",
    "activation_bytes", "anti_diagonal_attention", "attention_maps", "block_of",
    "closed_form_counts", "exact_match",
    "greedy_decode", "inference_times", "parameter_bytes", "plot_attention", "plot_loss",
    "train_reversal", "verify_against_torch",
]

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PAD, BOS, EOS = 0, 1, 2  # special tokens; the digits 0-9 are tokens 3-12


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


# --- leaf modules: all the arithmetic -------------------------------------------------------


class PositionalEncoding(nn.Module):
    """Adds the sinusoids of equations (A10) and (A11) to ``x`` of shape ``[B, L, d_model]``.

    The table is computed once in float64 and rounded once to the model's dtype; it is a
    constant, not part of the forward pass.
    """

    def __init__(self, d_model: int, max_len: int = 512, dtype: torch.dtype = torch.float16):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for sin/cos pairs, got {d_model}")
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # 2i = 0, 2, ..., d_model - 2
        angle = pos / 10000 ** (two_i / d_model)  # (max_len, d_model / 2)
        pe = torch.empty(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)  # (A10)
        pe[:, 1::2] = torch.cos(angle)  # (A11)
        self.register_buffer("pe", pe.to(_check_dtype(dtype)), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``offset``: the position of ``x[:, 0]`` (incremental decoding feeds one at a time)."""
        end = offset + x.shape[-2]
        if end > self.pe.shape[0]:
            raise ValueError(f"position {end - 1} is beyond max_len {self.pe.shape[0]}")
        return x + self.pe[offset:end]


class Add(nn.Module):
    """``x + y`` (with broadcasting): the residual connections and the attention mask."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class Scale(nn.Module):
    """Multiplies by a constant ``factor``."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.6g}"


class MatMul(nn.Module):
    """Batched matrix product ``a @ b``: ``[..., M, K] @ [..., K, N] -> [..., M, N]``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class Softmax(nn.Module):
    """Softmax over the last dimension that is safe in 16 bits.

    The row maximum is subtracted first, so every exponent is <= 0 and ``exp`` lies in
    (0, 1] however large the logits (fp16 overflows at 65504, i.e. ``exp(11.1)``). A row that
    is masked everywhere (all ``-inf``) would give ``-inf - (-inf) = nan``; such a row returns
    zeros instead, so a sequence that is all padding contributes nothing and poisons nothing.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.amax(dim=-1, keepdim=True)  # L - 1 comparisons per row
        m = torch.where(m == -math.inf, 0.0, m)  # fully masked row: exp(-inf - 0) = 0
        e = torch.exp(x - m)  # L adds, L exps; each value in [0, 1]
        s = e.sum(dim=-1, keepdim=True)  # L - 1 adds; 1 <= s <= L unless the row is masked
        s = torch.where(s == 0, 1.0, s)  # fully masked row: 0 / 1 = 0 rather than 0 / 0
        return e / s  # L divs


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension (width ``D``), computed in the input's dtype.

    In fp16 the square of a centred value overflows once it exceeds 256 (256**2 > 65504), so
    the textbook ``mean((x - mu)**2)`` becomes ``inf`` for rows with large entries. Here the
    variance is taken of the centred row divided by its largest magnitude ``s``: those values
    lie in [-1, 1] and their squares cannot overflow. Then

        std = s * sqrt(mean(u**2) + eps / s**2),  u = (x - mean(x)) / s,

    which equals ``sqrt(var(x) + eps)``, and ``y = (x - mean(x)) / std * weight + bias``
    (the last two operations fused, rounded once).
    """

    def __init__(self, d: int, eps: float = 1e-5, dtype: torch.dtype = torch.float16):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d, dtype=_check_dtype(dtype)))
        self.bias = nn.Parameter(torch.zeros(d, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=-1, keepdim=True)  # D - 1 adds, 1 div
        xc = x - mu  # D adds
        s = xc.abs().amax(dim=-1, keepdim=True)  # D - 1 comparisons (abs clears a sign bit)
        s = torch.where(s > 0, s, 1.0)  # 1 comparison: a constant row has xc = 0 anyway
        u = xc / s  # D divs; |u| <= 1
        var = (u * u).mean(dim=-1, keepdim=True)  # D mults, D - 1 adds, 1 div
        r = math.sqrt(self.eps) / s  # 1 div
        std = s * torch.sqrt(var + r * r)  # 2 mults, 1 add, 1 sqrt
        return torch.addcmul(self.bias, xc / std, self.weight)  # D divs, D mults, D adds

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class KeyPaddingMask(nn.Module):
    """Token ids ``[B, L]`` -> additive mask ``[B, 1, 1, L]``: ``-inf`` at ``pad_id``, else 0."""

    def __init__(self, pad_id: int = PAD, dtype: torch.dtype = torch.float16):
        super().__init__()
        self.pad_id = pad_id
        self.register_buffer("fill", torch.tensor([0.0, -math.inf], dtype=_check_dtype(dtype)),
                             persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        is_pad = tokens[:, None, None, :] == self.pad_id  # one comparison per token
        return torch.where(is_pad, self.fill[1], self.fill[0])

    def extra_repr(self) -> str:
        return f"pad_id={self.pad_id}"


class CausalMask(nn.Module):
    """Adds the causal mask ``M`` of equation (A16) to a key padding mask.

    ``[B, 1, 1, T] -> [B, 1, T, T]``; ``M[i, j] = -inf`` for ``j > i`` (a position must not
    see the future), else 0.
    """

    def __init__(self, max_len: int = 512, dtype: torch.dtype = torch.float16):
        super().__init__()
        m = torch.full((max_len, max_len), -math.inf, dtype=_check_dtype(dtype)).triu(1)
        self.register_buffer("m", m, persistent=False)

    def forward(self, padding: torch.Tensor) -> torch.Tensor:
        t = padding.shape[-1]
        return self.m[:t, :t] + padding  # (B, 1, T, T)


# --- containers: only reshapes --------------------------------------------------------------


class ScaledDotProductAttention(nn.Module):
    """Equations (A12) and (A16): ``softmax(Q K^T / sqrt(d_k) + M) V`` for every head.

    ``q``: ``[B, h, Lq, d_k]``, ``k`` and ``v``: ``[B, h, Lk, d_k]``, ``mask``: additive,
    broadcastable to ``[B, h, Lq, Lk]`` (0 or ``-inf``), or None. The factor ``1/sqrt(d_k)``
    is applied to Q before the product: the same number, ``Lq d_k`` multiplications instead
    of ``Lq Lk``, and the products stay further from fp16's ceiling.
    """

    def __init__(self, d_k: int):
        super().__init__()
        self.scale = Scale(1 / math.sqrt(d_k))
        self.scores = MatMul()
        self.mask = Add()
        self.softmax = Softmax()
        self.context = MatMul()

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        a = self.scores(self.scale(q), k.transpose(-2, -1))  # (B, h, Lq, Lk)
        if mask is not None:
            a = self.mask(a, mask)  # (A16)
        return self.context(self.softmax(a), v)  # (B, h, Lq, d_k)


class MultiHeadAttention(nn.Module):
    """``Concat(head_1, ..., head_h) W^O`` with ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``.

    The h per-head projections ``W_i^Q`` (``d_model x d_k`` each) are stored side by side as
    one ``d_model x d_model`` linear layer, likewise for K and V.
    """

    def __init__(self, d_model: int, n_heads: int, dtype: torch.dtype = torch.float16):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, dtype=dtype)
        self.k_proj = nn.Linear(d_model, d_model, dtype=dtype)
        self.v_proj = nn.Linear(d_model, d_model, dtype=dtype)
        self.attention = ScaledDotProductAttention(self.d_k)
        self.out_proj = nn.Linear(d_model, d_model, dtype=dtype)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.d_k).transpose(1, 2)  # (B, h, L, d_k)

    def keys_values(self, key: torch.Tensor,
                    value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``K W^K`` and ``V W^V`` split into heads: two ``[B, h, Lk, d_k]`` tensors."""
        return self._heads(self.k_proj(key)), self._heads(self.v_proj(value))

    def forward(self, query: torch.Tensor, key: torch.Tensor | None, value: torch.Tensor | None,
                mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``kv``: keys and values already projected by :meth:`keys_values` (then ``key``
        and ``value`` are not used), as :func:`greedy_decode` keeps them between steps."""
        b, n, d = query.shape
        q = self._heads(self.q_proj(query))  # (B, h, Lq, d_k)
        k, v = kv if kv is not None else self.keys_values(key, value)  # (B, h, Lk, d_k)
        heads = self.attention(q, k, v, mask)  # (B, h, Lq, d_k)
        return self.out_proj(heads.transpose(1, 2).reshape(b, n, d))  # concat: (B, Lq, d)


class FeedForward(nn.Module):
    """Equation (A14): ``max(0, x W_1 + b_1) W_2 + b_2``, ``d_model -> d_ff -> d_model``."""

    def __init__(self, d_model: int, d_ff: int, dtype: torch.dtype = torch.float16):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, dtype=dtype)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(d_ff, d_model, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu(self.linear1(x)))


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each followed by Add & LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dtype: torch.dtype):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dtype)
        self.add1, self.norm1 = Add(), LayerNorm(d_model, dtype=dtype)
        self.ffn = FeedForward(d_model, d_ff, dtype)
        self.add2, self.norm2 = Add(), LayerNorm(d_model, dtype=dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(self.add1(x, self.self_attn(x, x, x, mask)))  # (A13)
        return self.norm2(self.add2(x, self.ffn(x)))  # (A15)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output (queries from the
    decoder, keys and values from the encoder) and the feed-forward network, each followed
    by Add & LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dtype: torch.dtype):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dtype)
        self.add1, self.norm1 = Add(), LayerNorm(d_model, dtype=dtype)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dtype)
        self.add2, self.norm2 = Add(), LayerNorm(d_model, dtype=dtype)
        self.ffn = FeedForward(d_model, d_ff, dtype)
        self.add3, self.norm3 = Add(), LayerNorm(d_model, dtype=dtype)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None,
                memory_mask: torch.Tensor | None) -> torch.Tensor:
        y = self.norm1(self.add1(y, self.self_attn(y, y, y, self_mask)))  # (A16), (A13)
        y = self.norm2(self.add2(y, self.cross_attn(y, memory, memory, memory_mask)))  # (A17)
        return self.norm3(self.add3(y, self.ffn(y)))  # (A14), (A15)


class Transformer(nn.Module):
    """Token ids in, next-token logits out: ``src [B, S]``, ``tgt [B, T] -> [B, T, tgt_vocab]``.

    One :class:`EncoderLayer` and one :class:`DecoderLayer`, each followed by a final
    LayerNorm as in ``torch.nn.Transformer``. ``d_ff = 1024`` is our choice (the assignment
    fixes only ``d_model = 256`` and 8 heads). Source and target have their own embeddings;
    ``pad_id`` tokens are masked as keys everywhere, and the decoder's self-attention is
    causal. Embeddings are added to the positional encoding unscaled.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 256, n_heads: int = 8,
                 d_ff: int = 1024, dtype: torch.dtype = torch.float16, max_len: int = 512,
                 pad_id: int = PAD):
        super().__init__()
        for name, value in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                            ("d_model", d_model), ("n_heads", n_heads), ("d_ff", d_ff),
                            ("max_len", max_len)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        _check_dtype(dtype)
        self.config = dict(src_vocab=src_vocab, tgt_vocab=tgt_vocab, d_model=d_model,
                           n_heads=n_heads, d_ff=d_ff, max_len=max_len, pad_id=pad_id)
        self.src_embed = nn.Embedding(src_vocab, d_model, dtype=dtype)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, dtype=dtype)
        self.pos = PositionalEncoding(d_model, max_len, dtype)
        self.src_pad = KeyPaddingMask(pad_id, dtype)
        self.tgt_pad = KeyPaddingMask(pad_id, dtype)
        self.causal = CausalMask(max_len, dtype)
        self.encoder = EncoderLayer(d_model, n_heads, d_ff, dtype)
        self.encoder_norm = LayerNorm(d_model, dtype=dtype)
        self.decoder = DecoderLayer(d_model, n_heads, d_ff, dtype)
        self.decoder_norm = LayerNorm(d_model, dtype=dtype)
        self.generator = nn.Linear(d_model, tgt_vocab, dtype=dtype)
        # As nn.Transformer does: Xavier-uniform for every matrix except the embeddings.
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)

    @property
    def dtype(self) -> torch.dtype:
        return self.generator.weight.dtype

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src [B, S]`` -> (memory ``[B, S, d_model]``, source mask ``[B, 1, 1, S]``)."""
        src_mask = self.src_pad(src)
        memory = self.encoder(self.pos(self.src_embed(src)), src_mask)
        return self.encoder_norm(memory), src_mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor,
               src_mask: torch.Tensor) -> torch.Tensor:
        """``tgt [B, T]`` and the encoder's output -> logits ``[B, T, tgt_vocab]``."""
        tgt_mask = self.causal(self.tgt_pad(tgt))  # (B, 1, T, T)
        y = self.decoder(self.pos(self.tgt_embed(tgt)), memory, tgt_mask, src_mask)
        return self.generator(self.decoder_norm(y))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        for name, t in (("src", src), ("tgt", tgt)):
            if t.dim() != 2 or t.dtype != torch.long:
                raise ValueError(f"{name} must be token ids of shape [B, L] and dtype long, "
                                 f"got {list(t.shape)} {t.dtype}")
        memory, src_mask = self.encode(src)
        return self.decode(tgt, memory, src_mask)

    def core(self, src_x: torch.Tensor, tgt_x: torch.Tensor, src_mask: torch.Tensor | None,
             tgt_mask: torch.Tensor | None) -> torch.Tensor:
        """The encoder-decoder core on already embedded inputs, as ``nn.Transformer``.

        ``src_x [B, S, d]``, ``tgt_x [B, T, d]``, additive masks ``[B, 1, 1, S]`` (source
        padding) and ``[B, 1, T, T]`` (causal + target padding) -> ``[B, T, d]``.
        """
        memory = self.encoder_norm(self.encoder(src_x, src_mask))
        return self.decoder_norm(self.decoder(tgt_x, memory, tgt_mask, src_mask))

    @torch.no_grad()
    def load_torch_weights(self, ref: nn.Transformer) -> Transformer:
        """Copy the weights of ``nn.Transformer(d_model, nhead, 1, 1, d_ff, batch_first=True)``.

        ``in_proj_weight`` stacks ``W^Q; W^K; W^V`` (``[3d, d]``); it is split into our three
        projections. Every copied shape is checked; values are rounded to our dtype.
        """
        if len(ref.encoder.layers) != 1 or len(ref.decoder.layers) != 1:
            raise ValueError("ref must have exactly one encoder layer and one decoder layer")
        if ref.encoder.layers[0].norm_first or ref.decoder.layers[0].norm_first:
            raise ValueError("ref must be post-norm (norm_first=False)")
        if ref.encoder.norm is None or ref.decoder.norm is None:
            raise ValueError("ref must have its final encoder and decoder LayerNorms")
        pairs: list[tuple[str, torch.Tensor, torch.Tensor]] = []

        def attn(ours: MultiHeadAttention, theirs: nn.MultiheadAttention, name: str) -> None:
            if theirs.num_heads != ours.n_heads or not theirs._qkv_same_embed_dim:
                raise ValueError(f"{name}: expected {ours.n_heads} heads with packed q, k, v")
            w = theirs.in_proj_weight.chunk(3)
            b = theirs.in_proj_bias.chunk(3)
            for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
                pairs.append((f"{name}.in_proj_weight[{i}]", proj.weight, w[i]))
                pairs.append((f"{name}.in_proj_bias[{i}]", proj.bias, b[i]))
            pairs.append((f"{name}.out_proj.weight", ours.out_proj.weight,
                          theirs.out_proj.weight))
            pairs.append((f"{name}.out_proj.bias", ours.out_proj.bias, theirs.out_proj.bias))

        def same(ours: nn.Module, theirs: nn.Module, name: str) -> None:
            if isinstance(theirs, nn.LayerNorm) and theirs.eps != ours.eps:
                raise ValueError(f"{name}: eps {theirs.eps} differs from ours {ours.eps}")
            for p in ("weight", "bias"):
                pairs.append((f"{name}.{p}", getattr(ours, p), getattr(theirs, p)))

        enc, dec = ref.encoder.layers[0], ref.decoder.layers[0]
        attn(self.encoder.self_attn, enc.self_attn, "encoder.layers.0.self_attn")
        attn(self.decoder.self_attn, dec.self_attn, "decoder.layers.0.self_attn")
        attn(self.decoder.cross_attn, dec.multihead_attn, "decoder.layers.0.multihead_attn")
        for ours, theirs, name in (
            (self.encoder, enc, "encoder.layers.0"), (self.decoder, dec, "decoder.layers.0"),
        ):
            same(ours.ffn.linear1, theirs.linear1, f"{name}.linear1")
            same(ours.ffn.linear2, theirs.linear2, f"{name}.linear2")
            for i in (1, 2, 3) if ours is self.decoder else (1, 2):
                same(getattr(ours, f"norm{i}"), getattr(theirs, f"norm{i}"), f"{name}.norm{i}")
        same(self.encoder_norm, ref.encoder.norm, "encoder.norm")
        same(self.decoder_norm, ref.decoder.norm, "decoder.norm")

        n_ref = sum(p.numel() for p in ref.parameters())
        if sum(src.numel() for _, _, src in pairs) != n_ref:
            raise ValueError("some parameters of ref have no counterpart in this model")
        for name, dst, src in pairs:
            if dst.shape != src.shape:
                raise ValueError(f"{name}: shape {tuple(src.shape)} does not fit ours "
                                 f"{tuple(dst.shape)}")
            dst.copy_(src)
        return self


# --- operation counts (book.opcount) ----------------------------------------------------------


def _numel(shape) -> int:
    return math.prod(shape)


# What each leaf module above computes, for book.opcount.count_ops: counts for the whole batch
# of one call, read off the shapes the call saw, as the comments in the modules itemise them.


@register_counter(PositionalEncoding, Add)
def _elementwise_add(module, inputs, output, *, bias, pooling):
    return {"adds": output.numel()}


@register_counter(Scale)
def _scale(module, inputs, output, *, bias, pooling):
    return {"mults": output.numel()}


@register_counter(MatMul)
def _matmul(module, inputs, output, *, bias, pooling):
    """Each output element is a dot product of length K: K mults, K - 1 adds."""
    k = inputs[0].shape[-1]
    return {"mults": output.numel() * k, "adds": output.numel() * (k - 1)}


@register_counter(Softmax)
def _softmax(module, inputs, output, *, bias, pooling):
    """Per row of n scores: max (n - 1 comparisons) and 2 guards, n subtractions, n exps,
    a sum (n - 1 adds), n divisions."""
    n = output.shape[-1]
    rows = output.numel() // n
    return {"comparisons": rows * (n + 1), "adds": rows * (2 * n - 1),
            "exps": rows * n, "divs": rows * n}


@register_counter(LayerNorm)
def _layer_norm(module, inputs, output, *, bias, pooling):
    """Per row of d entries, as itemised in LayerNorm.forward; beta's d adds only with bias."""
    d = output.shape[-1]
    rows = output.numel() // d
    return {"comparisons": rows * d, "mults": rows * (2 * d + 2),
            "adds": rows * (3 * d - 1 + (d if bias else 0)),
            "divs": rows * (2 * d + 3), "sqrts": rows}


@register_counter(KeyPaddingMask)
def _padding_mask(module, inputs, output, *, bias, pooling):
    return {"comparisons": inputs[0].numel()}


@register_counter(CausalMask)
def _causal_mask(module, inputs, output, *, bias, pooling):
    return {"adds": output.numel()}


def block_of(name: str) -> str:
    """The block a module (or parameter) belongs to, from its qualified name.

    ``encoder.self_attn.q_proj`` -> ``encoder.self_attn``; ``decoder.add2`` and
    ``decoder.norm2`` -> ``decoder.add_norm2``; embeddings and positions -> ``embeddings``;
    the three mask builders -> ``masks``.
    """
    parts = name.split(".")
    if parts[0] in ("src_embed", "tgt_embed", "pos"):
        return "embeddings"
    if parts[0] in ("src_pad", "tgt_pad", "causal"):
        return "masks"
    if parts[0] in ("encoder", "decoder") and len(parts) > 1:
        sub = parts[1]
        if sub[:-1] in ("add", "norm") and sub[-1].isdigit():
            sub = f"add_norm{sub[-1]}"
        return f"{parts[0]}.{sub}"
    return parts[0]


BLOCKS = ("embeddings", "masks", "encoder.self_attn", "encoder.add_norm1", "encoder.ffn",
          "encoder.add_norm2", "encoder_norm", "decoder.self_attn", "decoder.add_norm1",
          "decoder.cross_attn", "decoder.add_norm2", "decoder.ffn", "decoder.add_norm3",
          "decoder_norm", "generator")


def closed_form_counts(S, T, *, tgt_vocab: int, d_model: int = 256, n_heads: int = 8,
                       d_ff: int = 1024, bias: bool = False) -> dict[str, dict[str, object]]:
    """Operations and activation elements of one forward pass (batch 1), block by block.

    ``S`` and ``T`` (source and target lengths) may be ints or sympy symbols. Returns
    ``{block: {kind: count}}`` with the kinds of ``book.opcount.OP_KINDS`` plus
    ``activations`` (elements of every module output). Conventions: an output element of a
    linear layer costs ``in`` multiplications and ``in - 1`` additions (one more with
    ``bias``), one of a matrix product ``K`` and ``K - 1``; masks, softmax and LayerNorm
    cost what their modules' comments itemise.
    """
    D, h, F, V = d_model, n_heads, d_ff, tgt_vocab
    dk = D // h
    b = 1 if bias else 0

    def zero() -> dict[str, object]:
        return dict.fromkeys((*OP_KINDS, "activations"), 0)

    def linear(c, n, fan_in, fan_out):
        c["mults"] += n * fan_out * fan_in
        c["adds"] += n * fan_out * (fan_in - 1 + b)
        c["activations"] += n * fan_out

    def softmax(c, rows, n):
        c["comparisons"] += rows * (n + 1)
        c["adds"] += rows * (2 * n - 1)
        c["exps"] += rows * n
        c["divs"] += rows * n
        c["activations"] += rows * n

    def layer_norm(c, rows):
        c["comparisons"] += rows * D
        c["mults"] += rows * (2 * D + 2)
        c["adds"] += rows * (3 * D - 1 + b * D)
        c["divs"] += rows * (2 * D + 3)
        c["sqrts"] += rows
        c["activations"] += rows * D

    def attention(lq, lk):
        c = zero()
        for n in (lq, lk, lk):  # Q, K, V projections
            linear(c, n, D, D)
        c["mults"] += lq * D  # Q / sqrt(d_k)
        c["mults"] += h * lq * lk * dk  # Q K^T
        c["adds"] += h * lq * lk * (dk - 1)
        c["adds"] += h * lq * lk  # + M
        softmax(c, h * lq, lk)
        c["mults"] += h * lq * dk * lk  # P V
        c["adds"] += h * lq * dk * (lk - 1)
        c["activations"] += lq * D + 2 * h * lq * lk + lq * D  # scaled Q, scores, +M, P V
        linear(c, lq, D, D)  # W^O
        return c

    def add_norm(n):
        c = zero()
        c["adds"] += n * D
        c["activations"] += n * D
        layer_norm(c, n)
        return c

    def ffn(n):
        c = zero()
        linear(c, n, D, F)
        c["activations"] += n * F  # ReLU: a comparison with zero, not counted
        linear(c, n, F, D)
        return c

    out = {k: zero() for k in BLOCKS}
    e = out["embeddings"]
    e["adds"] += (S + T) * D  # + PE
    e["activations"] += 2 * (S + T) * D  # lookups, then + PE
    m = out["masks"]
    m["comparisons"] += S + T  # token == PAD
    m["adds"] += T * T  # causal + target padding
    m["activations"] += S + T + T * T
    out["encoder.self_attn"] = attention(S, S)
    out["encoder.add_norm1"] = add_norm(S)
    out["encoder.ffn"] = ffn(S)
    out["encoder.add_norm2"] = add_norm(S)
    layer_norm(out["encoder_norm"], S)
    out["decoder.self_attn"] = attention(T, T)
    out["decoder.add_norm1"] = add_norm(T)
    out["decoder.cross_attn"] = attention(T, S)
    out["decoder.add_norm2"] = add_norm(T)
    out["decoder.ffn"] = ffn(T)
    out["decoder.add_norm3"] = add_norm(T)
    layer_norm(out["decoder_norm"], T)
    linear(out["generator"], T, D, V)
    return out


def parameter_bytes(model: Transformer) -> pd.DataFrame:
    """Parameters per block and their memory in the model's dtype, with a ``total`` row."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        block = block_of(name.rsplit(".", 1)[0])
        counts[block] = counts.get(block, 0) + p.numel()
    size = torch.empty((), dtype=model.dtype).element_size()
    rows = [(k, counts[k]) for k in BLOCKS if k in counts]
    rows.append(("total", sum(counts.values())))
    df = pd.DataFrame(rows, columns=["block", "parameters"]).set_index("block")
    df["bytes"] = df["parameters"] * size
    return df


def activation_bytes(table: pd.DataFrame, dtype: torch.dtype) -> pd.DataFrame:
    """Elements and bytes of every module output in a ``count_ops`` table, per block."""
    size = torch.empty((), dtype=dtype).element_size()
    elements = table["output_shape"].map(_numel).groupby(table["layer"].map(block_of)).sum()
    df = pd.DataFrame({"activations": elements}).reindex([b for b in BLOCKS if b in elements])
    df.loc["total"] = df["activations"].sum()
    df["bytes"] = df["activations"] * size
    df.index.name = "block"
    return df


# --- the demonstration: reversing digit sequences ----------------------------------------------


@dataclass(frozen=True)
class ReversalTask:
    """Reverse a sequence of ``min_len``..``max_len`` digits: ``3 1 4 -> 4 1 3``.

    Tokens: ``PAD=0, BOS=1, EOS=2``, digit ``d`` is ``d + 3``. Sources are right-padded to
    ``max_len``; targets are ``BOS, reversed digits, EOS`` right-padded to ``max_len + 2``.
    The ``n_test`` held-out sequences are distinct and none is in the training set: no
    held-out sequence was ever trained on.
    """

    min_len: int = 1
    max_len: int = 10
    n_train: int = 20_000
    n_test: int = 1_000
    seed: int = 0

    vocab = 13

    def _sample(self, n: int, g: torch.Generator) -> list[tuple[int, ...]]:
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=g)
        digits = torch.randint(0, 10, (n, self.max_len), generator=g)
        return [tuple(row[:k].tolist()) for row, k in zip(digits, lengths.tolist(), strict=True)]

    def encode(self, seqs: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Digit tuples -> (``src [N, max_len]``, ``tgt [N, max_len + 2]``) token ids."""
        src = torch.full((len(seqs), self.max_len), PAD, dtype=torch.long)
        tgt = torch.full((len(seqs), self.max_len + 2), PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            k = len(s)
            src[i, :k] = torch.tensor(s) + 3
            tgt[i, : k + 2] = torch.tensor([BOS, *(d + 3 for d in reversed(s)), EOS])
        return src, tgt

    def data(self) -> dict[str, torch.Tensor]:
        """``src_train, tgt_train, src_test, tgt_test``, always the same for the same task."""
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        g = torch.Generator().manual_seed(self.seed)
        train = self._sample(self.n_train, g)
        seen, test = set(train), []
        for _ in range(100):
            for s in self._sample(self.n_test, g):
                if s not in seen and len(test) < self.n_test:
                    seen.add(s)  # held-out sequences are distinct, too
                    test.append(s)
        if len(test) < self.n_test:
            raise ValueError(f"found only {len(test)} sequences outside the training set; "
                             "lower n_test or n_train, or allow longer sequences")
        src_train, tgt_train = self.encode(train)
        src_test, tgt_test = self.encode(test)
        return dict(src_train=src_train, tgt_train=tgt_train, src_test=src_test,
                    tgt_test=tgt_test)


@dataclass(frozen=True)
class TrainConfig:
    """Adam with linear warm-up and cosine decay; float32 weights, bf16 autocast on the CPU."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    checkpoint_every: int = 100
    autocast: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "warmup", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _model_for(task: ReversalTask, dtype: torch.dtype, seed: int) -> Transformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Transformer(task.vocab, task.vocab, dtype=dtype, max_len=task.max_len + 2)


def train_reversal(task: ReversalTask = ReversalTask(), config: TrainConfig = TrainConfig(),
                   path: str | Path = RESULTS_DIR / "transformer.pt", device: str | None = None,
                   dtype: torch.dtype = torch.float16, log: Callable[[str], None] | None = None,
                   ) -> tuple[Transformer, dict]:
    """Train on ``task`` (or reuse a finished run), return the model in ``dtype`` and history.

    ``path`` holds the checkpoint (float32 weights, optimizer, step), rewritten atomically
    every ``config.checkpoint_every`` steps, so an interrupted run resumes where it stopped;
    ``path.with_suffix('.json')`` holds the history once training is done. A finished run
    with the same task and config is loaded, not retrained. Batch ``i`` is drawn from a
    generator seeded with ``(seed, i)``, so a resumed run sees the same batches.
    """
    path = Path(path)
    json_path = path.with_suffix(".json")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    meta = {"task": asdict(task), "train": asdict(config)}
    model = _model_for(task, torch.float32, config.seed)

    ckpt = load_torch(path) if path.exists() else {}
    if ckpt.get("meta") == meta and ckpt.get("done"):
        model.load_state_dict(ckpt["model"])
        history = load_json(json_path) if json_path.exists() else {}
        if history.get("meta") != meta:  # the run finished, but its history was not written
            history = _history(ckpt)
            save_json(json_path, history)
        return model.to(dtype).eval(), history

    data = task.data()
    src, tgt = data["src_train"].to(device), data["tgt_train"].to(device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    step, losses, seconds = 0, [], 0.0
    if ckpt.get("meta") == meta:  # an interrupted run of this task and config
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, losses, seconds = ckpt["step"], ckpt["losses"], ckpt["seconds"]
        if log:
            log(f"resuming at step {step}")
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    amp = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                         enabled=config.autocast)
    start = time.perf_counter() - seconds
    while step < config.steps:
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        idx = torch.randint(0, len(src), (config.batch_size,), generator=g).to(device)
        x, y = src[idx], tgt[idx]
        for group in opt.param_groups:
            group["lr"] = config.lr_at(step)
        with amp:
            logits = model(x, y[:, :-1])  # teacher forcing: predict token t+1 from tokens <= t
        loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % config.checkpoint_every == 0 or step == config.steps:
            done = step == config.steps
            seconds = time.perf_counter() - start
            state = {k: v.cpu() for k, v in model.state_dict().items()}
            ckpt = {"meta": meta, "model": state, "step": step, "losses": losses,
                    "seconds": seconds, "device": device, "done": done,
                    "optimizer": None if done else opt.state_dict()}
            save_torch(path, ckpt)
            if log:
                log(f"step {step}/{config.steps}  loss {loss.item():.4f}  {seconds:.0f} s")
    history = _history(ckpt)
    save_json(json_path, history)
    return model.cpu().to(dtype).eval(), history


def _history(ckpt: dict) -> dict:
    return {"meta": ckpt["meta"], "losses": ckpt["losses"], "train_seconds": ckpt["seconds"],
            "device": ckpt.get("device", "cpu")}


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_len: int) -> torch.Tensor:
    """Greedy decoding: ``src [B, S]`` -> ``[B, max_len]`` tokens (no BOS), PAD after EOS.

    With a key-value cache: the encoder, and the keys and values of the cross-attention, run
    once; each step runs the decoder on the newest position only and appends its
    self-attention keys and values to those of the earlier positions. The result is the
    output of ``model.decode`` on the whole prefix at every step (a test checks it), at a
    fraction of the work: a position only ever attends to itself and earlier ones.
    """
    dec = model.decoder
    memory, src_mask = model.encode(src)
    cross_kv = dec.cross_attn.keys_values(memory, memory)  # (B, h, S, d_k) twice
    keys = values = None
    token = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    out = torch.full((len(src), max_len), PAD, dtype=torch.long, device=src.device)
    for t in range(max_len):
        y = model.pos(model.tgt_embed(token[:, None]), offset=t)  # (B, 1, d)
        k, v = dec.self_attn.keys_values(y, y)  # (B, h, 1, d_k)
        keys = k if keys is None else torch.cat([keys, k], dim=2)  # (B, h, t + 1, d_k)
        values = v if values is None else torch.cat([values, v], dim=2)
        y = dec.norm1(dec.add1(y, dec.self_attn(y, None, None, kv=(keys, values))))
        y = dec.norm2(dec.add2(y, dec.cross_attn(y, None, None, src_mask, kv=cross_kv)))
        y = dec.norm3(dec.add3(y, dec.ffn(y)))
        token = model.generator(model.decoder_norm(y))[:, 0].argmax(-1)  # (B,)
        token = torch.where(done, PAD, token)
        out[:, t] = token
        done |= token == EOS
        if done.all():
            break
    return out


def exact_match(model: Transformer, src: torch.Tensor, tgt: torch.Tensor,
                batch_size: int = 1000) -> float:
    """Fraction of sequences whose greedy decoding equals ``tgt[:, 1:]`` token for token."""
    device = next(model.parameters()).device
    right = 0
    for i in range(0, len(src), batch_size):
        s, t = src[i : i + batch_size].to(device), tgt[i : i + batch_size, 1:].to(device)
        right += (greedy_decode(model, s, t.shape[1]) == t).all(dim=1).sum().item()
    return right / len(src)


@torch.no_grad()
def attention_maps(model: Transformer, src: torch.Tensor,
                   tgt: torch.Tensor) -> dict[str, torch.Tensor]:
    """The softmax outputs ``[B, h, Lq, Lk]`` of every attention block, keyed by block."""
    maps, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, Softmax):
            block = name.rsplit(".", 2)[0]  # encoder.self_attn.attention.softmax -> ...
            hooks.append(module.register_forward_hook(
                lambda m, i, o, block=block: maps.__setitem__(block, o.float().cpu())))
    try:
        model(src, tgt)
    finally:
        for h in hooks:
            h.remove()
    return maps


def anti_diagonal_attention(cross: torch.Tensor, src: torch.Tensor) -> pd.DataFrame:
    """How well cross-attention follows the reversal: query ``i`` should look at ``L - 1 - i``.

    ``cross``: cross-attention weights ``[N, h, T, S]`` (from :func:`attention_maps`),
    ``src``: the sources ``[N, S]`` (``L`` = non-padding tokens). Over the first ``L`` queries
    of every sequence, per head and for the mean of the heads: the weight on ``L - 1 - i``,
    the weight on it and its two neighbours, and how often it gets the largest weight.
    """
    weights = torch.cat([cross, cross.mean(1, keepdim=True)], dim=1).float()  # (N, h + 1, T, S)
    rows = []
    for n, length in enumerate((src != PAD).sum(1).tolist()):
        i = torch.arange(length)
        j = length - 1 - i  # the source position query i must copy
        # the first L queries, a zero column either side: key j is column j + 1
        w = nn.functional.pad(weights[n, :, :length], (1, 1))  # (h + 1, L, S + 2)
        on = w[:, i, j + 1]  # (h + 1, L)
        rows.append((on, w[:, i, j] + on + w[:, i, j + 2], (w.argmax(-1) == j + 1).float()))
    heads = [f"head {k}" for k in range(cross.shape[1])] + ["mean of heads"]
    stats = [torch.cat([r[k] for r in rows], dim=1).mean(1) for k in range(3)]
    return pd.DataFrame({"weight on L-1-i": stats[0], "weight within 1": stats[1],
                         "largest at L-1-i": stats[2]}, index=pd.Index(heads, name="head"))


# --- verification against PyTorch and timing --------------------------------------------------


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def _with_torch_layer_norms(model: Transformer) -> Transformer:
    """A copy of ``model`` whose LayerNorms are ``nn.LayerNorm`` with the same weights.

    PyTorch's fp16 LayerNorm kernel computes mean and variance in float32 internally; the
    copy shows how much of our fp16 error comes from doing them in fp16.
    """
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, LayerNorm):
            ln = nn.LayerNorm(module.weight.shape[0], eps=module.eps, dtype=module.weight.dtype)
            ln.load_state_dict(module.state_dict())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, ln)
    return model


@torch.no_grad()
def verify_against_torch(batch: int = 4, S: int = 12, T: int = 9, seed: int = 0,
                         dtypes: tuple[torch.dtype, ...] = DTYPES) -> pd.DataFrame:
    """Ours and ``nn.Transformer`` with the same weights, masks and inputs.

    Random inputs ``src_x [batch, S, 256]``, ``tgt_x [batch, T, 256]`` with some padding, a
    causal target mask; the reference is PyTorch in float32. For each dtype, the largest and
    mean absolute deviation of PyTorch's and of our encoder-decoder output (padded target
    positions included) from that reference, and of ours with PyTorch's LayerNorm kernel.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = nn.Transformer(d_model=256, nhead=8, num_encoder_layers=1, num_decoder_layers=1,
                             dim_feedforward=1024, dropout=0.0, batch_first=True).eval()
    src_x = torch.randn(batch, S, 256, generator=g)
    tgt_x = torch.randn(batch, T, 256, generator=g)
    # token ids only to place the padding: lengths in [1, L], so no row is all padding
    src_len = torch.randint(1, S + 1, (batch,), generator=g)
    tgt_len = torch.randint(1, T + 1, (batch,), generator=g)
    src_tok = (torch.arange(S) < src_len[:, None]).long() * 3
    tgt_tok = (torch.arange(T) < tgt_len[:, None]).long() * 3
    src_pad, tgt_pad = src_tok == PAD, tgt_tok == PAD
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)

    # Nested tensors would zero the encoder output at padded positions (the decoder never
    # reads them) and print a prototype warning; the dense path computes every position.
    ref.encoder.use_nested_tensor = False

    def torch_out(dtype):
        r = copy.deepcopy(ref).to(dtype)
        return r(src_x.to(dtype), tgt_x.to(dtype), tgt_mask=causal, src_key_padding_mask=src_pad,
                 tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)

    reference = torch_out(torch.float32)
    rows = []
    for dtype in dtypes:
        ours = Transformer(10, 10, dtype=torch.float32).load_torch_weights(ref).to(dtype).eval()
        tgt_mask = ours.causal(ours.tgt_pad(tgt_tok))
        mine = ours.core(src_x.to(dtype), tgt_x.to(dtype), ours.src_pad(src_tok), tgt_mask)
        theirs = torch_out(dtype)
        hybrid = _with_torch_layer_norms(ours)
        mixed = hybrid.core(src_x.to(dtype), tgt_x.to(dtype), ours.src_pad(src_tok), tgt_mask)
        for who, out in (("PyTorch", theirs), ("ours", mine),
                         ("ours with nn.LayerNorm", mixed)):
            if out.dtype != dtype:
                raise RuntimeError(f"{who} returned {out.dtype} for {dtype}")
            rows.append((str(dtype).removeprefix("torch."), who, _max_abs(out, reference),
                         (out.double() - reference.double()).abs().mean().item()))
    return pd.DataFrame(rows, columns=["dtype", "model", "max_abs_error", "mean_abs_error"])


def inference_times(model: Transformer, src: torch.Tensor, tgt: torch.Tensor,
                    dtypes: tuple[torch.dtype, ...] = DTYPES,
                    min_run_time: float = 0.5) -> pd.DataFrame:
    """Median time of one teacher-forced forward pass ``model(src, tgt)`` in each dtype.

    Uses ``torch.utils.benchmark`` (median over its measurements) on the model's device,
    with copies of the same weights cast to each dtype (``model`` is left as it is); the
    ratio column is relative to float32.
    """
    benchmark = benchmark_module()

    rows = []
    for dtype in dtypes:
        m = copy.deepcopy(model).to(dtype).eval()
        timer = benchmark.Timer(stmt="with torch.no_grad(): m(src, tgt)",
                                globals={"m": m, "src": src, "tgt": tgt, "torch": torch})
        rows.append((str(dtype).removeprefix("torch."),
                     timer.blocked_autorange(min_run_time=min_run_time).median * 1e3))
    df = pd.DataFrame(rows, columns=["dtype", "median_ms"]).set_index("dtype")
    if "float32" in df.index:
        df["vs_float32"] = df["median_ms"] / df.loc["float32", "median_ms"]
    return df


# --- figures ------------------------------------------------------------------------------------


def plot_loss(history: dict, window: int = 20):
    """Training loss per step (log scale) with its running mean over ``window`` steps."""
    import matplotlib.pyplot as plt
    import numpy as np

    losses = np.asarray(history["losses"])
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(np.arange(1, len(losses) + 1), losses, alpha=0.35, label="per batch")
    ax.plot(np.arange(window, len(losses) + 1), smooth, label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per token")
    ax.legend()
    fig.tight_layout()
    return fig


def _labels(tokens: torch.Tensor) -> list[str]:
    names = {PAD: "pad", BOS: "bos", EOS: "eos"}
    return [names.get(t, str(t - 3)) for t in tokens.tolist()]


def plot_attention(maps: dict[str, torch.Tensor], src: torch.Tensor, tgt: torch.Tensor,
                   heads: tuple[int, ...] = (0, 1, 2, 3)):
    """Attention weights of ``heads`` for one example: one row of panels per attention block.

    ``maps``: from :func:`attention_maps` (batch index 0 is drawn); ``src``, ``tgt``: that
    example's source tokens and decoder input tokens (1-D). Queries are rows, keys columns.
    """
    import matplotlib.pyplot as plt

    blocks = [("encoder.self_attn", src, src), ("decoder.self_attn", tgt, tgt),
              ("decoder.cross_attn", tgt, src)]
    fig, axes = plt.subplots(len(blocks), len(heads), figsize=(2.3 * len(heads), 7.2),
                             squeeze=False)
    for row, (block, queries, keys) in zip(axes, blocks, strict=True):
        for ax, head in zip(row, heads, strict=True):
            ax.imshow(maps[block][0, head, : len(queries), : len(keys)], vmin=0, vmax=1,
                      cmap="viridis")
            ax.set_xticks(range(len(keys)), _labels(keys), fontsize=7, rotation=90)
            ax.set_yticks(range(len(queries)), _labels(queries), fontsize=7)
            ax.set_title(f"{block}, head {head}", fontsize=8)
    fig.tight_layout()
    return fig
