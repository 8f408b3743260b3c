"""Whether two classifiers differ on the same test set: McNemar's exact test (McNemar, 1947;
Appendix A1's equation ``a1-mcnemar``) and an interval for the difference in accuracy.

It measures the sampling noise of the test set only: a second training run of the same net
(another seed) varies too, and that variation is not in the p-value. A p-value that is not
small says the test set cannot tell the two apart, not that the difference is small;
:func:`difference_interval` gives the differences the same paired counts are consistent with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Disagreement", "difference_interval", "mcnemar_exact"]


@dataclass(frozen=True)
class Disagreement:
    """The digits that only one of two classifiers gets right, and the exact p-value."""

    only_a: int  # digits that ``a`` gets right and ``b`` wrong
    only_b: int  # digits that ``b`` gets right and ``a`` wrong
    p_value: float  # two-sided, exact; 1.0 when they never disagree


def _disagreements(right_a: torch.Tensor, right_b: torch.Tensor) -> tuple[int, int]:
    """``(only_a, only_b)``: the examples only ``a``, and only ``b``, gets right."""
    for name, right in (("right_a", right_a), ("right_b", right_b)):
        if not isinstance(right, torch.Tensor) or right.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool tensor (True where the classifier is "
                             f"right), got {getattr(right, 'dtype', type(right).__name__)}")
    if right_a.shape != right_b.shape:
        raise ValueError(f"right_a and right_b must score the same examples: shapes "
                         f"{tuple(right_a.shape)} and {tuple(right_b.shape)}")
    return int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())


def mcnemar_exact(right_a: torch.Tensor, right_b: torch.Tensor) -> Disagreement:
    """McNemar's exact test for two classifiers on the same examples: the two-sided p-value is
    twice the probability, under Binomial(only_a + only_b, 1/2), of a split at least as uneven.

    ``right_a``, ``right_b``: bool tensors of one shape, ``True`` where each classifier is
    right on that example. Raises ``ValueError`` for tensors that are not bool or that differ
    in shape.
    """
    only_a, only_b = _disagreements(right_a, right_b)
    n, k = only_a + only_b, min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1))  # exact integers: no underflow
    return Disagreement(only_a, only_b, min(1.0, 2 * tail / 2**n))


def difference_interval(right_a: torch.Tensor, right_b: torch.Tensor,
                        z: float = 1.96) -> tuple[float, float]:
    """Approximate confidence interval (``z = 1.96``: 95%) for accuracy(a) - accuracy(b) on the
    same ``N`` examples, from the paired counts: the difference is ``(only_a - only_b) / N``
    and its variance ``(only_a + only_b - (only_a - only_b)^2 / N) / N^2`` (each example
    contributes +1, -1 or 0). Same arguments and refusals as :func:`mcnemar_exact`."""
    only_a, only_b = _disagreements(right_a, right_b)
    n = right_a.numel()
    diff = only_a - only_b
    half = z * math.sqrt(max(only_a + only_b - diff**2 / n, 0.0)) / n
    return diff / n - half, diff / n + half
