"""The costs of the aten writes whose arithmetic depends on their arguments.

``index_put`` and ``put`` with ``accumulate=True``, ``index_add``, ``scatter_add`` and ``scatter``
with a ``reduce`` add (or multiply) once per value written; without, they only move data. They
are priced here, by the number of values written, for :data:`book.counting.costs.COSTS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from book.counting.closed_forms import ELEMENTWISE, Parts, Uncountable

__all__ = ["accumulated_cost", "indexed_count"]


def indexed_count(x: torch.Tensor, indices) -> int:
    """How many elements ``x[indices]`` selects: the broadcast size of the index tensors times
    the dimensions they leave whole (a boolean mask selects as many as it holds ``True``)."""
    selected, whole, dims = [], 1, 0
    for index in indices:
        if index is None:
            whole *= x.shape[dims]
            dims += 1
        elif index.dtype in (torch.bool, torch.uint8):
            if index.is_meta:
                raise Uncountable("an accumulating write through a boolean mask is not counted "
                                  "on the meta device (its count depends on the mask's "
                                  "values); count on the CPU")
            selected.append((int(index.sum()),))
            dims += index.dim()
        else:
            selected.append(tuple(index.shape))
            dims += 1
    return math.prod(torch.broadcast_shapes(*selected)) * whole * math.prod(x.shape[dims:])


def accumulated_cost(count: Callable[[dict], int],
                     flag: str | None = None) -> Callable[[dict, object, object], Parts]:
    """A write that adds each value to its target when ``flag`` (an argument) is true, or, with
    no flag, that always adds (``index_add``, ``scatter_add``); ``count(arguments)`` is the
    number of values written. ``index_add``'s ``alpha != 1`` multiplies each value first;
    ``scatter``'s ``reduce="multiply"`` multiplies instead of adding."""

    def cost(a: dict, out, ctx) -> Parts:
        reduce = a.get("reduce")
        if flag is not None and not a.get(flag, False):
            return {}  # a plain write: moves data only
        n = count(a)
        if reduce == "multiply":
            return {ELEMENTWISE: {"mults": n}}
        if reduce not in (None, "add", "sum"):
            raise Uncountable(f"scatter with reduce={reduce!r} is not counted")
        return {ELEMENTWISE: {"adds": n, **({"mults": n} if a.get("alpha", 1) != 1 else {})}}

    return cost
