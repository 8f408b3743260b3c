"""The figures of Problem 2: the block diagram, the reversal demonstration's loss and attention,
the float16 error sweep, and exact match by length. Each function returns its Figure.

The block diagram is drawn from the model itself: a forward pass with hooks gives the order of
the sub-layers, and each box is labelled from the module's configuration, so the drawing
changes when the model does; a sub-layer type it does not know is an error, never a blank box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch

from book.inspection import forward_hooks
from book.transformer.model import AddNorm, FeedForward, MultiHeadAttention, Transformer
from book.transformer.numerics import FINITE, RAISED
from book.transformer.reversal import token_name

__all__ = ["plot_accuracy_by_length", "plot_attention", "plot_error_sweep", "plot_reversal_loss",
           "plot_transformer", "sublayers"]

COLOURS = {"embedding": "#e0e0e0", "attention": "#c6dbef", "addnorm": "#fff2ae",
           "ffn": "#c7e9c0", "norm": "#fff2ae", "output": "#fdd0a2", "mask": "#f2f2f2"}
ADDED = "#d95f02"  # the edge of a box the earlier report's description does not have
LEFT_OUT = ("left out: dropout (inference is deterministic, and the held-out loss shows no "
            "overfitting to fight);\nembeddings × √d_model (nn.Embedding starts at N(0, 1), "
            "already the scale of the positions);\nlabel smoothing (one right token per "
            "position: plain cross-entropy)")


def sublayers(model: Transformer) -> dict[str, list[tuple[str, str, str]]]:
    """``{"encoder": [...], "decoder": [...]}``: each layer's sub-layers in the order a forward
    pass calls them, as ``(kind, text, equations)``, from a forward pass with hooks."""
    order: dict[str, list[str]] = {"encoder": [], "decoder": []}
    hooks = [(child, lambda m, a, o, side=side, name=name: order[side].append(name))
             for side in order for name, child in getattr(model, side).named_children()]
    device = next(model.parameters()).device
    tokens = torch.full((1, 3), model.config.pad_id + 1, device=device) % model.config.src_vocab
    with torch.no_grad(), forward_hooks(hooks):
        model(tokens, tokens % model.config.tgt_vocab)
    return {side: [_describe(side, name, getattr(getattr(model, side), name), model.config)
                   for name in names] for side, names in order.items()}


def _describe(side: str, name: str, module, c) -> tuple[str, str, str]:
    if isinstance(module, MultiHeadAttention):
        heads = f"{c.n_heads} heads × {c.d_k}"
        if name == "cross_attn":
            return "attention", f"cross-attention, {heads}\nQ: decoder; K, V: memory", "(R17)"
        if side == "decoder":
            return ("attention", f"masked self-attention, {heads}\nsoftmax(QKᵀ/√{c.d_k} + M) V",
                    "(R16)")
        return "attention", f"self-attention, {heads}\nsoftmax(QKᵀ/√{c.d_k} + M) V", "(R12)"
    if isinstance(module, FeedForward):
        return ("ffn", f"feed-forward {c.d_model} → {c.d_ff} → {c.d_model}\n"
                "max(0, xW₁ + b₁)W₂ + b₂", "(R14)")
    if isinstance(module, AddNorm):
        return "addnorm", "add the residual, LayerNorm", "(R13, R15)"
    raise TypeError(f"no diagram box for {side}.{name} ({type(module).__name__}); add it to "
                    "book.transformer.figures")


WIDTH, HEIGHT, STEP = 3.5, 0.62, 0.9  # of a box, and from one box to the next


def _box(ax, x, y, text, kind, *, width=WIDTH, added=False, eq="", size=8.5):
    """A box centred at ``(x, y)``; returns its top."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - HEIGHT / 2), width, HEIGHT,
                                boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=COLOURS[kind], ec=ADDED if added else "0.3",
                                lw=2.4 if added else 0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, linespacing=1.2)
    if eq:
        ax.text(x + width / 2 - 0.06, y - HEIGHT / 2 + 0.04, eq, ha="right", va="bottom",
                fontsize=7, color="0.35")
    return y + HEIGHT / 2


