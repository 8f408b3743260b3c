"""Training speed against the machine's arithmetic limit, and time to a converged net.

1. The machine's peak: a 4096x4096 matrix product in float32 and in bfloat16 (GFLOP/s, best
   of 3), and whether the CPU has native bf16 dot products (its ``avx512_bf16``/``amx_bf16``
   flags).
2. One training epoch of each net (55,000 images, ``book.training.train_epoch``: shifts and
   weight averaging included) for each lever alone and combined, timed in interleaved rounds
   (every contender once per round, best and spread over the rounds). Each epoch is also
   given as a fraction of the measured peak: its arithmetic is 3 forward passes' worth of
   multiply-accumulates per image (forward, input gradient, weight gradient) less the first
   layer's input gradient, which nobody needs, counted by ``book.opcount``.
3. Each net trained from scratch to convergence with the book's rule (in a temporary folder,
   so the book's own results are untouched), with the book's configuration and with bf16
   autocast. Targets: LeNet-5 at least 99.3% test accuracy in at most 12 s of training, the
   separable net at least 98.6% in at most 15 s; a LeNet-5 epoch in at most 1.5 s.

Run with ``make bench`` or ``python benchmarks/bench_training.py [--rounds N] [--skip-convergence]``
on an otherwise idle machine: two processes sharing two cores distort every timing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time

import torch

from book.data import load_mnist
from book.hardware import cpu_flags, default_device
from book.models import LeNet5, LeNet5DSC
from book.opcount import count_ops
from book.training import TrainConfig, split, train, train_epoch

BOOK = {"LeNet5": TrainConfig(), "LeNet5DSC": TrainConfig(lr=2e-2)}
TARGETS = {"LeNet5": (0.993, 12.0), "LeNet5DSC": (0.986, 15.0)}  # accuracy, training seconds
EPOCH_TARGET = {"LeNet5": 1.5}
LEVERS = {  # name -> changes to the book's configuration
    "book's loop (float32, batch 256)": {},
    "bf16 autocast": {"autocast_bf16": True},
    "batch 512": {"batch_size": 512},
    "bf16 autocast + batch 512": {"autocast_bf16": True, "batch_size": 512},
}


def peak_gflops(dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_flops_per_image(make) -> int:
    """2 x (3 forward MACs - the first layer's input gradient), from the op counter."""
    table = count_ops(make(), (1, 1, 28, 28))
    macs = table.loc[table["kind"].isin(["Conv2d", "Linear"]), "mults"]
    return 2 * (3 * int(macs.sum()) - int(macs.iloc[0]))


def epoch_speed(rounds: int, peaks: dict[str, float]) -> dict[str, float]:
    data = load_mnist()
    splits = split(data, TrainConfig(), default_device())
    n = len(splits.train_y)
    best_epochs = {}
    print(f"\none training epoch of {n:,} images, {torch.get_num_threads()} threads, "
          f"{rounds} interleaved rounds (best, and the range over the rounds):")
    for make in (LeNet5, LeNet5DSC):
        flops = training_flops_per_image(make) * n
        contenders = {}
        for lever, changes in LEVERS.items():
            config = dataclasses.replace(BOOK[make.__name__], **changes)
            torch.manual_seed(0)
            model = make().to(memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
            contenders[lever] = (model, copy.deepcopy(model), optimizer, config)
        times: dict[str, list[float]] = {lever: [] for lever in LEVERS}
        for r in range(rounds):
            for lever, (model, averaged, optimizer, config) in contenders.items():
                g = torch.Generator().manual_seed(r)
                start = time.perf_counter()
                train_epoch(model, optimizer, splits.train_x, splits.train_y, config, g,
                            averaged, fill=splits.background)
                times[lever].append(time.perf_counter() - start)
        print(f"  {make.__name__} ({flops / 1e9:.0f} GFLOP per epoch)")
        for lever, ts in times.items():
            peak = peaks["bfloat16" if "bf16" in lever else "float32"]
            print(f"    {lever:32s} {min(ts):5.2f} s  ({min(ts):.2f}-{max(ts):.2f})  "
                  f"{flops / min(ts) / 1e9:6.1f} GFLOP/s = {flops / min(ts) / 1e9 / peak:5.1%} "
                  f"of the {'bf16' if 'bf16' in lever else 'fp32'} peak")
        best_epochs[make.__name__] = min(min(ts) for ts in times.values())
        target = EPOCH_TARGET.get(make.__name__)
        if target:
            verdict = "meets" if best_epochs[make.__name__] <= target else "MISSES"
            print(f"    best epoch {best_epochs[make.__name__]:.2f} s: {verdict} the "
                  f"{target} s target")
    return best_epochs


def convergence() -> None:
    data = load_mnist()
    print("\ntraining to convergence (fresh, in a temporary folder):")
    for make in (LeNet5, LeNet5DSC):
        accuracy, seconds = TARGETS[make.__name__]
        for label in ("book's loop (float32, batch 256)", "bf16 autocast"):
            changes = LEVERS[label]
            config = dataclasses.replace(BOOK[make.__name__], **changes)
            with tempfile.TemporaryDirectory() as folder:
                result = train("run", make, data, config, results_dir=folder, progress=False)
            ok = result.test_acc >= accuracy and result.seconds <= seconds
            print(f"  {make.__name__:9s} {label:32s} {result.epochs:2d} epochs (best "
                  f"{result.best_epoch:2d})  test accuracy {result.test_acc:.2%} (target "
                  f"{accuracy:.1%})  training {result.seconds:5.1f} s (target {seconds:.0f} s): "
                  f"{'meets' if ok else 'MISSES'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-convergence", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})
    print(f"torch {torch.__version__}, device {default_device()}, CPU flags: "
          f"{', '.join(flags) or 'none of avx512f/avx512_bf16/amx'}")
    peaks = {"float32": peak_gflops(torch.float32), "bfloat16": peak_gflops(torch.bfloat16)}
    print("peak of a 4096x4096 matrix product: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    epoch_speed(args.rounds, peaks)
    if not args.skip_convergence:
        convergence()


if __name__ == "__main__":
    main()
