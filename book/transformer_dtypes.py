"""The Transformer in float16, bfloat16 and float32: how far from PyTorch, and how fast.

:func:`verify_against_torch` compares our encoder-decoder core with ``torch.nn.Transformer``
(same weights, masks and inputs, :func:`torch_reference`) in each dtype, against PyTorch in
float32; :func:`inference_times` times one forward pass of the same weights in each dtype;
:func:`cpu_16bit_support` says which 16-bit formats this CPU has instructions for, from the
flags its kernel reports.
"""

from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn

from book.hardware import cpu_flags, dtype_label
from book.timing import benchmark_module
from book.transformer import DTYPES, PAD, LayerNorm, Transformer, TransformerConfig

__all__ = ["CPU_16BIT_FLAGS", "cpu_16bit_support", "inference_times", "torch_reference",
           "verify_against_torch"]

# The x86 flags (/proc/cpuinfo) of instructions that compute on each 16-bit format: dot
# products with float32 accumulation (AVX-512 BF16, AMX) or arithmetic in it (AVX-512 FP16).
CPU_16BIT_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"),
                   "float16": ("avx512_fp16", "amx_fp16")}


def cpu_16bit_support(flags: frozenset[str] | None = None) -> dict[str, tuple[str, ...]]:
    """For ``bfloat16`` and ``float16``, the flags of :data:`CPU_16BIT_FLAGS` this CPU has
    (``flags``: those of :func:`book.hardware.cpu_flags` unless given); empty: none."""
    flags = cpu_flags() if flags is None else flags
    return {fmt: tuple(f for f in wanted if f in flags) for fmt, wanted in CPU_16BIT_FLAGS.items()}


def torch_reference(seed: int = 0, d_ff: int = 1024) -> nn.Transformer:
    """``nn.Transformer(256, 8, 1, 1, d_ff, dropout=0, batch_first=True)`` in eval mode, the
    same for the same seed, computing every position (no nested tensors, which would zero
    the padded ones and warn)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = nn.Transformer(d_model=256, nhead=8, num_encoder_layers=1, num_decoder_layers=1,
                             dim_feedforward=d_ff, dropout=0.0, batch_first=True).eval()
    ref.encoder.use_nested_tensor = False
    return ref


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
    ref = torch_reference(seed)
    src_x = torch.randn(batch, S, 256, generator=g)
    tgt_x = torch.randn(batch, T, 256, generator=g)
    # token ids only to place the padding: lengths in [1, L], so no row is all padding
    src_len = torch.randint(1, S + 1, (batch,), generator=g)
    tgt_len = torch.randint(1, T + 1, (batch,), generator=g)
    src_tok = torch.where(torch.arange(S) < src_len[:, None], PAD + 1, PAD)  # (batch, S)
    tgt_tok = torch.where(torch.arange(T) < tgt_len[:, None], PAD + 1, PAD)
    src_pad, tgt_pad = src_tok == PAD, tgt_tok == PAD
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)

    def torch_out(dtype):
        r = copy.deepcopy(ref).to(dtype)
        return r(src_x.to(dtype), tgt_x.to(dtype), tgt_mask=causal, src_key_padding_mask=src_pad,
                 tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)

    reference = torch_out(torch.float32).double()
    config = TransformerConfig(10, 10, dtype=torch.float32)
    rows = []
    for dtype in dtypes:
        ours = Transformer(config).load_torch_weights(ref).to(dtype).eval()
        masks = ours.src_pad(src_tok), ours.causal(ours.tgt_pad(tgt_tok))
        for who, model in (("PyTorch", None), ("ours", ours),
                           ("ours with nn.LayerNorm", _with_torch_layer_norms(ours))):
            out = torch_out(dtype) if model is None else model.core(src_x.to(dtype),
                                                                    tgt_x.to(dtype), *masks)
            if out.dtype != dtype:
                raise RuntimeError(f"{who} returned {out.dtype} for {dtype}")
            error = (out.double() - reference).abs()
            rows.append((dtype_label(dtype), who, error.max().item(), error.mean().item()))
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
        rows.append((dtype_label(dtype),
                     timer.blocked_autorange(min_run_time=min_run_time).median * 1e3))
    df = pd.DataFrame(rows, columns=["dtype", "median_ms"]).set_index("dtype")
    if "float32" in df.index:
        df["vs_float32"] = df["median_ms"] / df.loc["float32", "median_ms"]
    return df
