"""The Transformer in 16 bits, measured: against PyTorch, how fast, and where it breaks.

Our encoder-decoder core against ``torch.nn.Transformer`` with the same weights (in each dtype,
and in float16 across input scales), its inference time per dtype, and the trained model in
four precisions. "The textbook formulas" are equations (R12)-(R15) computed as written, in the
input's dtype: ``exp(x) / sum(exp(x))``, ``(x - mu) / sqrt(mean((x - mu)**2) + eps)`` and
``(Q K^T) / sqrt(d_k)`` (:func:`textbook_model`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import replace

import pandas as pd
import torch
from torch import nn

from book.hardware import cpu_flags, dtype_label
from book.inspection import forward_hooks
from book.speed.timing import median_seconds
from book.transformer.model import (
    DTYPES,
    PAD,
    LayerNorm,
    RangeError,
    Scale,
    Scores,
    Softmax,
    Transformer,
    TransformerConfig,
)
from book.transformer.reversal import ReversalTask, exact_match
from book.transformer.strict_fp16 import strict_fp16

__all__ = ["SHARED_WEIGHT", "TextbookSoftmax", "against_pytorch", "cpu_16bit_support",
           "first_failure", "inference_times", "layer_norm_sweep", "magnitude_sweep",
           "precision_table", "textbook_layer_norm", "textbook_model", "torch_reference",
           "verify_against_torch"]

# The x86 flags (/proc/cpuinfo) of instructions that compute on each 16-bit format: dot
# products with float32 accumulation (AVX-512 BF16, AMX) or arithmetic in it (AVX-512 FP16).
CPU_16BIT_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"),
                   "float16": ("avx512_fp16", "amx_fp16")}


def cpu_16bit_support() -> dict[str, tuple[str, ...]]:
    """For ``bfloat16`` and ``float16``, the flags of :data:`CPU_16BIT_FLAGS` this CPU has
    (:func:`book.hardware.cpu_flags`); empty: none."""
    flags = cpu_flags()
    return {fmt: tuple(f for f in wanted if f in flags) for fmt, wanted in CPU_16BIT_FLAGS.items()}


# The encoder-decoder core compared with nn.Transformer: the vocabularies do not enter it.
CORE = TransformerConfig(src_vocab=10, tgt_vocab=10, dtype=torch.float32)


def torch_reference(config: TransformerConfig = CORE, seed: int = 0) -> nn.Transformer:
    """``nn.Transformer`` of ``config``'s shape (``d_model``, ``n_heads``, ``d_ff``, one layer
    each side, no dropout, batch first) in eval mode, the same for the same seed, computing
    every position (no nested tensors, which would zero the padded ones and warn)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ref = nn.Transformer(d_model=config.d_model, nhead=config.n_heads,
                             num_encoder_layers=1, num_decoder_layers=1,
                             dim_feedforward=config.d_ff, dropout=0.0, batch_first=True).eval()
    ref.encoder.use_nested_tensor = False
    return ref


def _swapped(model: Transformer, classes: dict[type, type]) -> Transformer:
    """A copy of ``model`` (same weights) whose modules of each type in ``classes`` compute as
    the subclass it maps to."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) in classes:
            module.__class__ = classes[type(module)]
    return model


class TorchLayerNorm(LayerNorm):
    """PyTorch's LayerNorm kernel, which computes mean and variance in float32 internally even
    for float16 input: it shows how much of our float16 error comes from doing them in float16.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