def _arrow(ax, *points, dashed=False):
    """A line through ``points`` with an arrowhead at the last."""
    xs, ys = zip(*points, strict=True)
    ax.plot(xs, ys, color="0.25", lw=1.0, ls="--" if dashed else "-")
    ax.annotate("", points[-1], points[-2], arrowprops={
        "arrowstyle": "-|>", "color": "0.25", "lw": 1.0, "shrinkA": 0, "shrinkB": 0})


def plot_transformer(model: Transformer) -> Figure:
    """The encoder (left) and decoder (right) of ``model``, bottom to top in the order of a
    forward pass: embeddings and positions, each layer's sub-layers with their residual
    connections (around the outside), the masks, the final LayerNorms and the generator.
    Boxes with a thick orange edge are what the model adds to the earlier report's
    description; the note at the top lists what it leaves out, and why."""
    c, layers = model.config, sublayers(model)
    fig, ax = plt.subplots(figsize=(7.6, 9.4), layout="constrained")
    ax.set(xlim=(-0.05, 10.05), ylim=(-0.8, 11.6))
    ax.axis("off")
    half = WIDTH / 2
    heights, norm_tops = {}, {}
    sides = (("encoder", 2.2, -1, "source token ids [B, S]", c.src_vocab),
             ("decoder", 7.8, 1, "target token ids [B, T], bos first", c.tgt_vocab))
    for side, x, outside, ids, vocab in sides:
        ax.text(x, 0.0, ids, ha="center", va="center", fontsize=8.5)
        _arrow(ax, (x, 0.18), (x, 0.85 - HEIGHT / 2))
        top = _box(ax, x, 0.85, f"token embedding {vocab} → {c.d_model}\n+ sinusoidal "
                   "positions", "embedding", eq="(R10, R11)")
        y, heights[side] = 0.85 + STEP + 0.3, []
        entry = top + 0.12  # where a sub-layer's input leaves for its residual connection
        for kind, text, eq in layers[side]:
            heights[side].append(y)
            _arrow(ax, (x, top), (x, y - HEIGHT / 2))
            if kind == "addnorm":  # the residual: around the sub-layer, into the addition
                edge = x + outside * (half + 0.15)
                _arrow(ax, (x, entry), (edge, entry), (edge, y), (x + outside * half, y))
            top = _box(ax, x, y, text, kind, eq=eq)
            entry = top + 0.12 if kind == "addnorm" else entry
            y += STEP
        bottom = heights[side][0] - HEIGHT / 2 - 0.25
        ax.add_patch(FancyBboxPatch((x - half - 0.3, bottom), WIDTH + 0.6, top + 0.3 - bottom,
                                    boxstyle="round,pad=0.02,rounding_size=0.15", fc="none",
                                    ec="0.55", lw=1.0, ls="--"))
        ax.text(x - half - 0.25, top + 0.25, f"{side} layer", fontsize=8, color="0.35",
                va="top")
        _arrow(ax, (x, top), (x, top + 0.9 - HEIGHT / 2))
        norm_tops[side] = _box(ax, x, top + 0.9, "final LayerNorm\n(as torch.nn.Transformer)",
                               "norm", added=True)
    # the memory: from the encoder's final LayerNorm to the keys and values of cross-attention
    memory = norm_tops["encoder"]
    cross = heights["decoder"][[row[2] for row in layers["decoder"]].index("(R17)")]
    ax.text(2.2, memory + 0.22, f"memory [B, S, {c.d_model}]", ha="center", fontsize=8.5)
    _arrow(ax, (2.2, memory), (2.2, memory + 0.12), (5.0, memory + 0.12), (5.0, cross + 0.1),
           (7.8 - half, cross + 0.1))
    top = norm_tops["decoder"]
    _arrow(ax, (7.8, top), (7.8, top + 0.9 - HEIGHT / 2))
    top = _box(ax, 7.8, top + 0.9, f"generator: linear {c.d_model} → {c.tgt_vocab}", "output",
               added=True)
    _arrow(ax, (7.8, top), (7.8, top + 0.3))
    ax.text(7.8, top + 0.42, f"next-token logits [B, T, {c.tgt_vocab}]", ha="center",
            fontsize=8.5)
    # the masks, built from the token ids: each arrow ends at the attention that adds it
    self_attn = heights["decoder"][0]
    masks = ((1.75, "causal mask M:\n−∞ for later keys", False,
              [(7.8 - half, self_attn - 0.1)]),
             (2.55, "target padding:\n−∞ at pad keys", True, [(7.8 - half, self_attn + 0.1)]),
             (3.35, "source padding:\n−∞ at pad keys", True,
              [(2.2 + half, heights["encoder"][0]), (7.8 - half, cross - 0.1)]))
    for y, text, added, targets in masks:
        _box(ax, 5.0, y, text, "mask", width=1.4, added=added, size=7.5)
        for tx, ty in targets:
            start = (5.0 + (0.7 if tx > 5 else -0.7), y)
            _arrow(ax, start, (tx, ty), dashed=True)
    legend = [("embedding", "embedding"), ("attention", "attention"), ("ffn", "feed-forward"),
              ("addnorm", "residual, norm"), ("output", "output"), ("mask", "mask")]
    for i, (kind, label) in enumerate(legend):
        ax.add_patch(FancyBboxPatch((0.05 + 1.7 * i, -0.72), 0.28, 0.2, fc=COLOURS[kind],
                                    ec="0.3", lw=0.8, boxstyle="square,pad=0"))
        ax.text(0.4 + 1.7 * i, -0.62, label, fontsize=8, va="center")
    ax.text(0.05, 11.55, "thick orange edge: added to the earlier report's description (the "
            "final LayerNorms, the padding masks, the generator)", fontsize=8.5, color=ADDED,
            va="top")
    ax.text(0.05, 11.2, LEFT_OUT, fontsize=8.5, color="0.25", va="top")
    return fig


