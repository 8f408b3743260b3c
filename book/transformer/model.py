"""The Transformer of Problem 2: one encoder layer, one decoder layer, 8 heads, in 16 bits.

Post-norm, as ``torch.nn.Transformer`` with ``norm_first=False`` and its final encoder and
decoder LayerNorms, so that :meth:`Transformer.load_torch_weights` reproduces PyTorch; no
dropout, and the embeddings are not multiplied by ``sqrt(d_model)``. As in nanoGPT's
``model.py``, the leaf modules of :mod:`book.transformer.layers` do all the arithmetic, and the
containers here, built from one :class:`TransformerConfig`, only wire and reshape. Every
parameter, buffer and activation has ``config.dtype``; matrix products and sums accumulate as
:mod:`book.transformer.strict_fp16` says.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from book.checks import is_int, positive_int
from book.transformer.layers import (
    CENTRED,
    Add,
    ApplyMask,
    CausalMask,
    KeyPaddingMask,
    LayerNorm,
    Linear,
    MatMul,
    PositionalEncoding,
    RangeError,
    Scale,
    Scores,
    Softmax,
    TokenEmbedding,
    check_batch,
    check_tokens,
)
from book.transformer.pytorch_reference import check_torch_reference

__all__ = ["BOS", "DTYPES", "EOS", "PAD", "Add", "AddNorm", "ApplyMask", "CausalMask",
           "DecoderLayer", "EncoderLayer", "FeedForward", "KVCache", "KeyPaddingMask",
           "LayerNorm", "Linear", "MatMul", "MultiHeadAttention", "PositionalEncoding",
           "RangeError", "Scale", "ScaledDotProductAttention", "Scores", "Softmax",
           "TokenEmbedding", "Transformer", "TransformerConfig"]

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PAD, BOS, EOS = 0, 1, 2  # special tokens; a task's own tokens come after them


@dataclass(frozen=True)
class TransformerConfig:
    """The model's shape and number format, passed whole to each layer. ``d_ff`` is our choice
    (the assignment fixes ``d_model`` and 8 heads); ``max_len`` is the longest sequence;
    ``pad_id`` the token whose keys are masked (a token of both vocabularies)."""

    src_vocab: int
    tgt_vocab: int
    d_model: int = 256
    n_heads: int = 8
    d_ff: int = 1024
    max_len: int = 512
    dtype: torch.dtype = torch.float16
    pad_id: int = PAD

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
        top = min(self.src_vocab, self.tgt_vocab) - 1
        if not is_int(self.pad_id) or not 0 <= self.pad_id <= top:
            raise ValueError(f"pad_id must be a token id of both vocabularies, an int in "
                             f"[0, {top}], got {self.pad_id!r}")

    @property
    def d_k(self) -> int:  # the width of one head
        return self.d_model // self.n_heads


# --- containers: only reshapes --------------------------------------------------------------


class ScaledDotProductAttention(nn.Module):
    """Equations (R12) and (R16): ``softmax(Q K^T / sqrt(d_k) + M) V`` for every head.

    ``q``: ``[B, h, Lq, d_k]``, ``k`` and ``v``: ``[B, h, Lk, d_k]``, ``mask``: additive,
    broadcastable to ``[B, h, Lq, Lk]`` (0 or ``-inf``), or None. ``1/sqrt(d_k)`` scales Q
    before the product (``Lq d_k`` multiplications instead of ``Lq Lk``), except in float16
    (:data:`~book.transformer.layers.CENTRED`), where it scales the small centred scores after
    it: rounding ``q / sqrt(d_k)`` to float16 would move a score by up to ``|q| |k| 2**-12``.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.scale = Scale(1 / math.sqrt(config.d_k))
        self.scores = Scores(config.d_k)
        self.mask = ApplyMask()
        self.softmax = Softmax()
        self.context = MatMul()

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if q.dtype in CENTRED:
            a, shift = self.scores(q, k, mask)  # (B, h, Lq, Lk), less each row's max
            a = self.scale(a)
        else:
            a, shift = self.scores(self.scale(q), k)  # (B, h, Lq, Lk), times 2**-shift
        if mask is not None:
            a = self.mask(a, mask)  # (R16)
        return self.context(self.softmax(a, shift), v)  # (B, h, Lq, d_k)


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
        self.q_proj = Linear(d, d)
        self.k_proj = Linear(d, d)
        self.v_proj = Linear(d, d)
        self.attention = ScaledDotProductAttention(config)
        self.out_proj = Linear(d, d)

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
    """Equation (R14): ``max(0, x W_1 + b_1) W_2 + b_2``, ``d_model -> d_ff -> d_model``."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.linear1 = Linear(config.d_model, config.d_ff)
        self.relu = nn.ReLU()
        self.linear2 = Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu(self.linear1(x)))


class AddNorm(nn.Module):
    """Equations (R13) and (R15): ``LayerNorm(x + Sublayer(x))``, given ``x`` and the
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
        x = self.add_norm1(x, self.self_attn(x, x, x, mask))  # (R13)
        return self.add_norm2(x, self.ffn(x))  # (R14), (R15)


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
        y = self.add_norm1(y, self.self_attn(y, y, y, self_mask, self_cache))  # (R16), (R13)
        y = self.add_norm2(y, self.cross_attn(y, memory, memory, memory_mask, cross_cache))  # (R17)
        return self.add_norm3(y, self.ffn(y))  # (R14), (R15)


