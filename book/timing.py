"""Wall-clock timing with ``torch.utils.benchmark``: the median of repeated measurements."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

__all__ = ["benchmark_module", "median_seconds"]


def benchmark_module():
    """``torch.utils.benchmark``, imported without its irrelevant CUDA-toolkit warning."""
    # Importing torch.utils.benchmark makes torch.utils.cpp_extension log a warning when no
    # CUDA toolkit is installed; it is irrelevant to timing and would land in stored outputs.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def median_seconds(fn: Callable[[], object], min_run_time: float = 1.0) -> float:
    """Median seconds per call of ``fn()``, from blocks of calls run for ``min_run_time`` s.

    ``torch.utils.benchmark`` synchronises CUDA around each block and uses the current number
    of threads, so CPU and GPU timings are comparable with the rest of the book.
    """
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be positive, got {min_run_time!r}")
    timer = benchmark_module().Timer(stmt="fn()", globals={"fn": fn},
                               num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median