def plot_reversal_loss(history: Sequence[Mapping[str, float]], *,
                       held_out: Sequence[Mapping[str, float]], window: int = 20) -> Figure:
    """Training loss per step (log scale) with its running mean over ``window`` steps, and the
    loss on the held-out sequences at the steps where it was measured.

    ``history``, ``held_out``: the rows ``{"step", "loss"}`` of a run of
    :func:`book.transformer.reversal.train_reversal` (its record's ``history`` and ``held_out``).
    """
    steps = np.array([row["step"] for row in history])
    losses = np.array([row["loss"] for row in history])
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    ax.plot(steps, losses, alpha=0.35, label="training batch")
    ax.plot(steps[window - 1:], smooth, label=f"training, mean of {window} batches")
    ax.plot([r["step"] for r in held_out], [r["loss"] for r in held_out], "o:", color="tab:red",
            ms=4, label="held-out sequences (all of them)")
    ax.set(yscale="log", xlabel="training step", ylabel="cross-entropy per target token")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


ATTENTION_BLOCKS = {"encoder.self_attn": ("encoder self-attention", "source", "source"),
                    "decoder.self_attn": ("decoder self-attention", "decoder input",
                                          "decoder input"),
                    "decoder.cross_attn": ("cross-attention", "decoder input", "source")}


def plot_attention(maps: Mapping[str, torch.Tensor], src: torch.Tensor, tgt: torch.Tensor,
                   heads: tuple[int, ...] = (0, 1, 2, 3)) -> Figure:
    """Attention weights of ``heads`` for one example: one row of panels per attention block,
    queries down, keys across, one colour scale (0 to 1) for all, with its colour bar.

    ``maps``: from :func:`~book.transformer.reversal.attention_maps` (batch index 0 is
    drawn); ``src``, ``tgt``: that example's source tokens and decoder input tokens (1-D).
    """
    tokens = {"source": src, "decoder input": tgt}
    fig, axes = plt.subplots(len(ATTENTION_BLOCKS), len(heads), squeeze=False,
                             figsize=(1.55 * len(heads) + 1.3, 7.4), layout="constrained")
    for row, (block, (title, query, key)) in zip(axes, ATTENTION_BLOCKS.items(), strict=True):
        queries, keys = tokens[query], tokens[key]
        for ax, head in zip(row, heads, strict=True):
            weights = maps[block][0, head, : len(queries), : len(keys)].float().numpy()
            image = ax.imshow(weights, vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(keys)), [token_name(t) for t in keys.tolist()], fontsize=8,
                          rotation=90)
            ax.set_yticks(range(len(queries)), [token_name(t) for t in queries.tolist()],
                          fontsize=8)
            ax.set_title(f"{title},\nhead {head}", fontsize=8)
            ax.set_xlabel(f"key: {key} token", fontsize=8)
        row[0].set_ylabel(f"query: {query} token", fontsize=8)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.5)
    return fig


