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
from matplotlib.lines import Line2D

from book.reversal import token_name
from book.separable_map import adds_ratio, mults_ratio

__all__ = ["plot_accuracy_by_length", "plot_attention", "plot_confusion", "plot_curves",
           "plot_error_sweep", "plot_layer_ops", "plot_maps", "plot_misclassified",
           "plot_other_mults", "plot_pareto", "plot_ratios", "plot_reversal_loss",
           "plot_roofline"]

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


def plot_layer_ops(tables: Mapping[str, pd.DataFrame], *, kinds=("mults", "adds")) -> Figure:
    """One bar chart per net, side by side on one shared logarithmic y-axis: the operations of
    every layer that does any.

    ``tables`` maps a panel title to a table from :func:`book.opcount.count_ops`. The panels
    share their y-limits, so bars of the same height are the same count in every panel; each
    panel is as wide as its number of layers needs, so a bar is equally wide in all of them.
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


def plot_reversal_loss(history: Sequence[Mapping[str, float]], window: int = 20,
                       held_out: Sequence[Mapping[str, float]] = ()) -> Figure:
    """Training loss per step (log scale) with its running mean over ``window`` steps, and the
    loss on the held-out sequences at the steps where it was measured.

    ``history``, ``held_out``: the rows ``{"step", "loss"}`` of a run of
    :func:`book.reversal.train_reversal` (its record's ``history`` and ``held_out``).
    """
    steps = np.array([row["step"] for row in history])
    losses = np.array([row["loss"] for row in history])
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    ax.plot(steps, losses, alpha=0.35, label="training batch")
    ax.plot(steps[window - 1:], smooth, label=f"training, mean of {window} batches")
    if held_out:
        ax.plot([r["step"] for r in held_out], [r["loss"] for r in held_out], "o:",
                color="tab:red", ms=4, label="held-out sequences (all of them)")
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

    ``maps``: from :func:`book.reversal.attention_maps` (batch index 0 is drawn); ``src``,
    ``tgt``: that example's source tokens and decoder input tokens (1-D).
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

    ``sweep``: rows with the columns ``x``, ``y``, ``model`` and ``outcome`` (``"finite"``,
    ``"RangeError raised"`` or anything else for an inf or NaN), as from
    :mod:`book.fp16_sweeps`.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    finite = sweep["outcome"] == "finite"
    top = 3 * sweep.loc[finite, y].max()
    shown = set()
    for i, model in enumerate(dict.fromkeys(sweep["model"])):
        colour, rows = plt.get_cmap("tab10").colors[i], sweep[sweep["model"] == model]
        ok = rows[rows["outcome"] == "finite"]
        ax.plot(ok[x], ok[y], marker="osDP"[i], ms=4, lw=1.4, color=colour, label=model)
        raised = rows["outcome"] == "RangeError raised"
        for failed, marker in (((rows["outcome"] != "finite") & ~raised, "x"), (raised, "^")):
            ax.plot(rows.loc[failed, x], np.full(int(failed.sum()), top * 1.5 ** (i + 1)),
                    ls="", marker=marker, ms=7, mew=1.6, color=colour)
            shown |= {marker} if failed.any() else set()
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
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles + proxies, labels + [p.get_label() for p in proxies],
               loc="outside lower center", ncol=2, frameon=False, fontsize=9)
    return fig


def plot_accuracy_by_length(table: pd.DataFrame) -> Figure:
    """Exact-match accuracy and digits right (%) against the number of digits, the lengths
    longer than any training sequence shaded.

    ``table``: from :func:`book.reversal.accuracy_by_length` (index ``length``; columns
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
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
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


def plot_roofline(roofs, layers: pd.DataFrame, *, reference: float | None = None) -> Figure:
    """Each layer's measured rate against its arithmetic intensity, under the machine's two
    roofs (log-log), one panel per net, sharing both axes.

    ``roofs``: a :class:`book.roofline.Roofs`. ``layers``: one row per layer call with the
    columns ``net``, ``layer``, ``intensity`` (operations per byte), ``rate`` (operations per
    second of its best time) and ``rate_median`` (of its median time, drawn as a bar below
    the point); a layer without operations cannot be placed and must be left out. A layer
    named ``*.depthwise`` is drawn as a triangle, ``*.pointwise`` as a square. ``reference``
    (operations per second), if given, is drawn as a dashed line: the one rate at which an
    operation count predicts time.
    """
    nets = list(dict.fromkeys(layers["net"]))
    fig, axes = plt.subplots(1, len(nets), figsize=(4.4 * len(nets), 4.4), sharex=True,
                             sharey=True, layout="constrained", squeeze=False)
    low = min(layers["intensity"].min(), roofs.ridge) / 2
    high = max(layers["intensity"].max(), roofs.ridge) * 2
    grid = np.geomspace(low, high, 200)
    stages = {"depthwise": ("v", "depthwise stage"), "pointwise": ("s", "pointwise stage")}
    labelled = []
    for ax, net, colour in zip(axes[0], nets, COLOURS, strict=False):
        ax.plot(grid, roofs.attainable(grid) / 1e9, color="black", lw=1.6,
                label=f"roofs: {roofs.bandwidth / 1e9:.1f} GB/s × intensity, "
                      f"{roofs.peak / 1e9:.0f} GOP/s")
        ax.axvline(roofs.ridge, color="black", ls=":", lw=0.8,
                   label=f"ridge: {roofs.ridge:.1f} operations per byte")
        if reference is not None:
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
