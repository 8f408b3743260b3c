"""The figures of Parts a and b: the network diagrams, the training curves, the confusion
matrix, the misclassified digits and the feature maps. Each function returns its Figure.

Training curves are solid, validation dotted, test dashed; one colour per network
(:data:`NET_COLOURS`, shared by every figure that compares nets). A network diagram is read off
the model: a forward pass of a blank digit (:func:`book.mnist.models.trace`) gives the order of
the layers and the shapes between them, and each box is labelled from its layer's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from book.mnist.models import trace

__all__ = ["NET_COLOURS", "Stage", "network_rows", "plot_confusion", "plot_curves", "plot_maps",
           "plot_misclassified", "plot_network"]

NET_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")

KIND_COLOURS = {"convolution": "#c6dbef", "depthwise": "#9ecae1", "pointwise": "#c7e9c0",
                "pooling": "#e0e0e0", "linear": "#fdd0a2"}
ACTIVATIONS = {nn.ReLU: "ReLU", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


@dataclass
class Stage:
    """One box of a diagram: a layer that computes something, and the shape it outputs."""

    name: str  # e.g. "c1.depthwise"
    kind: str  # a key of KIND_COLOURS
    text: str  # what it computes, e.g. "conv 5×5, 1 → 6, padding 2"
    shape: tuple[int, ...]  # its output for one image, without the batch dimension
    parameters: int


def describe(module: nn.Module) -> tuple[str, str]:
    """``(kind, text)`` of a layer; a type it does not know is an error, never a blank box."""
    if isinstance(module, nn.Conv2d):
        (k_h, k_w), c_in, c_out = module.kernel_size, module.in_channels, module.out_channels
        pad = "" if module.padding in ((0, 0), "valid") else f", padding {module.padding[0]}"
        if module.groups == c_in == c_out:
            return "depthwise", f"depthwise {k_h}×{k_w}, per channel{pad}"
        if (k_h, k_w) == (1, 1) and module.groups == 1:
            return "pointwise", f"pointwise 1×1, {c_in} → {c_out}"
        return "convolution", f"conv {k_h}×{k_w}, {c_in} → {c_out}{pad}"
    if isinstance(module, nn.AvgPool2d | nn.MaxPool2d):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        which = "average" if isinstance(module, nn.AvgPool2d) else "max"
        return "pooling", f"{which} pool {k}×{k}"
    if isinstance(module, nn.Linear):
        return "linear", f"linear {module.in_features} → {module.out_features}"
    raise TypeError(f"no diagram box for a {type(module).__name__}; add it to "
                    "book.mnist.figures.describe")


def network_rows(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)
                 ) -> list[tuple[str, list[Stage]]]:
    """The boxes of ``model``, grouped by top-level layer: ``[(layer name, [stages])]``.

    A layer made of parts (a :class:`~book.mnist.models.DepthwiseSeparableConv2d`) has one stage per
    part. An activation is written into the box of the stage it follows (``", ReLU"``).
    """
    rows: list[tuple[str, list[Stage]]] = []
    for call in trace(model.eval(), torch.zeros(input_shape)):
        module = call.module
        if type(module) in ACTIVATIONS:
            rows[-1][1][-1].text += f", {ACTIVATIONS[type(module)]}"
            continue
        if list(module.children()):
            continue  # a container: its parts have their own boxes
        kind, text = describe(module)
        stage = Stage(call.name, kind, text, tuple(call.output.shape[1:]),
                      sum(p.numel() for p in module.parameters()))
        top = call.name.split(".")[0]
        if rows and rows[-1][0] == top:
            rows[-1][1].append(stage)
        else:
            rows.append((top, [stage]))
    return rows


def shape_text(shape: tuple[int, ...]) -> str:
    return " × ".join(str(n) for n in shape)


def plot_network(models: Mapping[str, nn.Module],
                 input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> Figure:
    """One column per model, one box per stage, top to bottom in the order of a forward pass.

    Rows of the same top-level layer line up across the columns (a layer with fewer stages
    than its neighbour's gets taller boxes). On each arrow, the shape of one image's tensor
    (channels × height × width, or features); in each box, its trainable parameters.
    """
    columns = {label: network_rows(model, input_shape) for label, model in models.items()}
    layers = [name for name, _ in next(iter(columns.values()))]
    for label, rows in columns.items():
        if [name for name, _ in rows] != layers:
            raise ValueError(f"{label} has layers {[n for n, _ in rows]}, not {layers}: only "
                             "models with the same top-level layers can share a diagram")
    depth = {name: max(len(dict(rows)[name]) for rows in columns.values()) for name in layers}

    box, gap, width = 0.5, 0.4, 3.6  # inches: a box's height, an arrow's length, a column
    height = gap + sum(depth.values()) * (box + gap)
    fig, ax = plt.subplots(figsize=(width * len(columns), height + 0.7), layout="constrained")
    for col, (label, rows) in enumerate(columns.items()):
        x0 = col * width
        ax.text(x0, -0.08, label, fontsize=12, fontweight="bold", va="bottom")
        _arrow(ax, x0 + 0.15, 0, gap, shape_text(tuple(input_shape[1:])) + " (input)")
        y = gap
        for name in layers:
            stages = dict(rows)[name]
            h = (depth[name] * (box + gap) - len(stages) * gap) / len(stages)
            for stage in stages:
                ax.add_patch(FancyBboxPatch((x0, y), width - 0.3, h,
                                            boxstyle="round,pad=0,rounding_size=0.06",
                                            facecolor=KIND_COLOURS[stage.kind], edgecolor="black",
                                            linewidth=0.8))
                middle = y + h / 2
                ax.text(x0 + 0.1, middle - 0.01, stage.name, fontsize=9.5, fontweight="bold",
                        va="bottom", ha="left")
                ax.text(width * (col + 1) - 0.4, middle - 0.01, f"{stage.parameters:,} parameters",
                        fontsize=8.5, va="bottom", ha="right", color="0.3")
                ax.text(x0 + 0.1, middle + 0.01, stage.text, fontsize=9.5, va="top", ha="left")
                _arrow(ax, x0 + 0.15, y + h, y + h + gap, shape_text(stage.shape))
                y += h + gap
    ax.set_xlim(-0.05, width * len(columns))
    ax.set_ylim(height + 0.02, -0.45)
    ax.axis("off")
    kinds = [k for k in KIND_COLOURS
             if any(s.kind == k for rows in columns.values() for _, st in rows for s in st)]
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=KIND_COLOURS[k], edgecolor="black",
                             linewidth=0.8, label=k) for k in kinds]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    return fig


def _arrow(ax, x: float, top: float, bottom: float, label: str) -> None:
    ax.annotate("", xy=(x, bottom), xytext=(x, top),
                arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 0.9})
    ax.text(x + 0.1, (top + bottom) / 2, label, fontsize=9, va="center", ha="left",
            color="0.2")


def plot_curves(histories: Mapping[str, pd.DataFrame],
                best_epochs: Mapping[str, int] | None = None) -> Figure:
    """Loss and accuracy against epochs for one or more runs, side by side.

    Both axes are logarithmic in what is left to gain: the loss itself, and the error
    ``100 - accuracy`` (%), drawn upside down and labelled in accuracy, so higher is better and
    99.4% and 98.8% stay visibly apart.

    ``histories`` maps a label to a history from :func:`book.mnist.training.train`; ``best_epochs``
    (same labels, optional) marks the epoch whose weights were kept. The legend sits below.
    """
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(8, 4), layout="constrained")
    styles = (("train", "-"), ("val", ":"), ("test", "--"))
    names = {"train": "train", "val": "validation", "test": "test"}
    for colour, (label, h) in zip(NET_COLOURS, histories.items(), strict=False):
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
    ax_err.set(xlabel="epoch", ylabel="accuracy (%)", yscale="log",
               title="Accuracy (log scale of 100 − accuracy)")
    ax_err.invert_yaxis()
    for ax, label in ((ax_loss, "%g"), (ax_err, None)):
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter(label) if label else
                                     ticker.FuncFormatter(lambda err, _: f"{100 - err:g}"))
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
    columns = min(columns, max(len(maps) for maps in rows.values()))
    heights = {name: -(-len(maps) // columns) for name, maps in rows.items()}
    fig, axes = plt.subplots(sum(heights.values()), columns, squeeze=False,
                             figsize=(0.8 * columns + 1.3, 0.95 * sum(heights.values()) + 0.2),
                             layout="constrained")
    first = 0
    for name, maps in rows.items():
        maps = maps.detach().cpu()
        block = axes[first:first + heights[name]]
        limit = float(maps.abs().max()) or 1.0
        for i, ax in enumerate(block.flat):
            if i >= len(maps):
                ax.axis("off")
                continue
            image = ax.imshow(maps[i].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{i + 1}", fontsize=9, pad=2)
        block[0, 0].set_ylabel(name, fontsize=9.5)
        fig.colorbar(image, ax=list(block.flat), label=label, shrink=0.9)
        first += heights[name]
    return fig