def plot_error_sweep(sweep: pd.DataFrame, x: str, y: str, *, xlabel: str, ylabel: str,
                     marks: Mapping[str, float] | None = None, marks_at: float = 0.55
                     ) -> Figure:
    """Error against a magnitude, one line per model, both axes logarithmic; where a model
    gave no finite result, a cross in a band above the dashed line at the top (a triangle
    where it raised an error naming the step), so that a break shows rather than leaving a
    gap. ``marks``: labelled vertical lines (label -> x), the labels at the height
    ``marks_at`` (a fraction of the axes).

    ``sweep``: rows with the columns ``x``, ``y``, ``model`` and ``outcome`` (``FINITE``,
    ``RAISED`` or anything else for an inf or NaN), as from :mod:`book.transformer.numerics`.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    finite = sweep["outcome"] == FINITE
    top = 3 * sweep.loc[finite, y].max()
    shown = set()
    for i, model in enumerate(dict.fromkeys(sweep["model"])):
        colour, rows = plt.get_cmap("tab10").colors[i], sweep[sweep["model"] == model]
        ok = rows[rows["outcome"] == FINITE]
        ax.plot(ok[x], ok[y], marker="osDP"[i], ms=4, lw=1.4, color=colour, label=model)
        raised = rows["outcome"] == RAISED
        for failed, marker in (((rows["outcome"] != FINITE) & ~raised, "x"), (raised, "^")):
            ax.plot(rows.loc[failed, x], np.full(int(failed.sum()), top * 1.5 ** (i + 1)),
                    ls="", marker=marker, ms=7, mew=1.6, color=colour)
            if failed.any():
                shown.add(marker)
    if shown:
        ax.axhline(top, color="0.6", lw=0.8, ls="--")
    meaning = {"x": "no finite result: inf or NaN", "^": "no result: RangeError naming the step"}
    proxies = [Line2D([], [], ls="", marker=m, color="0.3", mew=1.6, label=meaning[m])
               for m in ("x", "^") if m in shown]
    for label, at in (marks or {}).items():
        ax.axvline(at, color="0.45", lw=0.9, ls=":")
        ax.annotate(label, (at, marks_at), xycoords=("data", "axes fraction"), xytext=(4, 0),
                    textcoords="offset points", fontsize=8, color="0.3", va="center")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.set_ylim(top=top * 1.5**6)
    ax.grid(alpha=0.3, which="both")
    fig.legend(handles=ax.get_legend_handles_labels()[0] + proxies, loc="outside lower center",
               ncol=2, frameon=False, fontsize=9)
    return fig


def plot_accuracy_by_length(table: pd.DataFrame) -> Figure:
    """Exact-match accuracy and digits right (%) against the number of digits, the lengths
    longer than any training sequence shaded.

    ``table``: from :func:`book.transformer.reversal.accuracy_by_length` (index ``length``; columns
    ``exact_match``, ``digits_right``, ``trained_length``).
    """
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    ax.plot(table.index, 100 * table["digits_right"], "s-", ms=4,
            label="target positions right (digits and eos)")
    ax.plot(table.index, 100 * table["exact_match"], "o-", ms=4,
            label="sequences exactly right")
    beyond = table.index[~table["trained_length"].astype(bool)]
    if len(beyond):
        ax.axvspan(beyond.min() - 0.5, beyond.max() + 0.5, color="0.9", zorder=0)
        ax.text((beyond.min() + beyond.max()) / 2, 60, "longer than any\ntraining sequence",
                fontsize=8, ha="center", va="center")
    ax.set(xlabel="digits in the sequence", ylabel="greedy decoding in float16 (%)",
           ylim=(-3, 103), xticks=list(table.index))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig

