"""The figures of Parts c and d: operations per layer, the other multiplications, and the
ratios of the separable map. Each function returns its matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from book.counting.separable_map import adds_ratio, mults_ratio

__all__ = ["plot_layer_ops", "plot_other_mults", "plot_ratios"]


def plot_layer_ops(tables: Mapping[str, pd.DataFrame], *, kinds=("mults", "adds")) -> Figure:
    """One bar chart per net, side by side on one shared logarithmic y-axis: the operations of
    every layer that does any.

    ``tables`` maps a panel title to a table from :func:`~book.counting.counter.count_ops`.
    The panels share their y-limits, so bars of the same height are the same count in every
    panel; each panel is as wide as its number of layers needs, so a bar is equally wide in
    all of them.
    Two panels make a figure 8.5 inches wide, like the book's other full-width figures.
    """
    names = {"mults": "multiplications", "adds": "additions", "comparisons": "comparisons"}
    shown = [table[table[list(kinds)].sum(axis=1) > 0] for table in tables.values()]
    values = np.concatenate([rows[list(kinds)].to_numpy(dtype=float).ravel() for rows in shown])
    positive = values[values > 0]
    fig, axes = plt.subplots(1, len(tables), figsize=(4.25 * len(tables), 3.6), sharey=True,
                             layout="constrained", squeeze=False,
                             gridspec_kw={"width_ratios": [max(len(rows), 1) for rows in shown]})
    width = 0.8 / len(kinds)
    for ax, title, rows in zip(axes[0], tables, shown, strict=True):
        x = np.arange(len(rows))
        for i, kind in enumerate(kinds):
            ax.bar(x + (i - (len(kinds) - 1) / 2) * width, rows[kind], width,
                   label=names.get(kind, kind))
        ax.set_xticks(x, rows["layer"], rotation=45, ha="right")
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(title)
    first = axes[0, 0]
    if len(positive):  # one range for all panels, with room above the bars for the legend
        first.set_ylim(10 ** np.floor(np.log10(positive.min())), 6 * positive.max())
    first.set_ylabel("operations (batch of 1)")
    first.legend(loc="upper right")
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
    """Separable / regular ratios of :mod:`book.counting.separable_map` for square ``k x k`` kernels
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

