"""What the book runs on: the device it picks, the CPU's instruction sets, dtype names, and the
setup table of the root page (:func:`setup`).

One definition of each, so every chapter, test and benchmark makes the same choice.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

__all__ = ["cpu_flags", "cpu_model", "default_device", "dtype_label", "setup"]


def default_device() -> torch.device:
    """The GPU when PyTorch sees one, else the CPU; nothing in the book requires a GPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype_label(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"``: the name the book's tables and figures use."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    return str(dtype).removeprefix("torch.")


def _cpuinfo(field: str) -> str | None:
    """The first ``field : value`` of ``/proc/cpuinfo``, or None (no such file: not Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(field):
            return line.partition(":")[2].strip()
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (``/proc/cpuinfo``), e.g.
    ``avx512_bf16`` or ``amx_bf16``; empty where the file does not exist (not Linux)."""
    flags = _cpuinfo("flags")
    return frozenset(flags.split()) if flags else frozenset()


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``), else what Python's
    ``platform`` module reports, else ``"unknown"``."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


def setup() -> dict[str, str]:
    """What the book's numbers were computed on, read from this machine when it is called: the
    CPU and how many cores the process may use, the threads torch computes with, the versions
    of Python, torch and torchvision, and the GPU (or that there is none)."""
    import torchvision  # only here: the rest of the package does not need it to import

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = (f"{torch.cuda.get_device_name(0)} (used)" if torch.cuda.is_available()
           else "none (everything runs on the CPU)")
    return {"CPU": cpu_model(), "cores available": str(cores),
            "torch threads": str(torch.get_num_threads()),
            "Python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "GPU": gpu}
