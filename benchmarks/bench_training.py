"""Training speed and convergence of the two LeNet-5 nets, measured on this machine.

1. One epoch of our in-memory training loop against the usual torchvision pipeline
   (``datasets.MNIST`` with ``ToTensor`` and ``Normalize``, a shuffling ``DataLoader`` with its
   default ``num_workers=0``), on the same model, batch size and machine, timed in the same
   run. Target: ours at least 4x faster. A third timing bounds what any input pipeline could
   reach: the same model trained on batches that were cut and laid out beforehand (no
   shuffling, shifts, or weight averaging), so the epoch is the model's own work alone.
2. Each net trained from scratch to convergence with the book's rule (in a temporary folder, so
   the book's own results are untouched). Targets: LeNet-5 at least 99.3% test accuracy,
   LeNet-5 DSC at least 98.6%, each within 60 s.

Run with ``make bench`` or ``python benchmarks/bench_training.py [--skip-convergence]``.
Run it on an otherwise idle machine: two processes sharing two cores distort every timing.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from book.data import DATA_DIR, load_mnist
from book.models import LeNet5, LeNet5DSC
from book.training import Split, TrainConfig, split, train, train_epoch

TARGETS = {"LeNet5": 0.993, "LeNet5DSC": 0.986}
# As in the book: the separable net is trained with twice Part a's learning rate.
CONFIGS = {"LeNet5": TrainConfig(), "LeNet5DSC": TrainConfig(lr=2e-2)}
SECONDS_TARGET = 60.0


def plain_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """One epoch the way most tutorials write it, over any iterable of ``(images, labels)``
    (a ``DataLoader``, or batches cut beforehand); returns its wall-clock seconds."""
    model.train()
    start = time.perf_counter()
    for xb, yb in batches:
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def ours_epoch(model: torch.nn.Module, averaged: torch.nn.Module,
               optimizer: torch.optim.Optimizer, splits: Split, config: TrainConfig) -> float:
    """One epoch of book.training's loop (shifts and weight averaging included)."""
    start = time.perf_counter()
    train_epoch(model, optimizer, splits.train_x, splits.train_y, config,
                torch.Generator().manual_seed(0), averaged, fill=splits.background)
    return time.perf_counter() - start


def fresh(make: Callable[[], torch.nn.Module], config: TrainConfig,
          memory_format: torch.memory_format) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The same seeded initial model for every contender, with its Adam optimizer."""
    torch.manual_seed(0)
    model = make().to(memory_format=memory_format)
    return model, torch.optim.Adam(model.parameters(), lr=config.lr)


def epoch_speed(repeats: int) -> None:
    config = TrainConfig()
    data = load_mnist()
    splits = split(data, config)
    # The baseline's own normalisation (the usual constants) on the same 55,000 images.
    normalize = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(str(DATA_DIR), train=True, transform=normalize)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(config.seed))
    subset = torch.utils.data.Subset(full, order[config.val_size:].tolist())
    loader = DataLoader(subset, batch_size=config.batch_size, shuffle=True)
    size = config.batch_size
    batches = [(xb.contiguous(memory_format=torch.channels_last), yb) for xb, yb in
               zip(splits.train_x.split(size), splits.train_y.split(size), strict=True)]
    print(f"one epoch of {len(subset):,} images, batch {config.batch_size}, "
          f"{torch.get_num_threads()} threads; the same model trained on, best of {repeats} "
          "consecutive epochs")
    for make in (LeNet5, LeNet5DSC):
        model, optimizer = fresh(make, config, torch.contiguous_format)  # as tutorials have it
        base = min(plain_epoch(model, optimizer, loader) for _ in range(repeats))
        model, optimizer = fresh(make, config, torch.channels_last)  # as book.training has it
        averaged = copy.deepcopy(model)
        ours = min(ours_epoch(model, averaged, optimizer, splits, config)
                   for _ in range(repeats))
        model, optimizer = fresh(make, config, torch.channels_last)
        alone = min(plain_epoch(model, optimizer, batches) for _ in range(repeats))
        verdict = "meets" if base / ours >= 4 else "MISSES"
        print(f"  {make.__name__:9s}  DataLoader+ToTensor/Normalize {base:6.2f} s   "
              f"in-memory {ours:6.2f} s   ratio {base / ours:4.1f}x ({verdict} the 4x target)")
        print(f"  {'':9s}  model alone on ready batches {alone:6.2f} s: no input pipeline can "
              f"beat {base / alone:4.1f}x with this model here")


def convergence() -> None:
    data = load_mnist()
    with tempfile.TemporaryDirectory() as folder:
        for make in (LeNet5, LeNet5DSC):
            start = time.perf_counter()
            result = train(make.__name__.lower(), make, data, CONFIGS[make.__name__],
                           results_dir=folder, progress=False)
            wall = time.perf_counter() - start
            ok = result.test_acc >= TARGETS[make.__name__] and result.seconds <= SECONDS_TARGET
            print(f"  {make.__name__:9s}  {result.epochs:2d} epochs (best {result.best_epoch:2d})"
                  f"  test accuracy {result.test_acc:.2%} (target {TARGETS[make.__name__]:.1%})"
                  f"  training {result.seconds:5.1f} s, wall {wall:5.1f} s"
                  f" (target {SECONDS_TARGET:.0f} s): {'meets' if ok else 'MISSES'} targets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-convergence", action="store_true")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print(f"torch {torch.__version__}, device "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    epoch_speed(args.repeats)
    if not args.skip_convergence:
        print("training to convergence (fresh, in a temporary folder):")
        convergence()


if __name__ == "__main__":
    main()
