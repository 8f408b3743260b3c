"""Exact operation counts of one forward pass, layer by layer, with nothing left out.

:func:`count_ops` runs the model once and sees every aten operator it runs, as
``torch.utils.flop_counter.FlopCounterMode`` does, whether the arithmetic sits in a layer, in
a ``forward`` body or in a fused kernel. Each operator is priced by the table of
:mod:`book.counting.costs` and attributed to the innermost module that ran it; an operator the
table does not know, or a module with parameters whose call ran no counted operator, raises
:class:`UncountedOperationError` naming it: nothing is ever counted as zero by default. With
``bias`` and ``pooling`` off (the defaults) the counts reproduce the earlier student report's
totals for LeNet-5. The model may live on the ``meta`` device.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from book.checks import is_int
from book.counting.closed_forms import BIAS, POOLING, conv2d_ops, conv_output_size, linear_ops
from book.counting.costs import COSTS, ZERO_COST, Uncountable
from book.inspection import eval_mode, forward_hooks

__all__ = [
    "OP_KINDS", "Counter", "UncountedOperationError", "closed_form_ops", "count_operators",
    "count_ops", "counter_for", "pytorch_flops",
]

OP_KINDS = ("mults", "adds", "divs", "exps", "sqrts", "comparisons")
COLUMNS = ("layer", "kind", "output_shape", *OP_KINDS)
OPERATOR_COLUMNS = ("layer", "kind", "operator", "category", *OP_KINDS)
# A bias parameter's name: "bias", "in_proj_bias", nn.RNN's "bias_ih_l0", attention's "bias_k".
_BIAS_NAME = re.compile(r"(.*bias|bias_.*)")

Counter = Callable[..., dict]  # (module, inputs, output, *, bias, pooling) -> {kind: count}
_HOW_TO_COUNT = ("add its cost to book.counting.costs.COSTS (or, if it does no arithmetic, its "
                 "name to ZERO_COST), or count the module as one unit: count_ops(model, inputs, "
                 "counters={ModuleType: counter})")


class UncountedOperationError(RuntimeError):
    """Arithmetic that would otherwise go uncounted: an operator :mod:`book.counting.costs` does
    not know, or a module with parameters whose call counted nothing."""


# --------------------------------------------------------------------------- counters

def _checked_counters(counters: Mapping | None) -> dict[type, Counter]:
    """``counters`` as a dict from nn.Module subclasses to callables; ``TypeError`` otherwise."""
    if counters is None:
        return {}
    if not isinstance(counters, Mapping):
        raise TypeError("counters: expected a mapping from nn.Module subclasses to counters, "
                        f"got {type(counters).__name__}")
    for t, fn in counters.items():
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"counters: expected nn.Module subclasses as keys, got {t!r}")
        if not callable(fn):
            raise TypeError(f"counters: the counter for {t.__name__} is not callable: {fn!r}")
    return dict(counters)


def counter_for(module: nn.Module, counters: Mapping[type, Counter]) -> Counter | None:
    """The counter of ``counters`` that counts ``module`` as one unit, or None.

    A counter ``fn(module, inputs, output, *, bias, pooling)`` returns a dict from a subset of
    :data:`OP_KINDS` to int counts for the whole batch of that call. A subclass inherits its
    base's counter unless it defines its own ``forward`` (then it does something the counter
    does not know, and is counted operator by operator).
    """
    for cls in type(module).__mro__:
        if cls in counters:
            return counters[cls]
        if "forward" in cls.__dict__:  # a forward of its own that no counter has seen
            return None
    return None


# --------------------------------------------------------------------------- one traced pass

@dataclass(slots=True)
class _Call:
    """One running module call."""

    name: str
    module: nn.Module
    row: list | None = None  # its row of the table, once it has one
    unit: Counter | None = None  # the counter counting this call as one unit
    counted: bool = False  # a counted operator ran in this call (or in one inside it)


class _Trace(TorchDispatchMode):
    """The rows of one forward pass and the operators behind them, seen as a dispatch mode.
    The cost functions of :mod:`book.counting.costs` receive it as their context
    (``is_bias``, ``module``)."""

    def __init__(self, model: nn.Module, bias: bool, pooling: bool,
                 counters: dict[type, Counter]) -> None:
        super().__init__()
        self.bias, self.pooling, self.counters = bias, pooling, counters
        self.left_out = {c for c, counted in ((BIAS, bias), (POOLING, pooling)) if not counted}
        self.stack: list[_Call] = []
        self.units = 0  # modules counted as units running: what runs inside them is theirs
        self.rows: list[list] = []  # [layer, kind, output_shape, *counts]
        self.operators: list[tuple] = []  # OPERATOR_COLUMNS
        # bias parameters, and the views and copies of them made during the pass, by id
        self.biases = {id(p): p for name, p in model.named_parameters()
                       if _BIAS_NAME.fullmatch(name.rsplit(".", 1)[-1])}

    @property
    def module(self) -> nn.Module | None:
        """The innermost running module."""
        return self.stack[-1].module if self.stack else None

    def is_bias(self, t) -> bool:
        return self.biases.get(id(t)) is t

    def new_row(self, call: _Call) -> list:
        call.row = [call.name, type(call.module).__name__, (), *([0] * len(OP_KINDS))]
        self.rows.append(call.row)
        return call.row

    def add(self, call: _Call, operator: str, category: str, counts: dict) -> None:
        row = call.row if call.row is not None else self.new_row(call)
        for i, kind in enumerate(OP_KINDS, start=3):
            row[i] += counts.get(kind, 0)
        self.operators.append((call.name, type(call.module).__name__, operator, category,
                               *(counts.get(k, 0) for k in OP_KINDS)))

    # forward hooks -----------------------------------------------------------------------

    def enter(self, name: str, module: nn.Module, args: tuple, leaf: bool) -> None:
        call = _Call(name, module)
        self.stack.append(call)
        if self.units:
            call.counted = True  # inside a module counted as a unit: counted there
            return
        call.unit = counter_for(module, self.counters)
        if call.unit is not None:
            self.units += 1
        if call.unit is not None or leaf:
            self.new_row(call)  # a leaf has a row even when it counts zero (ReLU, Dropout)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            _check_conv_input(name, module, args)

    def leave(self, module: nn.Module, args: tuple, output, has_parameters: bool) -> None:
        call = self.stack.pop()
        if call.unit is not None:
            self.units -= 1
            counts = _checked_counts(call.unit, call.name, module, args, output, self.bias,
                                     self.pooling)
            self.add(call, f"counter {getattr(call.unit, '__name__', repr(call.unit))}",
                     "counted as a unit", counts)
            call.counted = True
        if call.row is not None:
            out = _first_tensor(output)
            call.row[2] = tuple(out.shape) if out is not None else ()
        if has_parameters and not call.counted:
            raise UncountedOperationError(
                f"{_label(call.name, module)} holds parameters but ran no counted operator; "
                "rather than count it as zero, count it as one unit: count_ops(model, inputs, "
                f"counters={{{type(module).__name__}: counter}})")
        if call.counted and self.stack:
            self.stack[-1].counted = True

    # operators ---------------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.units:  # inside a module counted as a unit
            return func(*args, **kwargs)
        cost, name = _cost_of(func)
        call = self.stack[-1] if self.stack else None
        if cost is None or call is None:
            where = _label(call.name, call.module) if call else "no module (a hook?)"
            raise UncountedOperationError(
                f"{func} ran in {where}, and book.counting.costs has no cost for it. It is "
                f"refused rather than counted as zero: {_HOW_TO_COUNT}")
        out = func(*args, **kwargs)
        if cost is _MOVES:
            if args and self.is_bias(args[0]) and isinstance(out, torch.Tensor):
                self.biases[id(out)] = out  # a view or copy of a bias is a bias
            self.operators.append((call.name, type(call.module).__name__, name,
                                   "data movement", *([0] * len(OP_KINDS))))
            return out
        try:
            parts = cost(_named(func, args, kwargs), out, self)
        except Uncountable as why:
            raise UncountedOperationError(f"{func} in {_label(call.name, call.module)}: "
                                          f"{why}") from None
        call.counted = True
        if call.row is None:
            self.new_row(call)  # a container doing arithmetic in its own forward
        for category, counts in parts.items():
            if category not in self.left_out:
                self.add(call, name, category, counts)
        return out


_MOVES = object()  # the cost of a zero-cost operator
_COSTS_BY_OP: dict = {}  # operator -> (cost, name), for the operators found in the table
_NAMES: dict = {}


def _cost_of(func) -> tuple:
    """``(cost function, "aten.name")`` of an operator; the cost is ``_MOVES`` for a zero-cost
    operator and None for one the table does not know (looked up again next time, so that a
    cost added to the table later is found)."""
    if func in _COSTS_BY_OP:
        return _COSTS_BY_OP[func]
    name = func.overloadpacket.__name__
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]  # in-place: add_ costs what add costs
    cost = None if func.namespace != "aten" else _MOVES if name in ZERO_COST else COSTS.get(name)
    if cost is not None:
        _COSTS_BY_OP[func] = (cost, str(func.overloadpacket))
    return cost, str(func.overloadpacket)


def _named(func, args: tuple, kwargs: dict) -> dict:
    """The operator's arguments by the names of its schema."""
    if func not in _NAMES:
        _NAMES[func] = [a.name for a in func._schema.arguments]
    named = dict(zip(_NAMES[func], args, strict=False))
    named.update(kwargs)
    return named


