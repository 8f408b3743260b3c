"""The one training loop of the book: MNIST in memory, validation-based stopping, checkpoints.

The whole data set lives in memory as one scaled float tensor (on the GPU when there is one)
and mini-batches are taken by index, so an epoch costs the model's arithmetic and little else.
After every epoch the weights are scored on a validation split held out from the 60,000
training images (never on the test set); :class:`TrainConfig` states the stopping and
learning-rate rules, and the weights of the best validation epoch are kept. :func:`train` runs
one epoch per stage of :func:`book.runs.run_in_stages`: an interrupted run resumes exactly
where it stopped, a finished one with the same identity is reused unless ``retrain=True``, and
the :class:`TrainResult` is the same whichever of the three happened.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from book.checks import non_negative_int, positive_float, positive_int
from book.hardware import default_device
from book.mnist.data import MD5, MNISTTensors
from book.paths import RESULTS_DIR
from book.progress import Progress, bar
from book.runs import Run, Stages, code_digest, model_code_digest, run_in_stages

__all__ = ["HISTORY_COLUMNS", "Split", "TrainConfig", "TrainResult", "Training",
           "confusion_matrix", "evaluate", "normalise", "predict", "run_identity", "shifted",
           "split", "train", "train_epoch"]

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                   "test_loss", "test_acc", "lr", "seconds"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the outcome of a run (stored with its results)."""

    batch_size: int = 256
    lr: float = 1e-2  # Adam
    weight_decay: float = 0.0
    max_epochs: int = 40
    patience: int = 3  # epochs without a better validation loss before stopping
    min_delta: float = 0.02  # "better" means lower by more than this fraction of the best
    lr_factor: float = 0.3  # the learning rate is multiplied by this ...
    lr_patience: int = 0  # ... after more than this many epochs without a better validation loss
    val_size: int = 5_000  # held out from the 60,000 training images
    ema_decay: float = 0.998  # score and keep a moving average of the weights (0: off)
    shift: int = 1  # training images are moved by up to this many pixels each way, at random
    seed: int = 0
    train_limit: int | None = None  # use only this many training images (for quick tests)
    # Forward and backward passes in bfloat16 (autocast), weights and optimizer in float32;
    # scoring is always in float32.
    autocast_bf16: bool = False

    def __post_init__(self) -> None:
        """Refuse a bad field by name; store every number as a plain Python one (np.float32 ->
        float), for JSON. Every function that takes a TrainConfig relies on these checks."""
        checks = dict.fromkeys(("batch_size", "max_epochs", "patience", "val_size"), positive_int)
        checks |= dict.fromkeys(("lr_patience", "seed", "shift"), non_negative_int)
        checks["lr"] = positive_float
        if self.train_limit is not None:
            checks["train_limit"] = positive_int
        for name, check in checks.items():
            object.__setattr__(self, name, check(f"TrainConfig.{name}", getattr(self, name)))
        intervals = {"weight_decay": ("[", math.inf), "min_delta": ("[", 1),
                     "lr_factor": ("(", 1), "ema_decay": ("[", 1)}  # [0, high) or (0, high)
        for name, (bracket, high) in intervals.items():
            value = getattr(self, name)
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (real and (0 <= value if bracket == "[" else 0 < value) and value < high):
                raise ValueError(f"TrainConfig.{name} must lie in {bracket}0, {high:g}), "
                                 f"got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.shift >= 14:
            raise ValueError(f"TrainConfig.shift must be an int in [0, 14), got {self.shift!r}")
        if not isinstance(self.autocast_bf16, bool):
            raise ValueError("TrainConfig.autocast_bf16 must be a bool, "
                             f"got {self.autocast_bf16!r}")

    def ema_decay_at(self, step: int) -> float:
        """The decay of the weight average at optimizer step ``step`` (counted from 0 over the
        whole run): ``min(ema_decay, (1 + step) / (10 + step))``, a ramp, so that the average
        does not drag the random initial weights along for the first few epochs."""
        return min(self.ema_decay, (1 + step) / (10 + step))

    def ema_ramp_steps(self) -> int:
        """The first step at which :meth:`ema_decay_at` reaches ``ema_decay``."""
        step = 0  # counted, not solved: the answer is the ramp's, rounding included
        while self.ema_decay_at(step) < self.ema_decay:
            step += 1
        return step


@dataclass
class TrainResult:
    """What a finished run gives back, however it was obtained."""

    name: str
    model: nn.Module  # holding the weights of the best validation epoch
    history: pd.DataFrame  # one row per epoch, columns HISTORY_COLUMNS
    best_epoch: int
    test_acc: float  # of the kept weights
    test_loss: float
    seconds: float  # wall-clock seconds of all epochs, training and scoring
    config: TrainConfig
    status: str  # "fresh", "resumed" or "reused": how this call obtained it
    std: float  # of the training pixels (0..1); every input is divided by it

    @property
    def epochs(self) -> int:
        return len(self.history)

    def kept(self, column: str) -> float:
        """``column`` of :data:`HISTORY_COLUMNS` at the kept (best validation) epoch."""
        return float(self.history[column].iloc[self.best_epoch - 1])

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Raw ``uint8 [N, 28, 28]`` images as this model's standardised input."""
        return normalise(images, self.std)

    def summary(self) -> str:
        """One deterministic line: nothing in it depends on timing or on ``status``."""
        return (f"{self.name}: stopped after {self.epochs} epochs, best validation loss at "
                f"epoch {self.best_epoch}; test accuracy {self.test_acc:.2%}")


@dataclass(frozen=True)
class Split:
    """Scaled image tensors ``[N, 1, 28, 28]`` and labels for the three subsets."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    std: float

    @property
    def background(self) -> float:
        """The value of a blank (0) pixel as :func:`normalise` makes it: exactly 0."""
        return normalise(torch.zeros(1, 1, 1, dtype=torch.uint8), self.std).item()


def normalise(images: torch.Tensor, std: float) -> torch.Tensor:
    """``uint8 [N, 28, 28]`` to ``float32 [N, 1, 28, 28]`` with unit standard deviation.

    Only scaled, not centred: a blank pixel stays exactly 0, so the zeros that a convolution's
    ``padding`` adds are the same as a border of background (centring would make background
    ``-mean / std`` and the padding a mid-grey frame).
    """
    return (images.float() / (255 * std)).unsqueeze(1)


def split(data: MNISTTensors, config: TrainConfig, device: torch.device | str = "cpu") -> Split:
    """Hold out ``config.val_size`` random training images (seeded) for validation.

    The standard deviation comes from the remaining training images only.
    """
    n = len(data.train_labels)
    if config.val_size >= n:
        raise ValueError(f"TrainConfig.val_size ({config.val_size}) must be smaller than the "
                         f"{n} training images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    val_idx, train_idx = order[:config.val_size], order[config.val_size:]
    if config.train_limit is not None:
        train_idx = train_idx[:config.train_limit]
    std = (data.train_images[train_idx].float() / 255).std().item()

    def prep(images: torch.Tensor) -> torch.Tensor:
        return normalise(images, std).to(device)

    return Split(prep(data.train_images[train_idx]), data.train_labels[train_idx].to(device),
                 prep(data.train_images[val_idx]), data.train_labels[val_idx].to(device),
                 prep(data.test_images), data.test_labels.to(device), std)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 4096) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode, in float32."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch_size):
        logits = model(_layout(x[i:i + batch_size]))
        loss_sum += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    return loss_sum / len(y), correct / len(y)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
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


def shifted(images: torch.Tensor, shift: int, generator: torch.Generator, *,
            fill: float) -> torch.Tensor:
    """Move each image ``[N, 1, H, W]`` by its own random offset of at most ``shift`` pixels
    along each axis, filling the uncovered border with ``fill`` (a blank pixel's value).

    One gather for the whole batch: an index grid per image, no per-sample Python loop.
    """
    if shift == 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift), value=fill)
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, n, 1), generator=generator)
              .to(images.device))
    rows = (dy + torch.arange(h, device=images.device))[:, :, None]  # (N, H, 1)
    cols = (dx + torch.arange(w, device=images.device))[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, 0, rows, cols].unsqueeze(1)  # (N, 1, H, W)


def _layout(x: torch.Tensor) -> torch.Tensor:
    # Channels-last lets oneDNN pick its fast convolution kernels on the CPU (about 1.5x here).
    return x.contiguous(memory_format=torch.channels_last)


def run_identity(model: nn.Module, config: TrainConfig) -> dict[str, Any]:
    """Everything that decides a run's result: the model's structure and the source of every
    module defining its class or a base class, this training code, the data's checksums and
    the configuration (:class:`book.runs.Run` adds the torch version)."""
    return {"model": type(model).__qualname__,
            "structure": repr(model),
            "parameters": sum(p.numel() for p in model.parameters()),
            "model_code": model_code_digest(type(model)),
            "training_code": code_digest(sys.modules[__name__]),
            "data_md5": MD5,
            "config": dataclasses.asdict(config)}


def train(name: str, make_model: Callable[[], nn.Module], data: MNISTTensors,
          config: TrainConfig = TrainConfig(), *, results_dir: Path | str = RESULTS_DIR,
          retrain: bool = False, progress: bool = True,
          on_epoch_end: Callable[[int, pd.DataFrame], None] | None = None) -> TrainResult:
    """Train ``make_model()`` on MNIST until the validation loss stops improving.

    ``make_model`` builds the model (``LeNet5``, the class; not ``LeNet5()``). ``name``
    names the result files in ``results_dir``. ``on_epoch_end(epoch, history)`` is called
    after each epoch's checkpoint is written (tests use it to interrupt a run).
    """
    model = _new_model(make_model, config)
    run = Run(name, run_identity(model, config), results_dir, retrain=retrain)
    report = Progress(progress)
    started = []

    def start() -> Training:
        started.append(True)
        splits = split(data, config, default_device())
        return Training(name, model, splits, config, report)

    def after_epoch(training: Training) -> None:
        row = training.rows[-1]
        report(f"{name}: epoch {row['epoch']}: validation loss {row['val_loss']:.4f}, "
               f"accuracy {row['val_acc']:.2%} (best epoch {training.best['epoch']})")
        if on_epoch_end is not None:
            on_epoch_end(row["epoch"], pd.DataFrame(training.rows, columns=HISTORY_COLUMNS))

    try:
        record, weights, status = run_in_stages(run, start, after_stage=after_epoch)
    except BaseException:
        if started:  # never promise a checkpoint that was not written
            report.close(f"{name}: interrupted; call train() again to resume from "
                         f"{run.checkpoint_path}" if run.checkpoint_path.exists() else
                         f"{name}: interrupted before its first checkpoint; call train() "
                         "again to start over")
        raise
    model.load_state_dict(weights)
    model.eval()
    result = TrainResult(name=name, model=model,
                         history=pd.DataFrame(record["history"], columns=HISTORY_COLUMNS),
                         best_epoch=record["best_epoch"], test_acc=record["test_acc"],
                         test_loss=record["test_loss"], seconds=record["seconds"],
                         config=config, status=status, std=record["std"])
    report.close(result.summary())
    return result


def _new_model(make_model: Callable[[], nn.Module], config: TrainConfig) -> nn.Module:
    """``make_model()`` after seeding, on the book's device, channels-last; checked."""
    if isinstance(make_model, nn.Module) or not callable(make_model):
        raise TypeError(f"train(make_model=...) takes a function that builds the model, such "
                        f"as the class LeNet5, not a {type(make_model).__name__} instance; "
                        "pass the class (or a lambda) instead")
    torch.manual_seed(config.seed)  # the initial weights: the same for the same seed
    model = make_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"train(make_model=...) must build an nn.Module, but it returned "
                        f"{type(model).__name__}")
    return model.to(default_device()).to(memory_format=torch.channels_last)


class Training(Stages):
    """A run between two epochs: the model and its weight average, the optimizer and its
    schedule, the shuffling generator, the history so far and the best epoch's weights.

    A stage is one epoch (:meth:`stage`); the run is done when the validation loss has not
    improved for ``config.patience`` epochs, or after ``config.max_epochs``.
    """

    checkpointed = ("model", "averaged", "optimizer", "scheduler", "shuffle", "rows", "best")

    def __init__(self, name: str, model: nn.Module, splits: Split, config: TrainConfig,
                 report: Progress) -> None:
        self.name, self.model, self.splits, self.config, self.report = (
            name, model, splits, config, report)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.lr_factor, patience=config.lr_patience,
            threshold=config.min_delta, threshold_mode="rel")
        self.shuffle = torch.Generator().manual_seed(config.seed + 1)
        self.rows: list[dict[str, float]] = []
        # The weights that are scored and kept: the model itself, or a moving average of it.
        self.averaged = copy.deepcopy(model) if config.ema_decay else model
        self.best = {"loss": math.inf, "epoch": 0,
                     "state": copy.deepcopy(self.averaged.state_dict())}

    def done(self) -> bool:
        epoch = len(self.rows)
        return epoch >= self.config.max_epochs or (
            epoch > 0 and epoch - self.best["epoch"] >= self.config.patience)

    def stage(self) -> None:
        """One epoch: train, score the averaged weights, adjust the learning rate, keep the
        best epoch's weights."""
        s, config, epoch = self.splits, self.config, len(self.rows) + 1
        n = len(s.train_y)
        start = time.perf_counter()
        loss_sum, correct = train_epoch(
            self.model, self.optimizer, s.train_x, s.train_y, config, self.shuffle,
            self.averaged, (epoch - 1) * math.ceil(n / config.batch_size),
            lambda done: self.report(f"{self.name}: epoch {epoch} {bar(done / n)} "
                                     f"{done:,}/{n:,} images", detail=True),
            fill=s.background)
        val_loss, val_acc = evaluate(self.averaged, s.val_x, s.val_y)
        test_loss, test_acc = evaluate(self.averaged, s.test_x, s.test_y)
        self.rows.append({"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
                          "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss,
                          "test_acc": test_acc, "lr": self.optimizer.param_groups[0]["lr"],
                          "seconds": time.perf_counter() - start})
        self.scheduler.step(val_loss)
        if val_loss < self.best["loss"] * (1 - config.min_delta):
            self.best = {"loss": val_loss, "epoch": epoch,
                         "state": copy.deepcopy(self.averaged.state_dict())}

    def outcome(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        self.model.load_state_dict(self.best["state"])
        kept = self.rows[self.best["epoch"] - 1]
        return self.model.state_dict(), {
            "history": self.rows, "best_epoch": self.best["epoch"], "epochs": len(self.rows),
            "test_acc": kept["test_acc"], "test_loss": kept["test_loss"],
            "seconds": sum(row["seconds"] for row in self.rows), "std": self.splits.std}


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, config: TrainConfig, generator: torch.Generator,
                averaged: nn.Module | None = None, first_step: int = 0,
                progress: Callable[[int], None] | None = None, *,
                fill: float) -> tuple[float, int]:
    """One pass over ``(x, y)`` in shuffled mini-batches, drawn by index from memory.

    ``fill`` is the value of a blank pixel in ``x`` (:attr:`Split.background`), used for the
    border that the random shifts uncover.

    With ``config.ema_decay > 0``, ``averaged`` (a copy of ``model``) tracks the exponential
    moving average of the weights after every step, with the decay
    :meth:`TrainConfig.ema_decay_at` step ``t`` (counted from ``first_step``).

    Returns the summed loss and the number of correct predictions, over the epoch.
    """
    model.train()
    n = len(y)
    ema = config.ema_decay and averaged is not None and averaged is not model
    if ema:
        params, averages = list(model.parameters()), list(averaged.parameters())
    order = torch.randperm(n, generator=generator).to(x.device)
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for step, i in enumerate(range(0, n, config.batch_size), start=first_step):
        idx = order[i:i + config.batch_size]
        images = shifted(x[idx], config.shift, generator, fill=fill)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.autocast_bf16):
            logits = model(_layout(images))
        loss = F.cross_entropy(logits.float(), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema:
            with torch.no_grad():
                torch._foreach_lerp_(averages, params, 1 - config.ema_decay_at(step))
        # Accumulated on the device: no synchronisation per batch.
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y[idx]).sum()
        if progress is not None:
            progress(min(i + config.batch_size, n))
    return loss_sum.item(), int(correct.item())
