"""Inference speed of LeNet-5, its separable version and the variants, against operations.

    python benchmarks/bench_separable.py [--rounds N] [--threads N]

Untrained nets (speed does not depend on the weights), channels-last as the book runs them.
Everything is timed interleaved (A, B, A, B, ...; book.speed.timing.interleaved_seconds) and each
net's speed-up over LeNet-5 is the median of the round-by-round ratios, with their range, so
a busy spell of a shared machine falls on both sides of every ratio. Then this machine's
roofs and every layer of LeNet-5 and LeNet-5 DSC under them (book.speed.roofline).
"""

from __future__ import annotations

import argparse

import torch

from book.counting.counter import count_ops
from book.mnist.models import LeNet5, LeNet5DSC, LeNet5DSCFullFirst
from book.speed.roofline import layer_rates, measure_roofs
from book.speed.timing import forward_seconds, threads

NETS = {"LeNet-5": LeNet5, "LeNet-5 DSC": LeNet5DSC, "DSC, regular c1": LeNet5DSCFullFirst,
        "DSC x2": lambda: LeNet5DSC(width=2), "DSC x3": lambda: LeNet5DSC(width=3)}


def digits(batch: int) -> torch.Tensor:
    return torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    torch.manual_seed(0)
    models = {name: make().eval().to(memory_format=torch.channels_last)
              for name, make in NETS.items()}
    mults = {name: int(count_ops(m, (1, 1, 28, 28))["mults"].sum()) for name, m in models.items()}
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} interleaved rounds")
    with threads(args.threads):
        roofs = measure_roofs()
        print(f"roofs: peak {roofs.peak / 1e9:.1f} GOP/s ({roofs.matmul_size}-square float32 "
              f"products), bandwidth {roofs.bandwidth / 1e9:.1f} GB/s (copy of "
              f"{roofs.copy_bytes / 2**20:.0f} MiB), ridge {roofs.ridge:.1f} operations/byte")
        for batch in (1, 1024):
            times = forward_seconds(models, digits(batch), rounds=args.rounds)
            print(f"batch {batch}: µs per image, median [min, max]; speed-up over LeNet-5 "
                  "(median of the paired ratios [range]) against its multiplication ratio")
            for name in models:
                us = 1e6 * times[name] / batch
                ratio = times["LeNet-5"] / times[name]
                print(f"  {name:16s} {us.median():9.1f} [{us.min():8.1f}, {us.max():8.1f}]"
                      f"   speed-up {ratio.median():5.2f}x [{ratio.min():4.2f}, "
                      f"{ratio.max():4.2f}]   mults ratio {mults['LeNet-5'] / mults[name]:5.2f}x")
        pair = {name: models[name] for name in ("LeNet-5", "LeNet-5 DSC")}
        layers = layer_rates(pair, digits(1024), roofs, rounds=args.rounds)
    print("layers at batch 1024: ms median [min, max], operations per byte, best GOP/s, "
          "fraction of the roof")
    for _, row in layers[layers["ops"] > 0].iterrows():
        print(f"  {row['net']:12s} {row['layer']:13s} {1e3 * row['median']:7.2f} "
              f"[{1e3 * row['min']:6.2f}, {1e3 * row['max']:6.2f}]  {row['intensity']:6.2f}"
              f"  {row['rate'] / 1e9:6.1f}  {row['of_roof']:5.0%}")


if __name__ == "__main__":
    main()