def _trace(model: nn.Module, inputs, bias: bool, pooling: bool, counters) -> _Trace:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    args = _make_inputs(model, inputs)
    trace = _Trace(model, bias, pooling, _checked_counters(counters))
    enter, leave = [], []
    for name, module in model.named_modules():
        leaf = next(module.children(), None) is None
        own = next(module.parameters(recurse=False), None) is not None
        enter.append((module, lambda m, a, name=name, leaf=leaf: trace.enter(name, m, a, leaf)))
        leave.append((module, lambda m, a, out, own=own: trace.leave(m, a, out, own)))
    with forward_hooks(enter, pre=True), forward_hooks(leave):
        _run_once(model, args, trace)
    return trace


def _table(rows: list, columns: tuple):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(columns)).astype({k: "int64" for k in OP_KINDS})


def count_ops(model: nn.Module, inputs, *, bias: bool = False, pooling: bool = False,
              counters: Mapping[type[nn.Module], Counter] | None = None):
    """Count the operations of one forward pass, layer by layer.

    ``inputs``: a shape (``torch.zeros`` of it in the model's dtype and device), a Tensor, or a
    tuple of positional arguments. The model runs once in eval mode under ``torch.no_grad``
    (its training flags restored afterwards). ``bias=True`` adds one addition per output of
    every layer with a bias (and of every addition of a bias parameter); ``pooling=True``
    counts pooling layers; a module type in ``counters`` is counted as one unit by its counter
    (:func:`counter_for`; nothing inside it is counted again). Returns a DataFrame with the
    columns ``layer``, ``kind`` (the module's class), ``output_shape`` (of its first Tensor
    output) and the :data:`OP_KINDS`, for the whole batch, one row per call in execution
    order: of every module without children (ReLU rows hold zeros) or counted as a unit, and
    of every container whose own ``forward`` ran arithmetic (a residual addition), holding
    that arithmetic alone.

    Raises :class:`UncountedOperationError` as the module docstring says; ``ValueError`` for a
    bad ``inputs`` or a kernel larger than its padded input; ``TypeError`` for bad
    ``counters``.
    """
    return _table(_trace(model, inputs, bias, pooling, counters).rows, COLUMNS)


