"""The figures of Part d and its appendix: the ratios of the separable map, and the
multiplications outside the products. Each function returns its matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from book.counting.separable_map import adds_ratio, mults_ratio

__all__ = ["plot_other_mults", "plot_ratios"]


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

    def plot(ax, x, pairs, label: str) -> None:  # both ratios at each (C_out, k) of pairs
        (line,) = ax.plot(x, [float(mults_ratio(c, k, k)) for c, k in pairs],
                          label=f"mults, {label}")
        ax.plot(x, [float(adds_ratio(c_in, c, k, k)) for c, k in pairs], "--",
                color=line.get_color(), label=f"adds, {label}")

    for k in kernel_sizes:
        plot(left, c_out_values, [(c, k) for c in c_out_values], f"${k} \\times {k}$")
    for c in fixed_c_out:
        plot(right, kernel_sides, [(c, k) for k in kernel_sides], f"$C_\\mathrm{{out}} = {c}$")
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

