"""Wall-clock timing: interleaved comparisons of repeated measurements, and their spread.

On a shared machine the speed of the CPU changes from second to second. Timing one network
for a second and then another for a second compares two different machines;
:func:`interleaved_seconds` times the contenders in alternation (A, B, A, B, ...), so a slow
spell falls on all of them alike, and repeats the rounds so the spread can be reported.
:func:`median_seconds` times one statement with ``torch.utils.benchmark``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping

import pandas as pd
import torch

from book.checks import positive_float, positive_int
from book.inspection import eval_mode

__all__ = ["forward_seconds", "interleaved_seconds", "median_seconds", "spread", "threads"]


def median_seconds(stmt: str, *, min_run_time: float, **names) -> float:
    """Median seconds of one run of the Python statement ``stmt`` (``names``: its variables;
    ``torch`` is always there), by ``torch.utils.benchmark``'s ``blocked_autorange`` over at
    least ``min_run_time`` seconds."""
    # Importing torch.utils.benchmark makes torch.utils.cpp_extension log a warning when no
    # CUDA toolkit is installed; it is irrelevant to timing and would land in stored outputs.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    timer = benchmark.Timer(stmt=stmt, globals=names)
    return timer.blocked_autorange(min_run_time=min_run_time).median


def _block(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls in a row."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / number


def interleaved_seconds(fns: Mapping[str, Callable[[], object]], *, rounds: int = 10,
                        block_seconds: float = 0.02) -> pd.DataFrame:
    """Seconds per call of every function of ``fns``, measured in interleaved rounds.

    Each function is called once to warm up, then calibrated: a *block* is as many calls in a
    row as last about ``block_seconds`` (at least one). In each of ``rounds`` rounds every
    function runs one block, in the order of ``fns`` in even rounds and the reverse order in
    odd ones, so neither position in a round is favoured. Returns a DataFrame with one row per
    round and one column per name (seconds per call, float). The ratio of two columns row by
    row compares two functions timed a moment apart, on the same machine state.
    """
    positive_int("rounds", rounds)
    positive_float("block_seconds", block_seconds)
    if not fns:
        raise ValueError("fns: give at least one function to time")
    numbers = {}
    for name, fn in fns.items():
        fn()  # warm-up: first-call allocations and kernel selection are not measured
        once = _block(fn, 1)
        numbers[name] = max(1, round(block_seconds / max(once, 1e-9)))
    names = list(fns)
    rows = []
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        rows.append({name: _block(fns[name], numbers[name]) for name in order})
    return pd.DataFrame(rows, columns=names).rename_axis("round")


def forward_seconds(models: Mapping[str, torch.nn.Module], x: torch.Tensor, *,
                    rounds: int = 10, block_seconds: float = 0.02) -> pd.DataFrame:
    """Seconds per forward pass of ``x`` through each model of ``models`` (eval mode,
    inference mode), timed interleaved by :func:`interleaved_seconds`: one row per round, one
    column per model. The models keep their training flags afterwards."""
    fns = {name: (lambda model=model: model(x)) for name, model in models.items()}
    with eval_mode(*models.values()), torch.inference_mode():
        return interleaved_seconds(fns, rounds=rounds, block_seconds=block_seconds)


def spread(seconds: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles, minimum and maximum of every column of ``seconds`` (from
    :func:`interleaved_seconds`, or any table of repeated measurements): one row per column."""
    return pd.DataFrame({"median": seconds.median(), "q1": seconds.quantile(0.25),
                         "q3": seconds.quantile(0.75), "min": seconds.min(),
                         "max": seconds.max()})


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the earlier number after.

    One thread makes timings on a shared machine trustworthy: a kernel split over two
    threads waits at its end for the slower one, and when the machine is busy that thread may
    not be scheduled for milliseconds, a wait the measurement would charge to the kernel.
    """
    positive_int("n", n)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
