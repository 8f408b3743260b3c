"""Where 16-bit arithmetic breaks, measured: the sweeps and the precision table of chapter 5.

- :func:`magnitude_sweep`: embedded inputs of growing standard deviation through the
  encoder-decoder core, in float16: ours, PyTorch's two float16 paths and the textbook
  formulas, each against float64 with the same (float16) weights and inputs.
- :func:`layer_norm_sweep`: LayerNorm on rows of growing scale, the same three ways.
- :func:`precision_table`: the trained model in float32, bfloat16, float16 and strict
  float16: its error against float64 on fresh random sequences, and its exact-match accuracy.

"The textbook formulas" are equations (R12)-(R15) computed as written, in float16:
``exp(x) / sum(exp(x))``, ``(x - mu) / sqrt(mean((x - mu)**2) + eps)`` and
``(Q K^T) / sqrt(d_k)``, swapped into a copy of our model by :func:`textbook_model`.
"""

from __future__ import annotations

import contextlib
import copy
import math

import pandas as pd
import torch
from torch import nn

from book.hardware import dtype_label
from book.reversal import ReversalTask, exact_match
from book.strict_fp16 import strict_fp16
from book.transformer import (
    LayerNorm,
    RangeError,
    Scale,
    Scores,
    Softmax,
    Transformer,
    TransformerConfig,
)
from book.transformer_dtypes import torch_reference

__all__ = ["TextbookLayerNorm", "TextbookScores", "TextbookSoftmax", "first_failure",
           "layer_norm_sweep", "magnitude_sweep", "precision_table", "textbook_layer_norm",
           "textbook_model"]

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

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, int]:
        return (q @ k.transpose(-2, -1)) * (1 / math.sqrt(self.d_k)), 0


def textbook_model(model: Transformer) -> Transformer:
    """A copy of ``model`` that computes softmax, LayerNorm and the scores as the textbook
    formulas do (same weights); every other step is ours, checks included."""
    model = copy.deepcopy(model)
    swaps = {Softmax: TextbookSoftmax, LayerNorm: TextbookLayerNorm, Scores: TextbookScores}
    for name, module in list(model.named_modules()):
        if type(module) in swaps:
            module.__class__ = swaps[type(module)]
        elif isinstance(module, Scale) and name.endswith("attention.scale"):
            module.factor.fill_(1)  # TextbookScores divides by sqrt(d_k) after the product
    return model


def _error(out: torch.Tensor, reference: torch.Tensor) -> tuple[float, str]:
    if not torch.isfinite(out).all():
        return math.nan, NON_FINITE
    return (out.double() - reference).abs().max().item(), FINITE


