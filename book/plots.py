"""The figures of the LeNet-5 chapters. Each function returns its matplotlib Figure.

Convention throughout: training curves solid, test curves dashed; one colour per network.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib import ticker
from matplotlib.figure import Figure

__all__ = ["confusion_matrix", "plot_confusion", "plot_curves", "plot_misclassified",
           "predict"]

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


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Predicted classes of ``model`` for images ``[N, 1, 28, 28]``, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(x[i:i + batch_size].to(device)).argmax(1).cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor,
                     classes: int = 10) -> np.ndarray:
    """``counts[true, predicted]`` as an int array ``[classes, classes]``."""
    flat = labels.cpu().long() * classes + predicted.cpu().long()
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes).numpy()


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