def count_operators(model: nn.Module, inputs, *, bias: bool = False, pooling: bool = False,
                    counters: Mapping[type[nn.Module], Counter] | None = None):
    """The operators behind :func:`count_ops`: one row per aten operator call and category of
    its cost (a fused attention kernel gives rows of products, elementwise arithmetic and
    softmax), with the columns ``layer``, ``kind``, ``operator`` (``aten.addmm``),
    ``category`` (one of :data:`book.counting.closed_forms.CATEGORIES`, ``"data movement"`` for
    the zero-cost operators, ``"counted as a unit"`` for a row of one of ``counters``) and the
    :data:`OP_KINDS`. Summed over the rows, the counts are those of :func:`count_ops`."""
    return _table(_trace(model, inputs, bias, pooling, counters).operators, OPERATOR_COLUMNS)


def _first_tensor(value) -> torch.Tensor | None:
    return next((t for t in tree_leaves(value) if isinstance(t, torch.Tensor)), None)


def _make_inputs(model: nn.Module, inputs) -> tuple:
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    elif isinstance(inputs, (tuple, list, torch.Size)) and inputs and all(map(is_int, inputs)):
        shape = tuple(int(s) for s in inputs)
        if min(shape) <= 0:
            raise ValueError(f"inputs: every size of the shape must be positive, got {shape}")
        param = next((p for p in model.parameters() if p.is_floating_point()), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        return (torch.zeros(shape, dtype=dtype, device=device),)
    if not (isinstance(inputs, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in inputs)):
        raise ValueError("inputs: expected a shape (a non-empty sequence of positive ints), a "
                         f"Tensor or a tuple of positional arguments with Tensors, got {inputs!r}")
    for t in inputs:
        if isinstance(t, torch.Tensor) and t.numel() == 0:
            raise ValueError(f"inputs: a Tensor has a zero size: shape {tuple(t.shape)}")
    return tuple(inputs)


def _label(name: str, module: nn.Module) -> str:
    kind = type(module).__name__
    return f"layer {name!r} ({kind})" if name else f"the model ({kind})"


def _check_conv_input(name: str, module: nn.Module, inputs: tuple) -> None:
    """A kernel larger than the padded input is a bad argument: say so before PyTorch does."""
    dims = len(module.kernel_size)
    x = inputs[0] if inputs else None
    if not isinstance(x, torch.Tensor) or x.dim() < dims + 1 or module.padding == "same":
        return
    padding = 0 if module.padding == "valid" else module.padding
    try:
        conv_output_size(tuple(x.shape[-dims:]), module.kernel_size, stride=module.stride,
                         padding=padding, dilation=module.dilation)
    except ValueError as error:
        raise ValueError(f"{_label(name, module)}: {error}") from None


def _checked_counts(counter, name, module, args, output, bias, pooling) -> dict:
    counts = counter(module, args, output, bias=bias, pooling=pooling)
    fn_name = getattr(counter, "__name__", repr(counter))
    where = f"the counter {fn_name!r} for {_label(name, module)}"
    if not isinstance(counts, dict) or not set(counts) <= set(OP_KINDS):
        raise TypeError(f"{where} must return a dict with keys from {OP_KINDS}, got {counts!r}")
    for kind, value in counts.items():
        if not is_int(value) or value < 0:
            raise ValueError(f"{where} returned {kind}={value!r}; expected a non-negative int")
    return {k: int(v) for k, v in counts.items()}


def _run_once(model: nn.Module, args: tuple, context) -> None:
    """One forward pass in eval mode under ``torch.no_grad`` and ``context``; the training
    flags of every module are restored afterwards."""
    with eval_mode(model), torch.no_grad(), context:
        model(*args)


def pytorch_flops(model: nn.Module, inputs) -> dict[str, int]:
    """PyTorch's own FLOP count (``torch.utils.flop_counter.FlopCounterMode``) of one forward
    pass, by qualified module name (``""`` is the whole model). It counts a multiply-add as 2
    FLOPs and ignores bias, activations and pooling, so for convolutions and linear layers
    it is exactly twice our multiplications."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    _run_once(model, _make_inputs(model, inputs), counter)
    root = type(model).__name__
    flops = {}
    for key, per_op in counter.get_flop_counts().items():
        if key == root or key.startswith(root + "."):
            flops[key[len(root) + 1:]] = int(sum(per_op.values()))
    flops[""] = int(counter.get_total_flops())
    return flops


def closed_form_ops(model: nn.Module, inputs, *, bias: bool = False):
    """:func:`conv2d_ops` and :func:`linear_ops` of every ``nn.Conv2d`` and ``nn.Linear`` call,
    from the layer's hyper-parameters and the input size it received (a pre-hook records it):
    the output size comes from the formula, not from PyTorch. Columns ``layer``, ``mults``,
    ``adds``, one row per call in execution order."""
    import pandas as pd

    rows = []

    def record(name):
        def hook(module, args):
            x = args[0]
            with_bias = bias and module.bias is not None
            if isinstance(module, nn.Linear):
                ops = linear_ops(module.in_features, module.out_features, bias=with_bias,
                                 batch=x.numel() // x.shape[-1])
            else:
                ops = conv2d_ops(module.in_channels, module.out_channels, tuple(x.shape[-2:]),
                                 module.kernel_size, stride=module.stride,
                                 padding=module.padding, dilation=module.dilation,
                                 groups=module.groups, bias=with_bias,
                                 batch=x.shape[0] if x.dim() == 4 else 1)
            rows.append((name, ops["mults"], ops["adds"]))
        return hook

    args = _make_inputs(model, inputs)
    hooks = [(module, record(name)) for name, module in model.named_modules()
             if type(module) in (nn.Conv2d, nn.Linear)]
    _run_once(model, args, forward_hooks(hooks, pre=True))
    return pd.DataFrame(rows, columns=["layer", "mults", "adds"])