@torch.no_grad()
def magnitude_sweep(sigmas, batch: int = 4, S: int = 12, T: int = 9,
                    seed: int = 0) -> pd.DataFrame:
    """The float16 core on embedded inputs ``sigma * N(0, 1)``, against float64.

    ``nn.Transformer``'s weights (:func:`~book.transformer_dtypes.torch_reference`) rounded to
    float16 serve everyone; the inputs are rounded to float16 too, and the float64 reference
    computes on exactly those numbers, so an error is the arithmetic's alone. A causal
    target mask and no padding (which keeps PyTorch's fused path open). Rows: ``sigma``,
    ``model``, ``max_abs_error`` (NaN without a finite result), ``outcome`` (finite; inf or NaN
    returned, or caught by the check of a later step; RangeError raised: a value out of
    range), ``step`` (the step that raised or caught it) and ``max_score`` (the largest
    attention score of the float64 run of our model, at that ``sigma``).
    """
    ref16 = torch_reference(seed).half()
    ref64 = copy.deepcopy(ref16).double()
    ours = Transformer(TransformerConfig(10, 10)).load_torch_weights(ref16).eval()
    textbook = textbook_model(ours)
    ours64, scores = copy.deepcopy(ours).double(), []
    for module in ours64.modules():
        if isinstance(module, Scores):  # the scores as they are: a * 2**shift
            module.register_forward_hook(
                lambda m, args, out: scores.append(out[0].abs().max().item() * 2.0**out[1]))
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    tgt_mask = ours.causal(torch.zeros(batch, 1, 1, T, dtype=torch.float16))  # (B, 1, T, T)
    g = torch.Generator().manual_seed(seed)
    src_z, tgt_z = torch.randn(batch, S, 256, generator=g), torch.randn(batch, T, 256, generator=g)
    rows, max_scores = [], []
    for sigma in sigmas:
        src_x, tgt_x = (sigma * src_z).half(), (sigma * tgt_z).half()
        if not (torch.isfinite(src_x).all() and torch.isfinite(tgt_x).all()):
            raise ValueError(f"sigma = {sigma:g} gives inputs beyond float16's range")
        reference = ref64(src_x.double(), tgt_x.double(), tgt_mask=causal)
        scores.clear()
        ours64.core(src_x.double(), tgt_x.double(), None, tgt_mask.double())
        max_scores.append(max(scores))
        ref16.eval()
        fused = ref16(src_x, tgt_x, tgt_mask=causal)
        ref16.train()  # dropout is 0: the same function, through the composite path
        composite = ref16(src_x, tgt_x, tgt_mask=causal)
        ref16.eval()
        rows.append((sigma, "PyTorch float16, fused (eval)", *_error(fused, reference), ""))
        rows.append((sigma, "PyTorch float16, composite (train)",
                     *_error(composite, reference), ""))
        for who, model in (("ours", ours), ("textbook formulas", textbook)):
            try:
                rows.append((sigma, who, *_error(model.core(src_x, tgt_x, None, tgt_mask),
                                                 reference), ""))
            except RangeError as error:  # an inf or NaN made upstream is caught downstream
                outcome = NON_FINITE if math.isinf(error.magnitude) else RAISED
                rows.append((sigma, who, math.nan, outcome, error.step))
    table = pd.DataFrame(rows, columns=["sigma", "model", "max_abs_error", "outcome", "step"])
    table["max_score"] = table["sigma"].map(dict(zip(sigmas, max_scores, strict=True)))
    return table


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


PRECISIONS = (("float32", torch.float32, None), ("bfloat16", torch.bfloat16, None),
              ("float16", torch.float16, None), ("float16, strict", torch.float16, 1))


@torch.no_grad()
def precision_table(model: Transformer, task: ReversalTask, src_test: torch.Tensor,
                    tgt_test: torch.Tensor, n_random: int = 256, seed: int = 1,
                    block: int = 1) -> pd.DataFrame:
    """The trained ``model`` (its weights as they are, float32 for training's) in four
    precisions: float32, bfloat16 and float16 as PyTorch computes them, and float16 with
    strict 16-bit accumulation (blocks of ``block``).

    ``max_abs_error`` and ``mean_abs_error``: of the logits of ``n_random`` fresh random
    sequences of the task (teacher-forced, padding positions left out), against the same
    weights in float64; ``exact_match``: greedy decoding of the held-out ``src_test`` in that
    precision, as :func:`book.reversal.exact_match`.
    """
    g = torch.Generator().manual_seed(seed)
    src, tgt = task.tensors(task.sample(n_random, g))
    tgt = tgt[:, :-1]
    keep = tgt != model.config.pad_id  # (N, T): the positions that are not padding
    reference = copy.deepcopy(model).double()(src, tgt)[keep]
    rows = []
    for label, dtype, strict_block in PRECISIONS:
        m = copy.deepcopy(model).to(dtype).eval()
        mode = contextlib.nullcontext() if strict_block is None else strict_fp16(block)
        with mode:
            error = (m(src, tgt)[keep].double() - reference).abs()
            accuracy = exact_match(m, src_test, tgt_test)
        rows.append((label, dtype_label(dtype), "per block of " + str(block) if strict_block
                     else "float32, rounded once", error.max().item(), error.mean().item(),
                     accuracy))
    return pd.DataFrame(rows, columns=["precision", "dtype", "sums", "max_abs_error",
                                       "mean_abs_error", "exact_match"]).set_index("precision")


def first_failure(sweep: pd.DataFrame, column: str = "sigma") -> pd.Series:
    """Per model, the smallest ``column`` value without a finite result (NaN if none)."""
    failed = sweep[sweep["outcome"] != FINITE]
    return failed.groupby("model")[column].min().reindex(sweep["model"].unique())