@torch.no_grad()
def verify_against_torch(batch: int = 4, S: int = 12, T: int = 9, seed: int = 0,
                         dtypes: tuple[torch.dtype, ...] = DTYPES,
                         config: TransformerConfig = CORE) -> pd.DataFrame:
    """Ours and ``nn.Transformer`` with the same weights, masks and inputs, both of
    ``config``'s shape.

    Random inputs ``src_x [batch, S, d_model]``, ``tgt_x [batch, T, d_model]``, some padding, a
    causal target mask; the reference is PyTorch in float32. For each dtype, the largest and
    mean absolute deviation of PyTorch's and of our encoder-decoder output (padded target
    positions included) from that reference, and of ours with PyTorch's LayerNorm kernel.
    """
    g = torch.Generator().manual_seed(seed)
    ref = torch_reference(config, seed)
    src_x = torch.randn(batch, S, config.d_model, generator=g)
    tgt_x = torch.randn(batch, T, config.d_model, generator=g)
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
    rows = []
    for dtype in dtypes:
        ours = Transformer(config).load_torch_weights(ref).to(dtype).eval()
        hybrid = _swapped(ours, {LayerNorm: TorchLayerNorm})
        inputs = (src_x.to(dtype), tgt_x.to(dtype), ours.src_pad(src_tok),
                  ours.causal(ours.tgt_pad(tgt_tok)))
        for who, out in (("PyTorch", torch_out(dtype)), ("ours", ours.core(*inputs)),
                         ("ours with nn.LayerNorm", hybrid.core(*inputs))):
            if out.dtype != dtype:
                raise RuntimeError(f"{who} returned {out.dtype} for {dtype}")
            error = (out.double() - reference).abs()
            rows.append((dtype_label(dtype), who, error.max().item(), error.mean().item()))
    return pd.DataFrame(rows, columns=["dtype", "model", "max_abs_error", "mean_abs_error"])


def inference_times(model: Transformer, src: torch.Tensor, tgt: torch.Tensor,
                    dtypes: tuple[torch.dtype, ...] = DTYPES,
                    min_run_time: float = 0.5) -> pd.DataFrame:
    """Median milliseconds of one teacher-forced forward pass ``model(src, tgt)`` in each dtype
    (:func:`book.speed.timing.median_seconds`), on the model's device, with copies of the same
    weights cast to each dtype (``model`` is left as it is); the ratio column is to float32.
    """
    rows = []
    for dtype in dtypes:
        m = copy.deepcopy(model).to(dtype).eval()
        seconds = median_seconds("with torch.no_grad(): m(src, tgt)", min_run_time=min_run_time,
                                 m=m, src=src, tgt=tgt)
        rows.append((dtype_label(dtype), seconds * 1e3))
    df = pd.DataFrame(rows, columns=["dtype", "median_ms"]).set_index("dtype")
    if "float32" in df.index:
        df["vs_float32"] = df["median_ms"] / df.loc["float32", "median_ms"]
    return df


FINITE, NON_FINITE, RAISED = "finite", "inf or NaN returned", "RangeError raised"


def textbook_layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(x - mu) / sqrt(mean((x - mu)**2) + eps)``, in the dtype of ``x``."""
    xc = x - x.mean(dim=-1, keepdim=True)
    return xc / torch.sqrt((xc * xc).mean(dim=-1, keepdim=True) + eps)


class TextbookLayerNorm(LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return textbook_layer_norm(x, self.eps) * self.weight + self.bias


class TextbookSoftmax(Softmax):
    def forward(self, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
        e = torch.exp(x)
        return e / e.sum(dim=-1, keepdim=True)


class TextbookScores(Scores):
    """``(Q K^T) / sqrt(d_k)``: the product first, then the scale (the model's ``Scale``
    before it is set to 1)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, mask=None) -> tuple[torch.Tensor, int]:
        return (q @ k.transpose(-2, -1)) * (1 / math.sqrt(self.d_k)), 0


def textbook_model(model: Transformer) -> Transformer:
    """A copy of ``model`` that computes softmax, LayerNorm and the scores as the textbook
    formulas do (same weights); every other step is ours, checks included."""
    model = _swapped(model, {Softmax: TextbookSoftmax, LayerNorm: TextbookLayerNorm,
                             Scores: TextbookScores})
    for name, module in model.named_modules():
        if isinstance(module, Scale) and name.endswith("attention.scale"):
            module.factor.fill_(1)  # TextbookScores divides by sqrt(d_k) after the product
    return model


def _error(out: torch.Tensor, reference: torch.Tensor) -> tuple[float, str]:
    if not torch.isfinite(out).all():
        return math.nan, NON_FINITE
    return (out.double() - reference).abs().max().item(), FINITE


FUSED, COMPOSITE = "PyTorch float16, fused (eval)", "PyTorch float16, composite (train)"


