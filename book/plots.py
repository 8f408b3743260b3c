"""The figures of the book. Each function returns its matplotlib Figure.

Convention throughout: training curves solid, validation dotted, test dashed; one colour
per network.
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
           "plot_maps", "plot_misclassified", "plot_other_mults", "plot_ratios",
           "plot_reversal_loss"]

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def plot_curves(histories: Mapping[str, pd.DataFrame],
                best_epochs: Mapping[str, int] | None = None) -> Figure:
    """Loss and error rate against epochs for one or more runs, side by side, both on log axes
    (so that 0.6% and 1.2% error stay visibly apart).

    ``histories`` maps a label to a history from :func:`book.training.train`; ``best_epochs``
    (same labels, optional) marks the epoch whose weights were kept. Train solid, validation
    dotted, test dashed; one colour per run. The legend sits below the panels.
    """
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(8, 4), layout="constrained")
    styles = (("train", "-"), ("val", ":"), ("test", "--"))
    names = {"train": "train", "val": "validation", "test": "test"}
    for colour, (label, h) in zip(COLOURS, histories.items(), strict=False):
        for ax, key in ((ax_loss, "loss"), (ax_err, "acc")):
            for split, ls in styles:
                y = h[f"{split}_{key}"] if key == "loss" else 100 * (1 - h[f"{split}_acc"])
                ax.plot(h["epoch"], y, color=colour, ls=ls, lw=1.6,
                        label=f"{label}, {names[split]}" if ax is ax_loss else None)
            if best_epochs is not None and label in best_epochs:
                best = h[h["epoch"] == best_epochs[label]].iloc[0]
                y = best["val_loss"] if key == "loss" else 100 * (1 - best["val_acc"])
                ax.axvline(best["epoch"], color=colour, lw=0.8, alpha=0.5)
                ax.plot(best["epoch"], y, "o", color=colour, ms=7, mfc="white", mew=1.6,
                        label=f"{label}, kept epoch" if ax is ax_loss else None)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss")
    ax_err.set(xlabel="epoch", ylabel="error rate (%) = 100 − accuracy", yscale="log",
               title="Error rate")
    for ax in (ax_loss, ax_err):
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.get_major_locator().set_params(integer=True)
    # one row per run: the legend fills column by column, so interleave the runs' entries
    handles, labels = ax_loss.get_legend_handles_labels()
    per_run = len(handles) // len(histories)
    order = [run * per_run + i for i in range(per_run) for run in range(len(histories))]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], ncol=per_run,
               loc="outside lower center", frameon=False, columnspacing=1.2)
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


def plot_maps(rows: Mapping[str, torch.Tensor], *, columns: int = 8,
              label: str = "value") -> Figure:
    """Small images in rows: one block of rows per entry of ``rows`` (a ``[C, H, W]`` tensor:
    C filters or feature maps), ``columns`` images to a row, numbered from 1.

    Each block has its own colour scale, symmetric about zero (red positive, blue negative),
    with a colour bar labelled ``label``, so that sign and relative size read directly.
    """
    heights = {name: -(-len(maps) // columns) for name, maps in rows.items()}
    fig, axes = plt.subplots(sum(heights.values()), columns, squeeze=False,
                             figsize=(0.8 * columns + 1.3, 0.95 * sum(heights.values()) + 0.2),
                             layout="constrained")
    first = 0
    for name, maps in rows.items():
        block = axes[first:first + heights[name]]
        limit = float(maps.abs().max()) or 1.0
        for i, ax in enumerate(block.flat):
            if i >= len(maps):
                ax.axis("off")
                continue
            image = ax.imshow(maps[i].detach().cpu().numpy(), cmap="RdBu_r", vmin=-limit,
                              vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{i + 1}", fontsize=9, pad=2)
        block[0, 0].set_ylabel(name, fontsize=9.5)
        fig.colorbar(image, ax=list(block.flat), label=label, shrink=0.9)
        first += heights[name]
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


def plot_other_mults(shares: pd.DataFrame) -> Figure:
    """Horizontal stacked bars, one per network (the rows of ``shares``, first at the top):
    the multiplications of each category (its columns) in percent of the network's products
    (convolutions, linear layers, matrix products)."""
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(shares) + 1.6), layout="constrained")
    y = np.arange(len(shares))[::-1]
    left = np.zeros(len(shares))
    for colour, column in zip(plt.get_cmap("tab10").colors, shares.columns, strict=False):
        values = shares[column].to_numpy(dtype=float)
        ax.barh(y, values, left=left, color=colour, label=column, height=0.7)
        left += values
    ax.set_yticks(y, shares.index)
    ax.set_xlabel("multiplications outside the products (% of the products' multiplications)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, 1.15 * left.max())
    ax.legend(loc="lower right", fontsize="small", title="category")
    return fig


def plot_ratios(c_out_values, kernel_sizes, *, c_in: int, fixed_c_out=(16, 64, 256)) -> Figure:
    """Separable / regular ratios of :mod:`book.separable_map` for square ``k x k`` kernels
    (kernel area ``K = k**2``). Left: against ``C_out`` for the kernel sides ``kernel_sizes``;
    right: against the kernel side ``k`` for the ``fixed_c_out``. Multiplications solid (they
    do not depend on ``C_in``), additions without bias dashed (for the given ``C_in``)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 5), sharey=True, layout="constrained")
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
    left.set_ylabel("separable / regular count (log scale)")
    left.set_title(rf"against $C_\mathrm{{out}}$ (additions: $C_\mathrm{{in}} = {c_in}$)",
                   fontsize=10)
    right.set_title(rf"against $k$ (additions: $C_\mathrm{{in}} = {c_in}$)", fontsize=10)
    # Legends below the panels, clear of the data and of the line at 1: multiplications in
    # the left column, additions in the right one.
    for ax in (left, right):
        ax.set_yscale("log")
        ax.axhline(1, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3, which="major")
        handles, labels = ax.get_legend_handles_labels()
        order = list(range(0, len(handles), 2)) + list(range(1, len(handles), 2))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], ncol=2,
                  loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False,
                  columnspacing=1.2)
    left.annotate("separable = regular", (1, 1), xycoords=("axes fraction", "data"),
                  xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom",
                  color="0.35")
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
