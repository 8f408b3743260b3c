"""What the book runs on: the device it picks, the CPU's instruction sets, dtype names.

One definition of each, so every chapter, test and benchmark makes the same choice.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

__all__ = ["cpu_flags", "default_device", "dtype_label"]


def default_device() -> torch.device:
    """The GPU when PyTorch sees one, else the CPU; nothing in the book requires a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype_label(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"``: the name the book's tables and figures use."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    return str(dtype).removeprefix("torch.")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (``/proc/cpuinfo``), e.g.
    ``avx512_bf16`` or ``amx_bf16``; empty where the file does not exist (not Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return frozenset()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()