# A row of attention weights whose second-largest weight exceeds this has not saturated: its
# largest score does not take nearly all of the weight.
SHARED_WEIGHT = 0.01


@torch.no_grad()
def magnitude_sweep(sigmas, batch: int = 4, S: int = 12, T: int = 9, seed: int = 0,
                    config: TransformerConfig = CORE) -> pd.DataFrame:
    """The float16 core on embedded inputs ``sigma * N(0, 1)``, against float64.

    ``nn.Transformer``'s weights of ``config``'s shape (:func:`torch_reference`) rounded to
    float16 serve everyone; the inputs ``[batch, S or T, d_model]`` are rounded to float16
    too, and the float64 reference computes on exactly those numbers, so an error is the
    arithmetic's alone. A causal target mask and no padding (which keeps PyTorch's fused path
    open). Rows: ``sigma``, ``model``, ``max_abs_error`` (NaN without a finite result),
    ``outcome`` (finite; inf or NaN returned, or caught by the check of a later step;
    RangeError raised: a value out of range), ``step`` (the step that raised or caught it) and
    ``max_score`` (the largest attention score ``|q k^T| / sqrt(d_k)`` in float64, at that
    ``sigma``) and ``rows_shared`` (in float64, the share of the self-attentions' rows whose
    second-largest weight exceeds :data:`SHARED_WEIGHT`: rows that have not saturated).
    """
    fused = torch_reference(config, seed).half()
    composite = copy.deepcopy(fused).train()  # dropout is 0: the same function, unfused
    ref64 = copy.deepcopy(fused).double()
    ours = Transformer(replace(config, dtype=torch.float16)).load_torch_weights(fused).eval()
    textbook = textbook_model(ours)
    ours64, scores, second = copy.deepcopy(ours).double(), [], []
    watch = [(m, lambda m, args, out: scores.append((args[0] @ args[1].mT).abs().max().item()))
             for m in ours64.modules() if isinstance(m, Scores)]  # float64: q is scaled first
    watch += [(m, lambda m, args, out: second.append(out.topk(2, dim=-1).values[..., 1]))
              for name, m in ours64.named_modules()
              if isinstance(m, Softmax) and ".self_attn." in f".{name}."]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    tgt_mask = ours.causal(torch.zeros(batch, 1, 1, T, dtype=torch.float16))  # (B, 1, T, T)
    g = torch.Generator().manual_seed(seed)
    src_z = torch.randn(batch, S, config.d_model, generator=g)
    tgt_z = torch.randn(batch, T, config.d_model, generator=g)
    rows = []
    for sigma in sigmas:
        src_x, tgt_x = (sigma * src_z).half(), (sigma * tgt_z).half()
        if not (torch.isfinite(src_x).all() and torch.isfinite(tgt_x).all()):
            raise ValueError(f"sigma = {sigma:g} gives inputs beyond float16's range")
        reference = ref64(src_x.double(), tgt_x.double(), tgt_mask=causal)
        scores.clear()
        second.clear()
        with forward_hooks(watch):
            ours64.core(src_x.double(), tgt_x.double(), None, tgt_mask.double())
        max_score = max(scores)
        second_weights = torch.cat([w.flatten() for w in second])  # of every row
        shared = (second_weights > SHARED_WEIGHT).double().mean().item()
        for who, torch_model in ((FUSED, fused), (COMPOSITE, composite)):
            out = torch_model(src_x, tgt_x, tgt_mask=causal)
            rows.append((sigma, who, *_error(out, reference), "", max_score, shared))
        for who, model in (("ours", ours), ("textbook formulas", textbook)):
            try:
                out = model.core(src_x, tgt_x, None, tgt_mask)
                rows.append((sigma, who, *_error(out, reference), "", max_score, shared))
            except RangeError as error:  # an inf or NaN made upstream is caught downstream
                outcome = NON_FINITE if math.isinf(error.magnitude) else RAISED
                rows.append((sigma, who, math.nan, outcome, error.step, max_score, shared))
    return pd.DataFrame(rows, columns=["sigma", "model", "max_abs_error", "outcome", "step",
                                       "max_score", "rows_shared"])


