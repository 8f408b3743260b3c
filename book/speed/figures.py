"""The figures of Part b's speed study: the Pareto front of error against multiplications,
and each layer under the measured roofline. Each function returns its matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from book.mnist.figures import NET_COLOURS

__all__ = ["pareto_front", "plot_pareto", "plot_roofline"]


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Positions of the points that no other point beats on both counts (lower ``cost``,
    higher ``accuracy``), in order of increasing cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -accuracy[i]))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def plot_pareto(table: pd.DataFrame) -> Figure:
    """Test accuracy against multiplications per image (left) and against measured inference
    time per image (right), one point per net, on log x axes and a shared y axis; the nets
    that no other net beats on both counts (the Pareto front) are joined by a grey line.

    ``table``: one row per net (the index is its label) with the columns ``test_acc``
    (0..1), ``mults`` (per image), ``us`` (median microseconds per image) and ``us_min``,
    ``us_max`` (the spread of the time, drawn as a bar).
    """
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4.2), sharey=True, layout="constrained")
    accuracy = (100 * table["test_acc"]).to_list()
    colours = plt.get_cmap("tab10").colors
    panels = ((axes[0], "mults", "multiplications (Mult-Adds) per image"),
              (axes[1], "us", "measured inference time per image (µs)"))
    for ax, column, label in panels:
        cost = table[column].to_list()
        front = pareto_front(cost, accuracy)
        ax.plot([cost[i] for i in front], [accuracy[i] for i in front], color="0.6", lw=1.2,
                zorder=1, label="Pareto front")
        for colour, (name, row) in zip(colours, table.iterrows(), strict=False):
            xerr = None
            if column == "us":
                xerr = [[row["us"] - row["us_min"]], [row["us_max"] - row["us"]]]
            ax.errorbar(row[column], 100 * row["test_acc"], xerr=xerr, fmt="o", ms=7,
                        color=colour, capsize=3, label=name, zorder=2)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
        # the costs span less than a decade: label 1, 2, 3, 5 and 7 of each to read them off
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 3, 5, 7)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("against multiplications", fontsize=10)
    axes[1].set_title("against measured time (bar: min–max of the rounds)", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    return fig


def _label_points(ax, points, colour) -> None:
    """Name every point ``(x, y, name)`` of a panel beside it: up and right of the point if
    that label overlaps none placed before (highest points first), else the first free place
    among below-right, up-left, below-left, right and left; if none is free, up and right.
    Overlaps are judged on the labels' boxes as drawn, so the axes' limits must be final."""
    renderer = ax.figure.canvas.get_renderer()
    places = ((4, 3, "left", "bottom"), (4, -4, "left", "top"), (-4, 3, "right", "bottom"),
              (-4, -4, "right", "top"), (7, 0, "left", "center"), (-7, 0, "right", "center"))
    frame = ax.get_window_extent(renderer)
    placed = []

    def put(name, x, y, dx, dy, ha, va):
        return ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points",
                           fontsize=8, color=colour, ha=ha, va=va)

    for x, y, name in sorted(points, key=lambda p: -p[1]):
        for place in places:
            label = put(name, x, y, *place)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
            label.remove()
        else:  # nowhere free: the first place, overlapping
            box = put(name, x, y, *places[0]).get_window_extent(renderer)
        placed.append(box)


def plot_roofline(roofs, layers: pd.DataFrame, *, reference: float) -> Figure:
    """Each layer's measured rate against its arithmetic intensity, under the machine's two
    roofs (log-log), one panel per net, sharing both axes.

    ``roofs``: a :class:`book.speed.roofline.Roofs`. ``layers``: rows of
    :func:`book.speed.roofline.layer_rates` (their ``net``, ``layer``, ``intensity``, ``rate``
    and ``rate_median``, drawn as a bar below the point); a layer without operations cannot be
    placed and must be left out. A layer named ``*.depthwise`` is drawn as a triangle,
    ``*.pointwise`` as a square. ``reference`` (operations per second) is drawn as a dashed
    line: the one rate at which an operation count predicts time.
    """
    nets = list(dict.fromkeys(layers["net"]))
    fig, axes = plt.subplots(1, len(nets), figsize=(4.4 * len(nets), 4.4), sharex=True,
                             sharey=True, layout="constrained", squeeze=False)
    low = min(layers["intensity"].min(), roofs.ridge) / 2
    high = max(layers["intensity"].max(), roofs.ridge) * 2
    grid = np.geomspace(low, high, 200)
    stages = {"depthwise": ("v", "depthwise stage"), "pointwise": ("s", "pointwise stage")}
    labelled = []
    for ax, net, colour in zip(axes[0], nets, NET_COLOURS, strict=False):
        ax.plot(grid, roofs.attainable(grid) / 1e9, color="black", lw=1.6,
                label=f"roofs: {roofs.bandwidth / 1e9:.1f} GB/s × intensity, "
                      f"{roofs.peak / 1e9:.0f} GOP/s")
        ax.axvline(roofs.ridge, color="black", ls=":", lw=0.8,
                   label=f"ridge: {roofs.ridge:.1f} operations per byte")
        ax.axhline(reference / 1e9, color="0.45", ls="--", lw=1,
                   label=f"op-count assumption: {reference / 1e9:.1f} GOP/s throughout")
        rows = layers[layers["net"] == net]
        stage = rows["layer"].str.rsplit(".", n=1).str[-1]
        points = []
        for key, (marker, _) in (*stages.items(), ("", ("o", "other layer"))):
            part = rows[stage == key] if key else rows[~stage.isin(list(stages))]
            rate, median = part["rate"] / 1e9, part["rate_median"] / 1e9
            ax.errorbar(part["intensity"], rate, yerr=[rate - median, 0 * rate], fmt=marker,
                        color=colour, capsize=2, ms=6)
            points.extend(zip(part["intensity"], rate, part["layer"], strict=True))
        ax.set(xscale="log", yscale="log", title=net,
               xlabel="arithmetic intensity (operations per byte)")
        ax.grid(alpha=0.3, which="both")
        labelled.append((ax, points, colour))
    axes[0, 0].set_ylabel("operations per second (GOP/s)")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    for marker, label in (*stages.values(), ("o", "other layer")):
        handles.append(Line2D([], [], marker=marker, color="0.35", ls=""))
        labels.append(f"{label}, at its best time (bar down to its median)")
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False, fontsize=8)
    fig.canvas.draw()  # lay the figure out, so that the labels can be placed by their boxes
    for ax, points, colour in labelled:
        _label_points(ax, points, colour)
    return fig

