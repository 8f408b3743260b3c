"""The bytes each layer moves, beside the operations it does: memory traffic and intensity.

The roofline model (Williams, Waterman and Patterson, 2009) bounds a layer's speed by two
numbers of the machine, its peak arithmetic rate and its memory bandwidth, and one number of
the layer, its *arithmetic intensity*: operations per byte moved to or from memory. This
module gives the bytes. A layer must read its inputs and its weights and write its outputs at
least once, so its *compulsory traffic* is

    input bytes + weight bytes + output bytes,

each tensor counted once at its own element size (4 bytes in float32). Real traffic can be
larger (an input too big for the cache is read again for every output channel) or smaller (the
previous layer's output may still sit in the cache); the compulsory traffic is the amount no
implementation can avoid, the one a roofline places a layer by.

Per call of a module, as :func:`book.counting.counter.count_ops` makes its rows: *inputs* are the
tensors among the call's arguments, *weights* the module's parameters and floating-point
buffers (each once), *outputs* the tensors it returns. An in-place activation reads and writes
the same tensor, and both count: a pass over it reads every byte and writes every byte. The
traffic of a container's own arithmetic (a residual addition in a ``forward``) is refused
rather than guessed: its call's inputs and outputs are those of the whole block.
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
    """:func:`book.counting.counter.count_ops`'s table, one row per layer call, with the compulsory
    traffic of each call beside its operations.

    Added columns: :data:`TRAFFIC_COLUMNS` (bytes of the inputs read, the weights and buffers
    read, the outputs written), ``bytes`` (their sum), ``ops`` (the sum of the
    :data:`~book.counting.counter.OP_KINDS` counted with ``bias`` and ``pooling`` as in
    ``count_ops``) and ``intensity`` (``ops / bytes``, operations per byte).
    ``inputs`` and ``counters`` (modules counted as one unit) as in ``count_ops``; a shape
    gives a zero tensor of the model's dtype, so a float32 model gives float32 bytes. Raises
    ``ValueError`` for a row of a container's own arithmetic (see the module docstring).
    """
    calls: list[tuple[str, nn.Module, int, int]] = []  # name, module, input and output bytes
    starts: list[int] = []

    def pre_hook(module, args, kwargs):
        starts.append(len(calls))
        calls.append(None)  # placeholder: the call's row, filled when it returns
        return None

    def hook(name: str):
        def record(module, args, kwargs, output):
            row = starts.pop()
            calls[row] = (name, module, _bytes(_tensors((args, kwargs))),
                          _bytes(_tensors(output)))
        return record

    modules = list(model.named_modules())
    with (forward_hooks([(m, pre_hook) for _, m in modules], pre=True, with_kwargs=True),
          forward_hooks([(m, hook(name)) for name, m in modules], with_kwargs=True)):
        table = count_ops(model, inputs, bias=bias, pooling=pooling, counters=counters)

    by_name: dict[str, list[tuple[nn.Module, int, int]]] = {}
    for name, module, read, written in calls:
        by_name.setdefault(name, []).append((module, read, written))
    seen: dict[str, int] = {}
    traffic = []
    for layer in table["layer"]:
        module, read, written = by_name[layer][seen.get(layer, 0)]
        seen[layer] = seen.get(layer, 0) + 1
        if next(module.children(), None) is not None and counter_for(
                module, counters or {}) is None:
            raise ValueError(
                f"layer {layer!r} ({type(module).__name__}) does arithmetic in its own forward; "
                "its traffic is not counted (the call's inputs and outputs are the whole "
                "block's). Count it as one unit: count_traffic(model, inputs, "
                f"counters={{{type(module).__name__}: counter}})")
        traffic.append((read, _weight_bytes(module), written))
    table[list(TRAFFIC_COLUMNS)] = pd.DataFrame(traffic, index=table.index, dtype="int64")
    table["bytes"] = table[list(TRAFFIC_COLUMNS)].sum(axis=1)
    table["ops"] = table[list(OP_KINDS)].sum(axis=1)
    table["intensity"] = table["ops"] / table["bytes"]
    return table
