"""The figures of the book. Each function returns its matplotlib Figure.

Convention throughout: training curves solid, test curves dashed; one colour per network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib import ticker
from matplotlib.figure import Figure

from book.reversal import token_name
from book.separable_map import adds_ratio, mults_ratio

__all__ = ["plot_attention", "plot_confusion", "plot_curves", "plot_layer_ops",
           "plot_misclassified", "plot_ratios", "plot_reversal_loss"]

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def plot_curves(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Loss and accuracy against epochs for one or more runs, side by side.

    ``histories`` maps a label to a history from :func:`book.training.train`.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for colour, (label, h) in zip(COLOURS, histories.items(), strict=False):
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            scale = 100 if key == "acc" else 1
            ax.plot(h["epoch"], h[f"train_{key}"] * scale, color=colour, ls="-",
                    label=f"{label}, train")
            ax.plot(h["epoch"], h[f"test_{key}"] * scale, color=colour, ls="--",
                    label=f"{label}, test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss")
    ax_loss.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax_loss.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax_loss.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    low = min(min(h["train_acc"].min(), h["test_acc"].min()) for h in histories.values())
    ax_acc.set_ylim(np.floor(100 * low) - 0.5, 100)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.legend(loc="lower right", fontsize="small")
    return fig


def plot_confusion(counts: np.ndarray, title: str = "") -> Figure:
    """Confusion matrix; the diagonal is left blank so the errors are what stands out."""
    errors = counts.astype(float).copy()
    np.fill_diagonal(errors, np.nan)
    fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    image = ax.imshow(errors, cmap="Reds")
    dark = 0.6 * np.nanmax(errors) if np.nanmax(errors) > 0 else np.inf
    for (i, j), n in np.ndenumerate(counts):
        colour = "tab:blue" if i == j else ("white" if errors[i, j] > dark else "black")
        ax.text(j, i, f"{n}", ha="center", va="center", fontsize=8, color=colour,
                fontweight="bold" if i == j else "normal")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit",
           title=title or "Test-set confusion matrix (diagonal: correct)")
    fig.colorbar(image, ax=ax, label="misclassified images", shrink=0.8)
    return fig


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor,
                       n: int = 24, columns: int = 12) -> Figure:
    """The first ``n`` test images the model gets wrong, with true and predicted digit.

    ``images`` are the raw ``uint8 [N, 28, 28]`` test images.
    """
    wrong = torch.nonzero(labels.cpu() != predicted.cpu()).flatten()[:n]
    rows = max(1, -(-len(wrong) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.15),
                             layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist(), strict=False):
        ax.imshow(images[i].cpu(), cmap="gray_r")
        ax.set_title(f"{labels[i].item()}→{predicted[i].item()}", fontsize=9)
    return fig


def plot_layer_ops(tables: Mapping[str, pd.DataFrame], *, kinds=("mults", "adds")) -> Figure:
    """One bar chart per net: the operations of every layer that does any (log scale).

    ``tables`` maps a panel title to a table from :func:`book.opcount.count_ops`.
    """
    names = {"mults": "multiplications", "adds": "additions", "comparisons": "comparisons"}
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 3.6),
                             layout="constrained", squeeze=False)
    for ax, (title, table) in zip(axes[0], tables.items(), strict=True):
        rows = table[table[list(kinds)].sum(axis=1) > 0]
        x = np.arange(len(rows))
        width = 0.8 / len(kinds)
        for i, kind in enumerate(kinds):
            ax.bar(x + (i - (len(kinds) - 1) / 2) * width, rows[kind], width,
                   label=names.get(kind, kind))
        ax.set_xticks(x, rows["layer"], rotation=45, ha="right")
        ax.set_yscale("log")
        ax.set_ylim(top=6 * float(rows[list(kinds)].to_numpy().max()))  # room for the legend
        ax.set_ylabel("operations (batch of 1)")
        ax.set_title(title)
        ax.legend()
    return fig


def plot_ratios(c_out_values, kernel_sizes, *, c_in: int, fixed_c_out=(16, 64, 256)) -> Figure:
    """Separable / regular ratios of :mod:`book.separable_map` for square ``k x k`` kernels
    (kernel area ``K = k**2``). Left: against ``C_out`` for the kernel sides ``kernel_sizes``;
    right: against the kernel side ``k`` for the ``fixed_c_out``. Multiplications solid (they
    do not depend on ``C_in``), additions without bias dashed (for the given ``C_in``)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True, layout="constrained")
    c_out_values, kernel_sides = list(c_out_values), range(1, 12)
    for k in kernel_sizes:
        (line,) = left.plot(c_out_values, [float(mults_ratio(c, k, k)) for c in c_out_values],
                            label=f"mults, ${k} \\times {k}$")
        left.plot(c_out_values, [float(adds_ratio(c_in, c, k, k)) for c in c_out_values], "--",
                  color=line.get_color(), label=f"adds, ${k} \\times {k}$")
    for c in fixed_c_out:
        (line,) = right.plot(kernel_sides, [float(mults_ratio(c, k, k)) for k in kernel_sides],
                             label=f"mults, $C_\\mathrm{{out}} = {c}$")
        right.plot(kernel_sides, [float(adds_ratio(c_in, c, k, k)) for k in kernel_sides], "--",
                   color=line.get_color(), label=f"adds, $C_\\mathrm{{out}} = {c}$")
    left.set_xscale("log", base=2)
    left.set_xlabel(r"output channels $C_\mathrm{out}$")
    right.set_xlabel(r"kernel side $k$ (a $k \times k$ kernel, $K = k^2$)")
    left.set_ylabel("separable / regular")
    left.set_title(rf"against $C_\mathrm{{out}}$ (additions: $C_\mathrm{{in}} = {c_in}$)",
                   fontsize=10)
    right.set_title(rf"against $k$ (additions: $C_\mathrm{{in}} = {c_in}$)", fontsize=10)
    # one column per kernel / C_out: multiplications above, additions below
    for ax, columns, loc in ((left, len(kernel_sizes), "lower left"),
                             (right, len(fixed_c_out), "upper right")):
        ax.set_yscale("log")
        ax.axhline(1, color="grey", linewidth=0.8)
        ax.legend(fontsize=8, ncol=columns, loc=loc, framealpha=0.9, columnspacing=1.0)
    return fig


