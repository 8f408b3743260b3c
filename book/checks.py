"""Argument checks shared by the whole package: one wording for every bad argument.

Each check returns the value it accepted (as a plain Python number), so a caller can write
``self.n = positive_int("n", n)``; a bad value raises ``ValueError`` naming the argument and
what was expected.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["is_int", "non_negative_int", "positive_float", "positive_int"]


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for ``bool`` (``True`` is not a size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value) -> int:
    if not is_int(value) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def non_negative_int(name: str, value) -> int:
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def positive_float(name: str, value) -> float:
    """A finite number > 0 (``np.float32(0.01)`` is accepted and returned as a Python float)."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
