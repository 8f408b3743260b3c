"""Network diagrams drawn from the models themselves.

Nothing here is typed in by hand: a forward pass of a blank digit (:func:`book.models.trace`)
gives the order of the layers and the shape of what flows between them, and each layer's box
is labelled from its own hyper-parameters. Change a model and its diagram changes with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from book.models import trace

__all__ = ["Stage", "network_rows", "plot_network"]

COLOURS = {"convolution": "#c6dbef", "depthwise": "#9ecae1", "pointwise": "#c7e9c0",
           "pooling": "#e0e0e0", "linear": "#fdd0a2"}
ACTIVATIONS = {nn.ReLU: "ReLU", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


@dataclass
class Stage:
    """One box of a diagram: a layer that computes something, and the shape it outputs."""

    name: str  # e.g. "c1.depthwise"
    kind: str  # a key of COLOURS
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
                    "book.diagrams.describe")


def network_rows(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)
                 ) -> list[tuple[str, list[Stage]]]:
    """The boxes of ``model``, grouped by top-level layer: ``[(layer name, [stages])]``.

    A layer made of parts (a :class:`~book.models.DepthwiseSeparableConv2d`) has one stage per
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
                                            facecolor=COLOURS[stage.kind], edgecolor="black",
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
    kinds = [k for k in COLOURS
             if any(s.kind == k for rows in columns.values() for _, st in rows for s in st)]
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=COLOURS[k], edgecolor="black",
                             linewidth=0.8, label=k) for k in kinds]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    return fig


def _arrow(ax, x: float, top: float, bottom: float, label: str) -> None:
    ax.annotate("", xy=(x, bottom), xytext=(x, top),
                arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 0.9})
    ax.text(x + 0.1, (top + bottom) / 2, label, fontsize=9, va="center", ha="left",
            color="0.2")