def plot_reversal_loss(history: Sequence[Mapping[str, float]], window: int = 20) -> Figure:
    """Training loss per step (log scale) with its running mean over ``window`` steps.

    ``history``: the rows ``{"step", "loss"}`` of a run of :func:`book.reversal.train_reversal`.
    """
    steps = np.array([row["step"] for row in history])
    losses = np.array([row["loss"] for row in history])
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    ax.plot(steps, losses, alpha=0.35, label="per batch")
    ax.plot(steps[window - 1:], smooth, label=f"mean of {window}")
    ax.set(yscale="log", xlabel="step", ylabel="cross-entropy per token")
    ax.legend()
    return fig


def plot_attention(maps: Mapping[str, torch.Tensor], src: torch.Tensor, tgt: torch.Tensor,
                   heads: tuple[int, ...] = (0, 1, 2, 3)) -> Figure:
    """Attention weights of ``heads`` for one example: one row of panels per attention block.

    ``maps``: from :func:`book.reversal.attention_maps` (batch index 0 is drawn); ``src``,
    ``tgt``: that example's source tokens and decoder input tokens (1-D). Queries are rows,
    keys columns.
    """
    blocks = [("encoder.self_attn", src, src), ("decoder.self_attn", tgt, tgt),
              ("decoder.cross_attn", tgt, src)]
    fig, axes = plt.subplots(len(blocks), len(heads), figsize=(2.3 * len(heads), 7.2),
                             layout="constrained", squeeze=False)
    for row, (block, queries, keys) in zip(axes, blocks, strict=True):
        for ax, head in zip(row, heads, strict=True):
            ax.imshow(maps[block][0, head, : len(queries), : len(keys)], vmin=0, vmax=1,
                      cmap="viridis")
            ax.set_xticks(range(len(keys)), [token_name(t) for t in keys.tolist()], fontsize=7,
                          rotation=90)
            ax.set_yticks(range(len(queries)), [token_name(t) for t in queries.tolist()],
                          fontsize=7)
            ax.set_title(f"{block}, head {head}", fontsize=8)
    return fig