def against_pytorch(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per ``sigma`` of a :func:`magnitude_sweep`: the largest error of ours and of PyTorch's
    two float16 paths (NaN: no finite result), and ``ours / PyTorch``, ours divided by the
    smaller of PyTorch's finite errors (NaN where neither path is finite)."""
    errors = sweep.pivot(index="sigma", columns="model", values="max_abs_error")
    table = errors[["ours", FUSED, COMPOSITE]]
    return table.assign(**{"ours / PyTorch": table["ours"] / table[[FUSED, COMPOSITE]].min(axis=1)})


@torch.no_grad()
def layer_norm_sweep(scales, rows: int = 64, d: int = 256, seed: int = 0) -> pd.DataFrame:
    """LayerNorm (``weight`` 1, ``bias`` 0) on float16 rows ``scale * N(0, 1)``, against
    float64 on the same float16 numbers: the largest error relative to the largest output,
    for ours, ``nn.functional.layer_norm`` in float16 and the textbook formula."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, d, generator=g, dtype=torch.float64)
    ours = LayerNorm(d).half()
    out = []
    for scale in scales:
        x = (scale * z).half()
        if not torch.isfinite(x).all():
            raise ValueError(f"scale = {scale:g} gives rows beyond float16's range")
        reference = nn.functional.layer_norm(x.double(), (d,), eps=1e-5)
        size = reference.abs().max().item()
        for who, y in (("ours", ours(x)),
                       ("PyTorch float16", nn.functional.layer_norm(x, (d,), eps=1e-5)),
                       ("textbook formula", textbook_layer_norm(x))):
            error, outcome = _error(y, reference)
            out.append((scale, who, error / size, outcome))
    return pd.DataFrame(out, columns=["scale", "model", "relative_error", "outcome"])


# (row, dtype, how its sums accumulate, the mode to compute in)
PRECISIONS = (("float32", torch.float32, "float32, rounded once", contextlib.nullcontext),
              ("bfloat16", torch.bfloat16, "float32, rounded once", contextlib.nullcontext),
              ("float16", torch.float16, "float32, rounded once", contextlib.nullcontext),
              ("float16, strict", torch.float16, "per block of 1", strict_fp16))


@torch.no_grad()
def precision_table(model: Transformer, task: ReversalTask, src_test: torch.Tensor,
                    tgt_test: torch.Tensor, n_random: int = 256, seed: int = 1) -> pd.DataFrame:
    """The trained ``model`` (its weights as they are, float32 for training's) in four
    precisions: float32, bfloat16 and float16 as PyTorch computes them, and float16 with
    strict 16-bit accumulation, every running sum rounded to float16 (:data:`PRECISIONS`).

    ``max_abs_error`` and ``mean_abs_error``: of the logits of ``n_random`` fresh random
    sequences of the task (teacher-forced, padding positions left out), against the same
    weights in float64; ``exact_match``: greedy decoding of the held-out ``src_test`` in that
    precision, as :func:`book.transformer.reversal.exact_match`.
    """
    g = torch.Generator().manual_seed(seed)
    src, tgt = task.tensors(task.sample(n_random, g))
    tgt = tgt[:, :-1]
    keep = tgt != model.config.pad_id  # (N, T): the positions that are not padding
    reference = copy.deepcopy(model).double()(src, tgt)[keep]
    rows = []
    for label, dtype, sums, mode in PRECISIONS:
        m = copy.deepcopy(model).to(dtype).eval()
        with mode():
            error = (m(src, tgt)[keep].double() - reference).abs()
            accuracy = exact_match(m, src_test, tgt_test)
        rows.append((label, dtype_label(dtype), sums, error.max().item(), error.mean().item(),
                     accuracy))
    return pd.DataFrame(rows, columns=["precision", "dtype", "sums", "max_abs_error",
                                       "mean_abs_error", "exact_match"]).set_index("precision")


def first_failure(sweep: pd.DataFrame, column: str = "sigma") -> pd.Series:
    """Per model, the smallest ``column`` value without a finite result (NaN if none)."""
    failed = sweep[sweep["outcome"] != FINITE]
    return failed.groupby("model")[column].min().reindex(sweep["model"].unique())
