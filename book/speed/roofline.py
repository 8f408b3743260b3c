"""The roofline of this machine, measured, and each layer's place under it.

The roofline model (Williams, Waterman and Patterson, 2009): a kernel of arithmetic intensity
``I = ops / bytes`` can at best run at

    attainable(I) = min(peak, bandwidth * I)   operations per second,

so below the *ridge* intensity ``peak / bandwidth`` it is bound by memory, above it by
arithmetic. Both roofs are measured here (:func:`measure_roofs`), not taken from a data sheet.
A layer's point is its compulsory traffic's intensity (:mod:`book.speed.traffic`) and its
measured rate (:func:`layer_rates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from book.checks import positive_int
from book.inspection import eval_mode, forward_hooks
from book.speed.timing import interleaved_seconds, spread
from book.speed.traffic import count_traffic

__all__ = ["Roofs", "layer_calls", "layer_rates", "measure_roofs"]


@dataclass(frozen=True)
class Roofs:
    """The two roofs of a machine, in operations (multiplications plus additions) per second
    and bytes per second, and how they were measured."""

    peak: float  # operations per second
    bandwidth: float  # bytes per second
    matmul_size: int  # n of the n x n float32 product that measured the peak
    copy_bytes: int  # bytes of the float32 tensor whose copy measured the bandwidth

    @property
    def ridge(self) -> float:
        """The intensity (operations per byte) where the two roofs meet."""
        return self.peak / self.bandwidth

    def attainable(self, intensity) -> np.ndarray:
        """``min(peak, bandwidth * intensity)``, operations per second."""
        return np.minimum(self.peak, self.bandwidth * np.asarray(intensity, dtype=float))


def measure_roofs(matmul_size: int = 512, copy_bytes: int = 256 * 2**20, *, rounds: int = 30,
                  block_seconds: float = 0.005) -> Roofs:
    """Measure the two roofs on the CPU with the current number of threads.

    The peak: products of two ``matmul_size``-square float32 matrices (``n^2 (2n - 1)``
    operations each). 512 is large enough for the library to reach its full rate (three
    1 MiB matrices stay in the cache, so memory does not enter) and small enough that a block
    of products fits between two interruptions of a busy machine. The bandwidth: copies of a
    ``copy_bytes`` float32 tensor, far larger than any cache (each reads and writes
    ``copy_bytes``). Both timed interleaved (:func:`book.speed.timing.interleaved_seconds`), and
    the best of the ``rounds`` is kept for each: a roof is what the machine can reach.
    """
    n = positive_int("matmul_size", matmul_size)
    positive_int("copy_bytes", copy_bytes)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator) for _ in range(2))
    product = torch.empty(n, n)
    source = torch.rand(copy_bytes // 4, generator=generator)
    target = torch.empty_like(source)
    with torch.inference_mode():
        times = interleaved_seconds({"matmul": lambda: torch.mm(a, b, out=product),
                                     "copy": lambda: target.copy_(source)},
                                    rounds=rounds, block_seconds=block_seconds)
    best = times.min()
    return Roofs(peak=float(n * n * (2 * n - 1) / best["matmul"]),
                 bandwidth=float(2 * source.numel() * 4 / best["copy"]), matmul_size=n,
                 copy_bytes=source.numel() * 4)


@torch.no_grad()
def layer_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """Every call of a module without children in one forward pass of ``x`` (in eval mode; the
    model's modes are restored afterwards), in order, with a copy of the arguments it received:
    ``(name, module, args)``. These are the rows of :func:`~book.counting.counter.count_ops`
    for a model whose arithmetic is all in such modules (LeNet-5 and its variants); a shared
    module called four times gives four calls."""
    calls = []

    def record(name: str):
        def hook(module, args):
            # copied before the call: an in-place activation overwrites its input
            calls.append((name, module, tuple(a.clone() if isinstance(a, torch.Tensor) else a
                                              for a in args)))
        return hook

    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    with eval_mode(model), forward_hooks([(m, record(n)) for n, m in leaves], pre=True):
        model(x)
    return calls


def layer_rates(models: Mapping[str, nn.Module], x: torch.Tensor, roofs: Roofs, *,
                rounds: int = 7, block_seconds: float = 0.005,
                counters: Mapping | None = None) -> pd.DataFrame:
    """Every layer call of every model of ``models`` (:func:`layer_calls`), timed on the input
    it sees in a forward pass of ``x``; all calls of all nets are interleaved
    (:func:`book.speed.timing.interleaved_seconds`), so they share the machine's slow spells.

    One row per call: ``net``, ``layer``, the :func:`~book.speed.timing.spread` of the rounds
    (seconds), the columns of :func:`book.speed.traffic.count_traffic` (bias additions and
    pooling counted, as the kernels do them; ``counters`` as there), ``rate`` and
    ``rate_median`` (operations per second at the best and at the median time) and ``of_roof``
    (``rate`` over the roofline's attainable rate at the call's intensity).
    """
    fns, keys = {}, []
    with torch.inference_mode():
        for net, model in models.items():
            for i, (name, module, args) in enumerate(layer_calls(model, x)):
                fns[f"{net}/{i}/{name}"] = lambda module=module, args=args: module(*args)
                keys.append((net, name))
        times = interleaved_seconds(fns, rounds=rounds, block_seconds=block_seconds)
    counts = pd.concat([count_traffic(model, tuple(x.shape), bias=True, pooling=True,
                                      counters=counters)
                        for model in models.values()], ignore_index=True)
    if [name for _, name in keys] != counts["layer"].tolist():
        raise ValueError("layer_rates: the layer calls and the count's rows differ; every "
                         "operation must run in a module without children")
    table = spread(times).reset_index(drop=True)
    table.insert(0, "net", [net for net, _ in keys])
    table.insert(1, "layer", counts.pop("layer"))
    table = pd.concat([table, counts], axis=1)
    table["rate"] = table["ops"] / table["min"]
    table["rate_median"] = table["ops"] / table["median"]
    table["of_roof"] = table["rate"] / roofs.attainable(table["intensity"])
    return table
