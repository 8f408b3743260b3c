"""The 16-bit Transformer of Problem 2: one encoder layer, one decoder layer, 8 heads.

Written from the assignment hand-out's equations, "(A10)" being its equation (10): positions
(A10, A11), scaled dot-product attention (A12) with an additive mask (A16), cross-attention
(A17), multi-head attention, residual + LayerNorm (A13, A15), the feed-forward network (A14).
Post-norm, as ``torch.nn.Transformer`` with ``norm_first=False`` and its final encoder and
decoder LayerNorms, so :meth:`Transformer.load_torch_weights` reproduces PyTorch. No dropout.

Bottom-up, as nanoGPT's ``model.py``: leaf modules that do all the arithmetic (each counted
by :mod:`book.transformer_ops`, so ``count_ops`` sees every operation), containers built from
the one :class:`TransformerConfig` that only wire and reshape, then :class:`Transformer`.

16 bits: every parameter, buffer and tensor the model makes has ``config.dtype`` (float16 by
default). PyTorch's fp16 kernels for matrix products and sums accumulate in fp32 registers
and round once, as GPU tensor cores do; nothing is cast up. The two steps that would
overflow in fp16 are handled in :class:`Softmax` and :class:`LayerNorm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from book.checks import positive_int

__all__ = ["BOS", "DTYPES", "EOS", "PAD", "Add", "AddNorm", "CausalMask", "DecoderLayer",
           "EncoderLayer", "FeedForward", "KVCache", "KeyPaddingMask", "LayerNorm", "MatMul",
           "MultiHeadAttention", "PositionalEncoding", "Scale", "ScaledDotProductAttention",
           "Softmax", "Transformer", "TransformerConfig"]

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PAD, BOS, EOS = 0, 1, 2  # special tokens; a task's own tokens come after them


@dataclass(frozen=True)
class TransformerConfig:
    """The model's shape and number format, passed whole to each layer. ``d_ff`` is our choice
    (the assignment fixes ``d_model`` and 8 heads); ``max_len`` is the longest sequence."""

    src_vocab: int
    tgt_vocab: int
    d_model: int = 256
    n_heads: int = 8
    d_ff: int = 1024
    max_len: int = 512
    dtype: torch.dtype = torch.float16

    def __post_init__(self) -> None:
        for name in ("src_vocab", "tgt_vocab", "d_model", "n_heads", "d_ff", "max_len"):
            positive_int(name, getattr(self, name))
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for sin/cos pairs, got {self.d_model}")

    @property
    def d_k(self) -> int:  # the width of one head
        return self.d_model // self.n_heads


# --- leaf modules: all the arithmetic -------------------------------------------------------


class PositionalEncoding(nn.Module):
    """Adds the sinusoids of equations (A10) and (A11) to ``x`` of shape ``[B, L, d_model]``.
    The table is a constant: computed in float64, rounded once when the model is cast."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # 2i = 0, 2, ..., d_model - 2
        angle = pos / 10000 ** (two_i / d_model)  # (max_len, d_model / 2)
        pe = torch.empty(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)  # (A10)
        pe[:, 1::2] = torch.cos(angle)  # (A11)
        self.register_buffer("pe", pe, persistent=False)

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
    (the last two operations fused, rounded once). Built in float32; ``.to(dtype)`` casts it.
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

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
    """Token ids ``[B, L]`` -> additive mask ``[B, 1, 1, L]``: ``-inf`` at ``PAD``, else 0."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fill", torch.tensor([0.0, -math.inf]), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        is_pad = tokens[:, None, None, :] == PAD  # one comparison per token
        return torch.where(is_pad, self.fill[1], self.fill[0])


class CausalMask(nn.Module):
    """Adds the causal mask ``M`` of equation (A16) to a key padding mask.

    ``[B, 1, 1, T] -> [B, 1, T, T]``; ``M[i, j] = -inf`` for ``j > i`` (a position must not
    see the future), else 0.
    """

    def __init__(self, max_len: int):
        super().__init__()
        self.register_buffer("m", torch.full((max_len, max_len), -math.inf).triu(1),
                             persistent=False)

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

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.scale = Scale(1 / math.sqrt(config.d_k))
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


class KVCache:
    """The keys and values one attention block keeps between the steps of greedy decoding:
    for self-attention those of every position so far, each step appending the newest; for
    cross-attention (``static``) those of the encoder output, projected once and reused."""

    def __init__(self, static: bool = False):
        self.static = static
        self.keys: torch.Tensor | None = None  # (B, h, positions so far, d_k)
        self.values: torch.Tensor | None = None

    @property
    def length(self) -> int:  # positions cached
        return 0 if self.keys is None else self.keys.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Adds ``k`` and ``v`` (``[B, h, new, d_k]``) after the cached ones; returns all."""
        if self.keys is not None:
            k = torch.cat([self.keys, k], dim=2)  # (B, h, length + new, d_k)
            v = torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v


