"""The training-curve and filter figures show what their captions say they show."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from book.mnist.figures import plot_curves, plot_maps

matplotlib.use("Agg")


def history(epochs: int, offset: float = 0.0) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "train_loss": 1 / e + offset, "val_loss": 1.1 / e,
                         "test_loss": 1.2 / e, "train_acc": 1 - 0.1 / e, "val_acc": 1 - 0.2 / e,
                         "test_acc": 1 - 0.3 / e})


def test_curves_show_train_validation_test_and_the_kept_epoch():
    fig = plot_curves({"a": history(6), "b": history(4)}, best_epochs={"a": 3, "b": 2})
    ax_loss, ax_err = fig.axes
    assert ax_loss.get_yscale() == ax_err.get_yscale() == "log"
    curves = [line for line in ax_loss.lines if len(set(line.get_xdata())) > 1]  # no axvline
    styles = [line.get_linestyle() for line in curves]
    assert styles == ["-", ":", "--"] * 2  # train, validation, test for each run
    # the error panel is 100 - accuracy in percent; the marker sits on the validation curve
    val_err = ax_err.lines[1]
    np.testing.assert_allclose(val_err.get_ydata(), 100 * 0.2 / np.arange(1, 7))
    markers = [line for line in ax_err.lines if line.get_marker() == "o"]
    assert [(m.get_xdata()[0], m.get_ydata()[0]) for m in markers] == [
        (3, pytest.approx(100 * 0.2 / 3)), (2, pytest.approx(100 * 0.2 / 2))]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["a, train", "b, train"]  # one legend row per run
    assert "a, kept epoch" in labels and "b, validation" in labels


def test_the_accuracy_panel_is_labelled_in_accuracy_with_higher_accuracy_up():
    fig = plot_curves({"a": history(6)})
    ax_acc = fig.axes[1]
    fig.canvas.draw()
    bottom, top = ax_acc.get_ylim()
    assert bottom > top  # error grows downwards: 99.5% sits above 99%
    formatter = ax_acc.yaxis.get_major_formatter()
    assert formatter(0.5, 0) == "99.5" and formatter(10, 0) == "90"
    assert ax_acc.get_ylabel() == "accuracy (%)" and ax_acc.get_title().startswith("Accuracy")


def test_curves_without_kept_epochs_have_no_markers():
    fig = plot_curves({"a": history(3)})
    assert not [line for ax in fig.axes for line in ax.lines if line.get_marker() == "o"]


def test_maps_put_each_block_on_its_own_symmetric_scale():
    fig = plot_maps({"filters": torch.arange(6.0).reshape(6, 1, 1) - 1,
                     "maps": torch.full((10, 3, 3), -4.0)}, columns=4)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 16
    assert images[0].get_clim() == (-4.0, 4.0)  # largest magnitude in the first block: 4
    assert images[-1].get_clim() == (-4.0, 4.0)
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 2
    shown = [ax for ax in fig.axes if ax.images or ax.get_label() == "<colorbar>"]
    assert len(fig.axes) - len(shown) == 4  # the unused panels: 2 of 8, and 2 of 12


def test_maps_take_weights_that_require_grad_without_a_warning(recwarn):
    weights = torch.nn.Conv2d(1, 3, 5).weight[:, 0]
    assert weights.requires_grad
    plot_maps({"filters": weights})
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]
