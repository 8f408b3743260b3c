"""The bytes each layer moves, beside the operations it does: memory traffic and intensity.

A layer must read its inputs and weights and write its outputs at least once; this
*compulsory traffic* (each tensor once, at its own element size) is what no implementation can
avoid, and what the roofline (:mod:`book.speed.roofline`) places a layer by, at its
*arithmetic intensity*, operations per byte. Real traffic can be larger (an input too big for
the cache is read again) or smaller (the previous output may still be cached). An in-place
activation reads and writes the same tensor, and both count. The traffic of a container's own
arithmetic (a residual addition in a ``forward``) is refused rather than guessed: its call's
inputs and outputs are those of the whole block.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from book.counting.counter import OP_KINDS, count_ops, counter_for
from book.inspection import forward_hooks

__all__ = ["TRAFFIC_COLUMNS", "count_traffic"]

TRAFFIC_COLUMNS = ("input_bytes", "weight_bytes", "output_bytes")


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _weight_bytes(module: nn.Module) -> int:
    # Floating-point buffers are read (a batch norm's running statistics); a counter such as
    # num_batches_tracked is not.
    buffers = (b for b in module.buffers() if b.is_floating_point())
    unique = {id(t): t for t in (*module.parameters(), *buffers)}
    return _bytes(unique.values())


def count_traffic(model: nn.Module, inputs, *, bias: bool = False, pooling: bool = False,
                  counters=None) -> pd.DataFrame:
    """:func:`book.counting.counter.count_ops`'s table (same arguments), one row per layer call,
    with the compulsory traffic of each call beside its operations.

    Added columns: :data:`TRAFFIC_COLUMNS` (bytes of the call's tensor arguments, of the
    module's parameters and floating-point buffers, of the tensors it returns), ``bytes``
    (their sum), ``ops`` (the sum of the :data:`~book.counting.counter.OP_KINDS`) and
    ``intensity`` (``ops / bytes``). A shape as ``inputs`` gives a zero tensor of the model's
    dtype, so a float32 model gives float32 bytes. Raises ``ValueError`` for a row of a
    container's own arithmetic.
    """
    calls: dict[str, list[tuple[int, int]]] = {}  # per layer: bytes read and written, per call

    def hook(name: str):
        def record(module, args, kwargs, output):
            read, written = _bytes(_tensors((args, kwargs))), _bytes(_tensors(output))
            calls.setdefault(name, []).append((read, written))
        return record

    modules = dict(model.named_modules())
    with forward_hooks([(m, hook(name)) for name, m in modules.items()], with_kwargs=True):
        table = count_ops(model, inputs, bias=bias, pooling=pooling, counters=counters)

    traffic = []
    for layer in table["layer"]:
        module = modules[layer]
        if next(module.children(), None) is not None and counter_for(
                module, counters or {}) is None:
            raise ValueError(
                f"layer {layer!r} ({type(module).__name__}) does arithmetic in its own forward; "
                "its traffic is not counted (the call's inputs and outputs are the whole "
                "block's). Count it as one unit: count_traffic(model, inputs, "
                f"counters={{{type(module).__name__}: counter}})")
        read, written = calls[layer].pop(0)  # a module called twice: its calls in order
        traffic.append((read, _weight_bytes(module), written))
    table[list(TRAFFIC_COLUMNS)] = pd.DataFrame(traffic, index=table.index, dtype="int64")
    table["bytes"] = table[list(TRAFFIC_COLUMNS)].sum(axis=1)
    table["ops"] = table[list(OP_KINDS)].sum(axis=1)
    table["intensity"] = table["ops"] / table["bytes"]
    return table