class MultiHeadAttention(nn.Module):
    """``Concat(head_1, ..., head_h) W^O`` with ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``.

    The h per-head projections ``W_i^Q`` (``d_model x d_k`` each) are stored side by side as
    one ``d_model x d_model`` linear layer, likewise for K and V.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.d_model
        self.n_heads, self.d_k = config.n_heads, config.d_k
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.attention = ScaledDotProductAttention(config)
        self.out_proj = nn.Linear(d, d)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.d_k).transpose(1, 2)  # (B, h, L, d_k)

    def keys_values(self, key: torch.Tensor, value: torch.Tensor,
                    cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``K W^K`` and ``V W^V`` split into heads, ``[B, h, Lk, d_k]`` each; with a
        ``cache``, those of every position so far, or those of its first call if static."""
        if cache is not None and cache.static and cache.length:
            return cache.keys, cache.values
        k = self.split_heads(self.k_proj(key))  # (B, h, Lk, d_k)
        v = self.split_heads(self.v_proj(value))
        return (k, v) if cache is None else cache.append(k, v)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """``query [B, Lq, d]``, ``key`` and ``value [B, Lk, d]`` -> ``[B, Lq, d]``."""
        b, n, d = query.shape
        q = self.split_heads(self.q_proj(query))  # (B, h, Lq, d_k)
        k, v = self.keys_values(key, value, cache)  # (B, h, Lk, d_k)
        heads = self.attention(q, k, v, mask)  # (B, h, Lq, d_k)
        return self.out_proj(heads.transpose(1, 2).reshape(b, n, d))  # concat: (B, Lq, d)


class FeedForward(nn.Module):
    """Equation (A14): ``max(0, x W_1 + b_1) W_2 + b_2``, ``d_model -> d_ff -> d_model``."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.linear1 = nn.Linear(config.d_model, config.d_ff)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu(self.linear1(x)))


class AddNorm(nn.Module):
    """Equations (A13) and (A15): ``LayerNorm(x + Sublayer(x))``, given ``x`` and the
    sub-layer's output (the Annotated Transformer's ``SublayerConnection``, post-norm)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.add = Add()
        self.norm = LayerNorm(config.d_model)

    def forward(self, x: torch.Tensor, sublayer_out: torch.Tensor) -> torch.Tensor:
        return self.norm(self.add(x, sublayer_out))


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each followed by Add & LayerNorm."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.ffn = FeedForward(config)
        self.add_norm1, self.add_norm2 = AddNorm(config), AddNorm(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.add_norm1(x, self.self_attn(x, x, x, mask))  # (A13)
        return self.add_norm2(x, self.ffn(x))  # (A14), (A15)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output (queries from the
    decoder, keys and values from the encoder) and the feed-forward network, each followed
    by Add & LayerNorm. With ``cache`` (the :class:`KVCache` of each attention), ``y`` is the
    newest position only, which may see every cached one: ``self_mask`` is None."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(config)
        self.cross_attn = MultiHeadAttention(config)
        self.ffn = FeedForward(config)
        self.add_norm1, self.add_norm2, self.add_norm3 = (AddNorm(config) for _ in range(3))

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None,
                memory_mask: torch.Tensor | None,
                cache: tuple[KVCache, KVCache] | None = None) -> torch.Tensor:
        self_cache, cross_cache = cache or (None, None)
        y = self.add_norm1(y, self.self_attn(y, y, y, self_mask, self_cache))  # (A16), (A13)
        y = self.add_norm2(y, self.cross_attn(y, memory, memory, memory_mask, cross_cache))  # (A17)
        return self.add_norm3(y, self.ffn(y))  # (A14), (A15)


