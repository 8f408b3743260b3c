"""Training speed against the machine's arithmetic limit, and time to a converged net.

1. The machine's peak: a 4096x4096 matrix product in float32 and in bfloat16 (GFLOP/s, best
   of 3), and whether the CPU has native bf16 dot products (its ``avx512_bf16``/``amx_bf16``
   flags).
2. One training epoch of each net (55,000 images, ``book.training.train_epoch``: shifts and
   weight averaging included) for each lever alone and combined (``--compile`` adds
   ``torch.compile``, alone and with bf16 autocast), timed in interleaved rounds
   (every contender once per round, best and spread over the rounds). Each epoch is also
   given as a fraction of the measured peak: its arithmetic is 3 forward passes' worth of
   multiply-accumulates per image (forward, input gradient, weight gradient) less the first
   layer's input gradient, which nobody needs, counted by ``book.opcount``.
3. Where the book's epoch goes, from ``torch.profiler`` (self time of each operator, one
   epoch on 12,800 images after a warm-up one): the share of the products (convolutions
   forward and backward, matrix products) and of everything else (activations, pooling, the
   shift gather, the loss, Adam's and the weight average's elementwise updates). The rest is
   a bound no faster product can remove: even at the peak rate, an epoch takes its
   products' arithmetic at the peak plus the rest as measured.
4. The Transformer of Problem 2 (``book.reversal.train_reversal``, which trains with bf16
   autocast): seconds per training step with and without autocast, in interleaved rounds of
   short runs, as a fraction of the measured peak; its multiply-accumulates per sequence from
   ``book.transformer_ops.closed_form_counts``.
5. Each net trained from scratch to convergence with the book's rule (in a temporary folder,
   so the book's own results are untouched), with the book's configuration and with each lever
   of 2. (the learning rate unchanged). Targets: LeNet-5 at least 99.3% test accuracy in at
   most 12 s of training, the separable net at least 98.6% in at most 15 s; a LeNet-5 epoch
   in at most 1.5 s.

Run with ``make bench`` or ``python benchmarks/bench_training.py [--rounds N] [--compile]
[--skip-convergence]``
on an otherwise idle machine: two processes sharing two cores distort every timing.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
import time
from contextlib import nullcontext

import torch
from torch.profiler import ProfilerActivity, profile

from book.data import load_mnist
from book.hardware import cpu_flags, default_device
from book.models import LeNet5, LeNet5DSC
from book.opcount import count_ops
from book.reversal import ReversalConfig, ReversalTask, train_reversal
from book.training import TrainConfig, split, train, train_epoch
from book.transformer_ops import closed_form_counts

BOOK = {"LeNet5": TrainConfig(), "LeNet5DSC": TrainConfig(lr=2e-2)}
TARGETS = {"LeNet5": (0.993, 12.0), "LeNet5DSC": (0.986, 15.0)}  # accuracy, training seconds
EPOCH_TARGET = {"LeNet5": 1.5}
LEVERS = {  # name -> changes to the book's configuration
    "book's loop (float32, batch 256)": {},
    "bf16 autocast": {"autocast_bf16": True},
    "batch 512": {"batch_size": 512},
    "bf16 autocast + batch 512": {"autocast_bf16": True, "batch_size": 512},
}
COMPILED = {  # with --compile: the model wrapped in torch.compile (inductor, the C compiler)
    "torch.compile": {},
    "torch.compile + bf16 autocast": {"autocast_bf16": True},
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


def epoch_speed(rounds: int, peaks: dict[str, float], compiled: bool = False
                ) -> dict[str, float]:
    """Print each lever's epoch time per net; return the book's loop's best epoch, per net.

    With ``compiled``, the :data:`COMPILED` levers run too; their first round includes the
    compilation, which the best of the rounds leaves out and which is printed separately."""
    levers = {**LEVERS, **(COMPILED if compiled else {})}
    data = load_mnist()
    splits = split(data, TrainConfig(), default_device())
    n = len(splits.train_y)
    best_epochs, book_epochs = {}, {}
    print(f"\none training epoch of {n:,} images, {torch.get_num_threads()} threads, "
          f"{rounds} interleaved rounds (best, and the range over the rounds):")
    for make in (LeNet5, LeNet5DSC):
        flops = training_flops_per_image(make) * n
        contenders = {}
        for lever, changes in levers.items():
            config = dataclasses.replace(BOOK[make.__name__], **changes)
            torch.manual_seed(0)
            model = make().to(memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
            averaged = copy.deepcopy(model)
            if lever in COMPILED:
                model = torch.compile(model)  # shares the parameters the optimizer updates
            contenders[lever] = (model, averaged, optimizer, config)
        times: dict[str, list[float]] = {lever: [] for lever in levers}
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
                  f"of the {'bf16' if 'bf16' in lever else 'fp32'} peak"
                  + (f"; compiling took about {ts[0] - min(ts[1:]):.0f} s"
                     if lever in COMPILED and len(ts) > 1 else ""))
        best_epochs[make.__name__] = min(min(ts) for ts in times.values())
        book_epochs[make.__name__] = min(times[next(iter(LEVERS))])
        target = EPOCH_TARGET.get(make.__name__)
        if target:
            verdict = "meets" if best_epochs[make.__name__] <= target else "MISSES"
            print(f"    best epoch {best_epochs[make.__name__]:.2f} s: {verdict} the "
                  f"{target} s target")
    return book_epochs


PRODUCTS = {"aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
            "aten::_slow_conv2d_backward", "aten::thnn_conv2d", "aten::mm", "aten::addmm",
            "aten::bmm"}


def profiled_epoch(make, config: TrainConfig, data) -> dict[str, float]:
    """Self CPU microseconds per operator of one epoch of the book's loop (after a warm-up
    epoch), on ``config.train_limit`` images."""
    splits = split(data, config, default_device())
    torch.manual_seed(0)
    model = make().to(memory_format=torch.channels_last)
    averaged = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(0)
    for profiled in (False, True):
        with profile(activities=[ProfilerActivity.CPU]) if profiled else nullcontext() as prof:
            train_epoch(model, optimizer, splits.train_x, splits.train_y, config, g, averaged,
                        fill=splits.background)
    return {e.key: e.self_cpu_time_total for e in prof.key_averages()}


def where_time_goes(peaks: dict[str, float], epoch_seconds: dict[str, float],
                    images: int = 12_800) -> None:
    """Print, per net, the products' and the rest's share of a profiled epoch of the book's
    loop, and the bound on a full epoch that the rest sets."""
    data = load_mnist()
    print(f"\nwhere an epoch of the book's loop goes (torch.profiler, self time of each "
          f"operator, {images:,} images):")
    for make in (LeNet5, LeNet5DSC):
        config = dataclasses.replace(BOOK[make.__name__], train_limit=images)
        self_us = profiled_epoch(make, config, data)
        total = sum(self_us.values())
        products = sum(t for k, t in self_us.items() if k in PRODUCTS) / total
        top = sorted(((t, k) for k, t in self_us.items() if k not in PRODUCTS), reverse=True)
        largest = ", ".join(f"{k.removeprefix('aten::')} {t / total:.0%}" for t, k in top[:4])
        n = len(data.train_labels) - config.val_size
        floor = training_flops_per_image(make) * n / (peaks["float32"] * 1e9)
        rest = (1 - products) * epoch_seconds[make.__name__]
        print(f"  {make.__name__}: products {products:.0%} of the time, the rest "
              f"{1 - products:.0%} (largest: {largest})")
        print(f"    a full epoch: products at the float32 peak {floor:.2f} s + the rest as "
              f"measured {rest:.2f} s = {floor + rest:.2f} s at best with these kernels")


def transformer_speed(peaks: dict[str, float], rounds: int, steps: int = 100) -> None:
    """Seconds per training step of the Problem 2 Transformer, bf16 autocast (the book's
    choice) against float32, each a fresh run of ``steps`` steps in a temporary folder."""
    task, book = ReversalTask(), ReversalConfig()
    model = task.model_config(torch.float32)
    counts = closed_form_counts(task.max_len, task.max_len + 1, model)
    macs = sum(int(block.get("mults", 0)) for block in counts.values())  # per sequence
    flops = 2 * 3 * macs * book.batch_size  # forward, and the two gradients, per step
    configs = {"bf16 autocast (the book's)": dataclasses.replace(
                   book, steps=steps, eval_every=steps, checkpoint_every=steps),
               "float32": dataclasses.replace(book, steps=steps, eval_every=steps,
                                              checkpoint_every=steps, autocast=False)}
    times: dict[str, list[float]] = {label: [] for label in configs}
    for _ in range(rounds):
        for label, config in configs.items():
            with tempfile.TemporaryDirectory() as folder:
                _, record = train_reversal(task, config, results_dir=folder)
            times[label].append(record["seconds"] / steps)
    print(f"\nthe Problem 2 Transformer, one training step of {book.batch_size} sequences "
          f"({flops / 1e9:.1f} GFLOP), {rounds} interleaved rounds of {steps}-step runs:")
    for label, ts in times.items():
        peak = peaks["bfloat16" if "bf16" in label else "float32"]
        print(f"    {label:28s} {1e3 * min(ts):6.1f} ms ({1e3 * min(ts):.1f}-{1e3 * max(ts):.1f})"
              f"  {flops / min(ts) / 1e9:6.1f} GFLOP/s = {flops / min(ts) / 1e9 / peak:5.1%} of "
              f"the {'bf16' if 'bf16' in label else 'fp32'} peak; {book.steps} steps "
              f"{book.steps * min(ts):.0f} s")


def convergence() -> None:
    data = load_mnist()
    print("\ntraining to convergence (fresh, in a temporary folder):")
    for make in (LeNet5, LeNet5DSC):
        accuracy, seconds = TARGETS[make.__name__]
        for label in LEVERS:
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
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile, alone and with bf16 autocast")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    flags = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})
    print(f"torch {torch.__version__}, device {default_device()}, CPU flags: "
          f"{', '.join(flags) or 'none of avx512f/avx512_bf16/amx'}")
    peaks = {"float32": peak_gflops(torch.float32), "bfloat16": peak_gflops(torch.bfloat16)}
    print("peak of a 4096x4096 matrix product: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    best = epoch_speed(args.rounds, peaks, args.compile)
    where_time_goes(peaks, best)
    transformer_speed(peaks, args.rounds)
    if not args.skip_convergence:
        convergence()


if __name__ == "__main__":
    main()