class Transformer(nn.Module):
    """Token ids in, next-token logits out: ``src [B, S]``, ``tgt [B, T] -> [B, T, tgt_vocab]``.

    One :class:`EncoderLayer` and one :class:`DecoderLayer`, each followed by a final
    LayerNorm as in ``torch.nn.Transformer``. Source and target have their own embeddings,
    added to the positions unscaled; ``pad_id`` keys are masked everywhere, and the decoder's
    self-attention is causal. Built in float32, then cast to ``config.dtype`` once.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {config!r}")
        self.config = config
        d = config.d_model
        self.src_embed = TokenEmbedding(config.src_vocab, d, "src")
        self.tgt_embed = TokenEmbedding(config.tgt_vocab, d, "tgt")
        self.pos = PositionalEncoding(d, config.max_len)
        self.src_pad = KeyPaddingMask(config.pad_id)
        self.tgt_pad = KeyPaddingMask(config.pad_id)
        self.causal = CausalMask(config.max_len)
        self.encoder = EncoderLayer(config)
        self.encoder_norm = LayerNorm(d)
        self.decoder = DecoderLayer(config)
        self.decoder_norm = LayerNorm(d)
        self.generator = Linear(d, config.tgt_vocab)
        # As nn.Transformer does: Xavier-uniform for every matrix except the embeddings.
        for name, p in self.named_parameters():
            if p.dim() > 1 and "embed" not in name:
                nn.init.xavier_uniform_(p)
        for name, module in self.named_modules():
            module.qualified_name = name  # what an overflow error calls the step
        self.to(config.dtype)  # the one place the dtype is applied: every parameter and buffer

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters now (``.to(dtype)`` changes it)."""
        return self.generator.weight.dtype

    def _apply(self, fn, recurse=True):
        # .to(dtype), .half(), ...: the config follows the parameters, so what reads
        # model.config (the closed-form counts) sees the model as it now computes; a float64
        # copy (a reference for error measurements, no config of ours) keeps the last one
        super()._apply(fn, recurse)
        if self.dtype in DTYPES:
            self.config = dataclasses.replace(self.config, dtype=self.dtype)
        return self

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src [B, S]`` -> (memory ``[B, S, d_model]``, source mask ``[B, 1, 1, S]``)."""
        check_tokens("src", src, self.config.max_len)
        src_mask = self.src_pad(src)
        memory = self.encoder(self.pos(self.src_embed(src)), src_mask)
        return self.encoder_norm(memory), src_mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
               cache: tuple[KVCache, KVCache] | None = None) -> torch.Tensor:
        """``tgt [B, T]`` and the encoder's output -> logits ``[B, T, tgt_vocab]``; with a
        ``cache`` (see :meth:`generate`), ``tgt [B, 1]`` is the token after the cached ones."""
        offset = 0 if cache is None else cache[0].length  # after the cached self-attention keys
        check_tokens("tgt", tgt, self.config.max_len, offset)
        check_batch(tgt=tgt, memory=memory)
        tgt_mask = self.causal(self.tgt_pad(tgt)) if cache is None else None  # (B, 1, T, T)
        y = self.pos(self.tgt_embed(tgt), offset)  # (B, T, d)
        y = self.decoder(y, memory, tgt_mask, src_mask, cache)
        return self.generator(self.decoder_norm(y))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        check_tokens("src", src, self.config.max_len)
        check_tokens("tgt", tgt, self.config.max_len)
        check_batch(src=src, tgt=tgt)
        memory, src_mask = self.encode(src)
        return self.decode(tgt, memory, src_mask)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_len: int) -> torch.Tensor:
        """Greedy decoding: ``src [B, S]`` -> ``[B, max_len]`` tokens (no BOS), pad after EOS.

        The encoder, and the cross-attention's keys and values, run once; each step runs
        :meth:`decode` on the newest token only, whose self-attention keys and values join the
        cached ones of the earlier positions. The result is that of :meth:`decode` on the
        whole prefix, for a fraction of the work.
        """
        pad = self.config.pad_id
        if positive_int("max_len", max_len) > self.config.max_len:
            raise ValueError(f"max_len must be at most config.max_len = {self.config.max_len}, "
                             f"got {max_len}")
        if max(BOS, EOS) >= self.config.tgt_vocab or pad in (BOS, EOS):
            raise ValueError(f"generate needs BOS ({BOS}) and EOS ({EOS}) in the target "
                             f"vocabulary and distinct from pad_id ({pad})")
        memory, src_mask = self.encode(src)
        cache = (KVCache(), KVCache(static=True))  # self-attention, cross-attention
        token = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
        out = torch.full((len(src), max_len), pad, dtype=torch.long, device=src.device)
        for t in range(max_len):
            logits = self.decode(token[:, None], memory, src_mask, cache)  # (B, 1, tgt_vocab)
            token = torch.where(done, pad, logits[:, 0].argmax(-1))  # (B,)
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
        for name, x in (("src_x", src_x), ("tgt_x", tgt_x)):
            if x.dim() != 3 or x.shape[-1] != self.config.d_model:
                raise ValueError(f"{name} must be [B, L, {self.config.d_model}], got "
                                 f"{list(x.shape)}")
            if not torch.isfinite(x).all():
                raise ValueError(f"{name} holds inf or NaN")
        for name, x in (("src_x", src_x), ("tgt_x", tgt_x), ("src_mask", src_mask),
                        ("tgt_mask", tgt_mask)):
            if x is not None and x.dtype != self.dtype:
                raise ValueError(f"{name} is {x.dtype} but the model computes in {self.dtype}: "
                                 f"pass {name}.to({self.dtype}), or convert the model with "
                                 f"model.to({x.dtype})")
        check_batch(src_x=src_x, tgt_x=tgt_x)
        memory = self.encoder_norm(self.encoder(src_x, src_mask))
        return self.decoder_norm(self.decoder(tgt_x, memory, tgt_mask, src_mask))

    @torch.no_grad()
    def load_torch_weights(self, ref: nn.Transformer) -> Transformer:
        """Copy the weights of ``nn.Transformer(d_model, nhead, 1, 1, d_ff, batch_first=True)``.

        A setting of ``ref`` that ours does not compute is refused first
        (:func:`~book.transformer.pytorch_reference.check_torch_reference`).
        ``in_proj_weight`` stacks ``W^Q; W^K; W^V`` (``[3d, d]``); it is split into our three
        projections. Every copied shape is checked; values are rounded to our dtype.
        """
        check_torch_reference(ref, self.config)
        names = {module: name for name, module in ref.named_modules()}
        pairs: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (ref's name, ours, theirs)

        def same(ours: nn.Module, theirs: nn.Module) -> None:
            for p in ("weight", "bias"):
                pairs.append((f"{names[theirs]}.{p}", getattr(ours, p), getattr(theirs, p)))

        enc, dec = ref.encoder.layers[0], ref.decoder.layers[0]
        for ours, theirs in ((self.encoder.self_attn, enc.self_attn),
                             (self.decoder.self_attn, dec.self_attn),
                             (self.decoder.cross_attn, dec.multihead_attn)):
            w, b = theirs.in_proj_weight.chunk(3), theirs.in_proj_bias.chunk(3)
            for i, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
                pairs.append((f"{names[theirs]}.in_proj_weight[{i}]", proj.weight, w[i]))
                pairs.append((f"{names[theirs]}.in_proj_bias[{i}]", proj.bias, b[i]))
            same(ours.out_proj, theirs.out_proj)
        for ours, theirs in ((self.encoder, enc), (self.decoder, dec)):
            same(ours.ffn.linear1, theirs.linear1)
            same(ours.ffn.linear2, theirs.linear2)
            for i in (1, 2, 3) if ours is self.decoder else (1, 2):
                same(getattr(ours, f"add_norm{i}").norm, getattr(theirs, f"norm{i}"))
        same(self.encoder_norm, ref.encoder.norm)
        same(self.decoder_norm, ref.decoder.norm)

        n_ref = sum(p.numel() for p in ref.parameters())
        if sum(src.numel() for _, _, src in pairs) != n_ref:
            raise ValueError("some parameters of ref have no counterpart in this model")
        for name, dst, src in pairs:
            if dst.shape != src.shape:
                raise ValueError(f"ref's {name} has shape {tuple(src.shape)}, ours "
                                 f"{tuple(dst.shape)}: build the reference with our config's "
                                 "shape")
        for _, dst, src in pairs:  # nothing is copied unless everything fits
            dst.copy_(src)
        return self