class Transformer(nn.Module):
    """Token ids in, next-token logits out: ``src [B, S]``, ``tgt [B, T] -> [B, T, tgt_vocab]``.

    One :class:`EncoderLayer` and one :class:`DecoderLayer`, each followed by a final
    LayerNorm as in ``torch.nn.Transformer``. Source and target have their own embeddings,
    added to the positions unscaled; ``PAD`` keys are masked everywhere, and the decoder's
    self-attention is causal. Built in float32, then cast to ``config.dtype`` once.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {config!r}")
        self.config = config
        d = config.d_model
        self.src_embed = nn.Embedding(config.src_vocab, d)
        self.tgt_embed = nn.Embedding(config.tgt_vocab, d)
        self.pos = PositionalEncoding(d, config.max_len)
        self.src_pad, self.tgt_pad = KeyPaddingMask(), KeyPaddingMask()
        self.causal = CausalMask(config.max_len)
        self.encoder = EncoderLayer(config)
        self.encoder_norm = LayerNorm(d)
        self.decoder = DecoderLayer(config)
        self.decoder_norm = LayerNorm(d)
        self.generator = nn.Linear(d, config.tgt_vocab)
        # As nn.Transformer does: Xavier-uniform for every matrix except the embeddings.
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)
        self.to(config.dtype)  # the one place the dtype is applied: every parameter and buffer

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters now (``.to(dtype)`` changes it)."""
        return self.generator.weight.dtype

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src [B, S]`` -> (memory ``[B, S, d_model]``, source mask ``[B, 1, 1, S]``)."""
        src_mask = self.src_pad(src)
        memory = self.encoder(self.pos(self.src_embed(src)), src_mask)
        return self.encoder_norm(memory), src_mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
               cache: tuple[KVCache, KVCache] | None = None) -> torch.Tensor:
        """``tgt [B, T]`` and the encoder's output -> logits ``[B, T, tgt_vocab]``; with a
        ``cache`` (see :meth:`generate`), ``tgt [B, 1]`` is the token after the cached ones."""
        if cache is None:
            offset, tgt_mask = 0, self.causal(self.tgt_pad(tgt))  # (B, 1, T, T)
        else:
            offset, tgt_mask = cache[0].length, None  # after the self-attention's cached keys
        y = self.pos(self.tgt_embed(tgt), offset)  # (B, T, d)
        y = self.decoder(y, memory, tgt_mask, src_mask, cache)
        return self.generator(self.decoder_norm(y))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        for name, t in (("src", src), ("tgt", tgt)):
            if t.dim() != 2 or t.dtype != torch.long:
                raise ValueError(f"{name} must be token ids of shape [B, L] and dtype long, "
                                 f"got {list(t.shape)} {t.dtype}")
        memory, src_mask = self.encode(src)
        return self.decode(tgt, memory, src_mask)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_len: int) -> torch.Tensor:
        """Greedy decoding: ``src [B, S]`` -> ``[B, max_len]`` tokens (no BOS), PAD after EOS.

        With a key-value cache: the encoder, and the cross-attention's keys and values, run
        once; each step runs :meth:`decode` on the newest token only, whose self-attention
        keys and values join those of the earlier positions. The result is that of
        :meth:`decode` on the whole prefix at every step (a test checks it), for a fraction of
        the work: a position only ever attends to itself and earlier ones.
        """
        memory, src_mask = self.encode(src)
        cache = (KVCache(), KVCache(static=True))  # self-attention, cross-attention
        token = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
        out = torch.full((len(src), max_len), PAD, dtype=torch.long, device=src.device)
        for t in range(max_len):
            logits = self.decode(token[:, None], memory, src_mask, cache)  # (B, 1, tgt_vocab)
            token = torch.where(done, PAD, logits[:, 0].argmax(-1))  # (B,)
            out[:, t] = token
            done |= token == EOS
            if done.all():
                break
        return out

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

        def same(ours: nn.Module, theirs: nn.Module, name: str) -> None:
            if isinstance(theirs, nn.LayerNorm) and theirs.eps != ours.eps:
                raise ValueError(f"{name}: eps {theirs.eps} differs from ours {ours.eps}")
            for p in ("weight", "bias"):
                pairs.append((f"{name}.{p}", getattr(ours, p), getattr(theirs, p)))

        def attn(ours: MultiHeadAttention, theirs: nn.MultiheadAttention, name: str) -> None:
            if theirs.num_heads != ours.n_heads or theirs.in_proj_weight is None:
                raise ValueError(f"{name}: expected {ours.n_heads} heads with packed q, k, v")
            w, b = theirs.in_proj_weight.chunk(3), theirs.in_proj_bias.chunk(3)
            for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
                pairs.append((f"{name}.in_proj_weight[{i}]", proj.weight, w[i]))
                pairs.append((f"{name}.in_proj_bias[{i}]", proj.bias, b[i]))
            same(ours.out_proj, theirs.out_proj, f"{name}.out_proj")

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
                same(getattr(ours, f"add_norm{i}").norm, getattr(theirs, f"norm{i}"),
                     f"{name}.norm{i}")
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
