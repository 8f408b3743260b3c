"""What counting costs: book.counting.counter.count_ops against a plain forward pass, here.

1. The overhead per aten operator: one forward pass under ``count_ops`` against the same
   pass without it (eval mode, ``torch.no_grad``, real tensors on the CPU), and, for scale,
   under PyTorch's own ``FlopCounterMode``; the best of ``--repeats`` runs each (the least
   disturbed by anything else the machine does), the three run in turn within each repeat.
   The difference divided by the number of operators the pass ran is the price of seeing
   each one (hooks, costs and the table included); a chain of 2000 additions on 16 values,
   almost nothing but operator calls, isolates it.
2. Counting the eleven torchvision networks of the book on the ``meta`` device (building each
   one included), the way the chapter does it. Target: all eleven in under 30 s.

Run with ``make bench`` or ``python benchmarks/bench_opcount.py [--repeats N]``, on an
otherwise idle machine: two processes sharing two cores distort every timing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from book.counting.counter import count_ops
from book.counting.model_zoo import IMAGE, MODELS, build, count_model
from book.mnist.models import LeNet5

SECONDS_TARGET = 30.0


class Chain(torch.nn.Module):
    """``n`` additions on a tiny tensor: a pass that is almost nothing but operator calls."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = x + 1
        return x


class Calls(TorchDispatchMode):
    """Counts the aten operator calls of a pass."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def interleaved_best(cases: dict[str, Callable[[], object]], repeats: int) -> dict:
    """Best (least) seconds of each case, the cases run in turn within each repeat, so that a
    change in the machine's load affects them all alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def overhead(label: str, model: torch.nn.Module, shape: tuple[int, ...], repeats: int) -> None:
    model.eval()
    x = torch.zeros(shape)

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def flop_counter() -> None:
        with torch.no_grad(), FlopCounterMode(display=False):
            model(x)

    with torch.no_grad(), Calls() as calls:
        model(x)  # also the warm-up
    t = interleaved_best({"plain": plain, "count_ops": lambda: count_ops(model, x),
                             "FlopCounterMode": flop_counter}, repeats)
    per_op = (t["count_ops"] - t["plain"]) / calls.n * 1e6
    print(f"{label:28s} {calls.n:6d} {1e3 * t['plain']:10.1f} {1e3 * t['count_ops']:10.1f} "
          f"{t['count_ops'] / t['plain']:7.2f}x {1e3 * t['FlopCounterMode']:10.1f} "
          f"{per_op:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per case, the best is reported (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.manual_seed(0)
    print(f"1. Overhead of count_ops on the CPU ({torch.get_num_threads()} threads), best "
          f"of {args.repeats}")
    print(f"{'pass, input':28s} {'ops':>6s} {'plain ms':>10s} {'count ms':>10s} "
          f"{'ratio':>8s} {'Flop ms':>10s} {'us per op':>10s}")
    overhead("2000 additions, 16 values", Chain(2000), (16,), args.repeats)
    overhead("LeNet-5, 1x1x28x28", LeNet5(), (1, 1, 28, 28), args.repeats)
    overhead("MobileNet V2, 1x3x224x224", build("mobilenet_v2", "cpu"), IMAGE, args.repeats)
    overhead("ResNet-50, 1x3x224x224", build("resnet50", "cpu"), IMAGE, args.repeats)

    print("\n2. Counting the eleven networks on the meta device (building included)")
    total = 0.0
    for name in MODELS:
        start = time.perf_counter()
        ops = count_model(name)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:20s} {len(ops):6d} operators {seconds:6.2f} s")
    verdict = "met" if total < SECONDS_TARGET else "MISSED"
    print(f"all eleven: {total:.1f} s (target under {SECONDS_TARGET:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
