"""The figures of chapter 5 show what their captions say."""

import matplotlib
import pandas as pd
import torch

from book.transformer.figures import (
    plot_accuracy_by_length,
    plot_attention,
    plot_error_sweep,
    plot_reversal_loss,
)
from book.transformer.model import BOS
from book.transformer.reversal import encode

matplotlib.use("Agg")


def test_attention_has_labelled_axes_readable_ticks_and_a_colour_bar():
    src, tgt = torch.tensor(encode([1, 2, 3])), torch.tensor([BOS, *encode([3, 2])])
    maps = {block: torch.rand(1, 8, 3, 3) for block in
            ("encoder.self_attn", "decoder.self_attn", "decoder.cross_attn")}
    fig = plot_attention(maps, src, tgt)
    panels = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 12 and len(bars) == 1
    assert bars[0].get_ylabel() == "attention weight"
    assert all(ax.get_xlabel().startswith("key: ") for ax in panels)
    assert [ax.get_ylabel() for ax in panels[::4]] == [
        "query: source token", "query: decoder input token", "query: decoder input token"]
    ticks = [t for ax in panels for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert min(t.get_fontsize() for t in ticks) >= 8
    assert [t.get_text() for t in panels[4].get_yticklabels()] == ["bos", "3", "2"]
    assert fig.get_figwidth() <= 8  # the book's width: fonts are not shrunk much


def test_error_sweep_marks_where_a_model_has_no_finite_result():
    sweep = pd.DataFrame({"x": [1, 10, 1, 10, 1, 10], "y": [1e-3, 2e-3, 1e-3, None, 1e-3, None],
                          "model": ["a", "a", "b", "b", "c", "c"],
                          "outcome": ["finite", "finite", "finite", "inf or NaN returned",
                                      "finite", "RangeError raised"]})
    ax = plot_error_sweep(sweep, "x", "y", xlabel="x", ylabel="y").axes[0]
    broken = [line for line in ax.lines if line.get_marker() in ("x", "^") and
              len(line.get_xdata())]
    assert sorted((line.get_marker(), list(line.get_xdata())) for line in broken) == [
        ("^", [10]), ("x", [10])]
    assert all(line.get_ydata()[0] > 2e-3 for line in broken)  # above every finite error


def test_loss_figure_shows_the_held_out_loss():
    history = [{"step": i, "loss": 1 / i} for i in range(1, 41)]
    held_out = [{"step": 20, "loss": 0.06}, {"step": 40, "loss": 0.03}]
    ax = plot_reversal_loss(history, window=5, held_out=held_out).axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["training batch", "training, mean of 5 batches",
                      "held-out sequences (all of them)"]
    assert list(ax.lines[2].get_ydata()) == [0.06, 0.03]


def test_accuracy_by_length_shades_the_untrained_lengths():
    table = pd.DataFrame({"exact_match": [1.0, 1.0, 0.1], "digits_right": [1.0, 1.0, 0.4],
                          "trained_length": [True, True, False]},
                         index=pd.Index([9, 10, 11], name="length"))
    ax = plot_accuracy_by_length(table).axes[0]
    (shade,) = ax.patches
    assert shade.get_x() == 10.5
    assert list(ax.lines[1].get_ydata()) == [100, 100, 10]
