"""Exact multiplication and addition counts: by forward hooks, and in closed form.

The book's own convention, with ``bias`` and ``pooling`` as the switches between its variants
(both off, the default, gives the earlier report's numbers): one output element of a
convolution needs ``C_in/groups * K_h * K_w`` multiplications and one fewer additions
(equation opc-conv), one output of a linear layer ``in_features`` multiplications and
``in_features - 1`` additions. ``bias=True`` adds one addition per output element of every
layer that has a bias. ``pooling=True`` counts a ``k x k`` average pool as ``k*k - 1``
additions and one multiplication (by ``1/k^2``) per output, a max pool as ``k*k - 1``
comparisons; with ``pooling=False`` pooling layers are listed with zeros, like the
activations, which always count zero. Padded positions are counted like any other, as the
hardware does them. All counts are for the whole batch of the forward pass.

:func:`count_ops` counts from the shapes one forward pass actually produced; :func:`conv2d_ops`,
:func:`linear_ops` and :func:`pool2d_ops` are the closed forms it must agree with, and
:func:`pytorch_flops` is PyTorch's own count (``FlopCounterMode``: FLOPs = 2 x multiplications
for convolutions and linear layers). Part d's maps are in :mod:`book.separable_map`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from book.checks import is_int, positive_int

__all__ = [
    "OP_KINDS",
    "closed_form_ops",
    "conv2d_ops",
    "conv_output_size",
    "count_conv",
    "count_linear",
    "count_ops",
    "int_tuple",
    "linear_ops",
    "pool2d_ops",
    "pytorch_flops",
    "register_counter",
    "summarize",
]

OP_KINDS = ("mults", "adds", "divs", "exps", "sqrts", "comparisons")
COLUMNS = ("layer", "kind", "output_shape", *OP_KINDS)

Counter = Callable[..., dict]
_COUNTERS: dict[type, Counter] = {}


# --------------------------------------------------------------------------- registry

def register_counter(*module_types: type[nn.Module]) -> Callable[[Counter], Counter]:
    """Decorator: count the modules of ``module_types`` with ``fn``.

    ``fn(module, inputs, output, *, bias, pooling)`` returns a dict from a subset of
    :data:`OP_KINDS` to int counts for the whole batch of that call. A module whose type has a
    counter is counted as one unit: its children are not counted again. A later registration
    for the same type replaces the earlier one. Subclasses inherit the counter unless they
    define their own ``forward`` (then they do something the counter does not know).
    """
    if not module_types:
        raise ValueError("register_counter: give at least one nn.Module subclass")
    for t in module_types:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"register_counter: expected nn.Module subclasses, got {t!r}")

    def decorator(fn: Counter) -> Counter:
        for t in module_types:
            _COUNTERS[t] = fn
        return fn

    return decorator


def _counter_for(module: nn.Module) -> Counter | None:
    for cls in type(module).__mro__:
        if cls in _COUNTERS:
            return _COUNTERS[cls]
        if "forward" in cls.__dict__:  # a forward of its own that no counter has seen
            return None
    return None


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


@register_counter(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def count_conv(module, inputs, output, *, bias, pooling):
    per_output = module.in_channels // module.groups * math.prod(module.kernel_size)  # (opc-conv)
    n = output.numel()  # N * C_out * (output positions)
    has_bias = bias and module.bias is not None
    return {"mults": n * per_output, "adds": n * (per_output - 1) + (n if has_bias else 0)}


@register_counter(nn.Linear)
def count_linear(module, inputs, output, *, bias, pooling):
    n = output.numel()  # N * ... * out_features
    has_bias = bias and module.bias is not None
    return {"mults": n * module.in_features,
            "adds": n * (module.in_features - 1) + (n if has_bias else 0)}


_POOL_DIMS = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
              nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}


def _window_total(module, inputs, output) -> int:
    """Sum over all outputs of the size of their pooling window. An adaptive pool's windows
    vary in size; a fixed pool's ``kernel_size`` may be one int for every dimension."""
    kernel = getattr(module, "kernel_size", None)
    if kernel is None:  # adaptive
        dims = output.dim() - 2 if output.dim() > 2 else 1
        per_plane = 1
        for n_in, n_out in zip(inputs[0].shape[-dims:], output.shape[-dims:], strict=True):
            # PyTorch's window i is [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))
            per_plane *= sum(-((-(i + 1) * n_in) // n_out) - (i * n_in) // n_out
                             for i in range(n_out))
        return per_plane * (output.numel() // math.prod(output.shape[-dims:]))
    if not isinstance(kernel, tuple):
        kernel = (kernel,) * next(d for cls, d in _POOL_DIMS.items() if isinstance(module, cls))
    return output.numel() * math.prod(kernel)


@register_counter(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                  nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _count_avg_pool(module, inputs, output, *, bias, pooling):
    if not pooling:
        return {}
    n = output.numel()  # one multiplication by 1/(window size) per output
    return {"adds": _window_total(module, inputs, output) - n, "mults": n}


@register_counter(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                  nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
def _count_max_pool(module, inputs, output, *, bias, pooling):
    if not pooling:
        return {}
    return {"comparisons": _window_total(module, inputs, output) - output.numel()}


@register_counter(
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish,
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Embedding,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
def _count_zero(module, inputs, output, *, bias, pooling):
    """Activations count zero by the book's convention; the others do no arithmetic
    (dropout is the identity at inference, an embedding is a table lookup)."""
    return {}


# --------------------------------------------------------------------------- hook-based count

# aten ops that do arithmetic on data: refused outside a counted module. Views, copies,
# concatenation, indexing, masking, comparisons and factory functions are allowed.
_ARITHMETIC = frozenset("""
    add sub rsub mul div true_divide floor_divide remainder fmod neg reciprocal pow square
    sqrt rsqrt exp exp2 expm1 log log2 log10 log1p sin cos erf abs
    softmax _softmax _safe_softmax log_softmax _log_softmax
    relu relu6 gelu silu mish elu leaky_relu hardtanh hardswish hardsigmoid sigmoid tanh softplus
    clamp clamp_min clamp_max clip maximum minimum max min amax amin
    sum mean prod cumsum cumprod var var_mean std std_mean norm linalg_vector_norm
    mm bmm addmm addbmm baddbmm addmv mv dot vdot matmul linear einsum tensordot
    convolution _convolution conv1d conv2d conv3d cudnn_convolution mkldnn_convolution
    native_layer_norm layer_norm native_batch_norm _native_batch_norm_legit
    _native_batch_norm_legit_no_training batch_norm native_group_norm group_norm
    rms_norm _fused_rms_norm addcmul addcdiv lerp
    avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d
    max_pool2d_with_indices max_pool3d_with_indices adaptive_avg_pool1d adaptive_avg_pool2d
    _adaptive_avg_pool2d _adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d
    scaled_dot_product_attention _scaled_dot_product_attention_math
    _scaled_dot_product_flash_attention _scaled_dot_product_flash_attention_for_cpu
    _scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention
""".split())


def _is_arithmetic(func) -> bool:
    return func.namespace == "aten" and func.overloadpacket.__name__.rstrip("_") in _ARITHMETIC


class _State:
    def __init__(self) -> None:
        self.depth = 0  # how many counted modules are running now
        self.stack: list[str] = []  # modules entered, innermost last (for error messages)
        self.rows: list[tuple] = []


class _ArithmeticGuard(TorchDispatchMode):
    """Refuses arithmetic that runs outside every counted module, where it would be missed."""

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.state.depth == 0 and _is_arithmetic(func):
            where = self.state.stack[-1] if self.state.stack else "(outside the model)"
            raise RuntimeError(
                f"{func} ran in the forward of {where}, outside every counted module, so it "
                "would not be counted: move it into a module and register a counter for that "
                "module type with book.opcount.register_counter")
        return func(*args, **(kwargs or {}))


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


def _counted_modules(model: nn.Module):
    """(name, module) of the counted modules (leaves and registered types) and of the rest."""
    counted, containers, seen = [], [], set()

    def walk(name: str, module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if _counter_for(module) is not None or next(module.children(), None) is None:
            counted.append((name, module))
            return
        containers.append((name, module))
        for child_name, child in module.named_children():
            walk(f"{name}.{child_name}" if name else child_name, child)

    walk("", model)
    return counted, containers


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


def count_ops(model: nn.Module, inputs, *, bias: bool = False, pooling: bool = False):
    """Count the operations of one forward pass, layer by layer.

    ``inputs``: a shape (``torch.zeros`` of it in the model's dtype and device), a Tensor, or a
    tuple of positional arguments. The model runs once in eval mode under ``torch.no_grad``
    (its training flags are restored afterwards), with hooks on every counted module: every
    module without children, and every module whose type has a counter (see
    :func:`register_counter`). Returns a DataFrame with one row per counted module call, in
    execution order (a module called twice gives two rows), and the columns ``layer``,
    ``kind``, ``output_shape`` (of the first Tensor output, batch included) and the
    :data:`OP_KINDS`. Rows of activations, and of pooling with ``pooling=False``, hold zeros.

    Raises ``TypeError`` when a module without a counter is called, and ``RuntimeError`` when
    arithmetic runs outside every counted module (``x + y`` in a container's ``forward``);
    neither is ever counted as zero.
    """
    import pandas as pd

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    args = _make_inputs(model, inputs)
    counted, containers = _counted_modules(model)
    state = _State()
    nested: list[bool] = []  # per running counted call: is it inside another counted module?

    def enter(name):
        return lambda module, args: state.stack.append(_label(name, module))

    def leave(module, args, output):
        state.stack.pop()

    def enter_counted(name, counter):
        def hook(module, args):
            state.stack.append(_label(name, module))
            nested.append(state.depth > 0)
            state.depth += 1
            if nested[-1]:
                return  # a module shared with the inside of a counted one: counted there
            if counter is None:
                where = f"layer {name!r}" if name else "the model itself"
                raise TypeError(
                    f"no operation counter for {type(module).__qualname__} ({where}); register "
                    "one with book.opcount.register_counter rather than count it as zero")
            if counter is count_conv:
                _check_conv_input(name, module, args)
        return hook

    def leave_counted(name, counter):
        def hook(module, args, output):
            try:
                if not nested[-1]:
                    counts = _checked_counts(counter, name, module, args, output, bias, pooling)
                    out = _first_tensor(output)
                    shape = tuple(out.shape) if out is not None else ()
                    state.rows.append((name, type(module).__name__, shape,
                                       *(counts.get(k, 0) for k in OP_KINDS)))
            finally:
                nested.pop()
                state.depth -= 1
                state.stack.pop()
        return hook

    handles = []
    try:
        for name, module in containers:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave))
        for name, module in counted:
            counter = _counter_for(module)
            handles.append(module.register_forward_pre_hook(enter_counted(name, counter)))
            handles.append(module.register_forward_hook(leave_counted(name, counter)))
        _run_once(model, args, _ArithmeticGuard(state))
    finally:
        for handle in handles:
            handle.remove()
    table = pd.DataFrame(state.rows, columns=list(COLUMNS))
    return table.astype({k: "int64" for k in OP_KINDS})


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
    training = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), context:
            model(*args)
    finally:
        for module, mode in training.items():
            module.training = mode


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
                if isinstance(module.padding, str):
                    raise NotImplementedError(
                        f"closed_form_ops: layer {name!r} has padding={module.padding!r}; "
                        "give the padding as numbers")
                ops = conv2d_ops(module.in_channels, module.out_channels, tuple(x.shape[-2:]),
                                 module.kernel_size, stride=module.stride,
                                 padding=module.padding, dilation=module.dilation,
                                 groups=module.groups, bias=with_bias,
                                 batch=x.shape[0] if x.dim() == 4 else 1)
            rows.append((name, ops["mults"], ops["adds"]))
        return hook

    args = _make_inputs(model, inputs)
    handles = [module.register_forward_pre_hook(record(name))
               for name, module in model.named_modules()
               if type(module) in (nn.Conv2d, nn.Linear)]
    try:
        _run_once(model, args, contextlib.nullcontext())
    finally:
        for handle in handles:
            handle.remove()
    return pd.DataFrame(rows, columns=["layer", "mults", "adds"])


# --------------------------------------------------------------------------- closed forms

def int_tuple(name: str, value, dims: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int for every dimension, or ``dims`` ints) as a tuple of ``dims`` ints of
    at least ``minimum``; ``ValueError`` names the argument otherwise."""
    values = (value,) * dims if is_int(value) else tuple(value) if isinstance(
        value, (tuple, list, torch.Size)) else None
    if values is None or len(values) != dims or not all(map(is_int, values)):
        raise ValueError(f"{name} must be an int or {dims} ints, got {value!r}")
    if min(values) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return tuple(int(v) for v in values)


def conv_output_size(input_size, kernel_size, *, stride=1, padding=0, dilation=1):
    """Output size of a convolution (or pooling) over ``input_size`` (an int for a square 2-D
    input, or one int per spatial dimension); ``ValueError`` names the bad argument."""
    dims = 2 if is_int(input_size) else len(input_size) if isinstance(
        input_size, (tuple, list, torch.Size)) else 0
    if dims == 0:
        raise ValueError(f"input_size must be an int or a tuple of ints, got {input_size!r}")
    size = int_tuple("input_size", input_size, dims)
    kernel = int_tuple("kernel_size", kernel_size, dims)
    stride = int_tuple("stride", stride, dims)
    padding = int_tuple("padding", padding, dims, minimum=0)
    dilation = int_tuple("dilation", dilation, dims)
    out = []
    for axis, (n, k, s, p, d) in enumerate(zip(size, kernel, stride, padding, dilation,
                                               strict=True)):
        span = d * (k - 1) + 1
        if span > n + 2 * p:
            raise ValueError(
                f"kernel_size {k} (dilation {d}, so it spans {span}) is larger than the padded "
                f"input {n + 2 * p} (input_size {n} + 2 * padding {p}) along dimension {axis}")
        out.append((n + 2 * p - span) // s + 1)
    return tuple(out)


def conv2d_ops(in_channels, out_channels, input_size, kernel_size, *, stride=1, padding=0,
               dilation=1, groups=1, bias=False, batch=1) -> dict[str, int]:
    """Multiplications and additions of ``nn.Conv2d`` on ``[batch, in_channels, *input_size]``:
    every output element costs ``in_channels/groups * K_h * K_w`` multiplications and one
    fewer additions, plus one addition with ``bias``."""
    in_channels = positive_int("in_channels", in_channels)
    out_channels = positive_int("out_channels", out_channels)
    groups = positive_int("groups", groups)
    batch = positive_int("batch", batch)
    for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
        if channels % groups:
            raise ValueError(f"{name} ({channels}) must be divisible by groups ({groups})")
    h_out, w_out = conv_output_size(int_tuple("input_size", input_size, 2), kernel_size,
                                    stride=stride, padding=padding, dilation=dilation)
    k_h, k_w = int_tuple("kernel_size", kernel_size, 2)
    per_output = in_channels // groups * k_h * k_w  # (opc-conv)
    n = batch * out_channels * h_out * w_out
    return {"mults": n * per_output, "adds": n * (per_output - 1) + (n if bias else 0)}


def linear_ops(in_features, out_features, *, bias=False, batch=1) -> dict[str, int]:
    """``nn.Linear`` on ``batch`` rows: ``in_features`` multiplications and ``in_features - 1``
    additions per output, plus one addition with ``bias``."""
    in_features = positive_int("in_features", in_features)
    n = positive_int("batch", batch) * positive_int("out_features", out_features)
    return {"mults": n * in_features, "adds": n * (in_features - 1) + (n if bias else 0)}


def pool2d_ops(channels, input_size, kernel_size, *, stride=None, padding=0, mode="avg",
               batch=1) -> dict[str, int]:
    """2-D pooling: an average of a ``K_h x K_w`` window costs ``K_h*K_w - 1`` additions and
    one multiplication per output; a maximum ``K_h*K_w - 1`` comparisons."""
    if mode not in ("avg", "max"):
        raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
    k_h, k_w = int_tuple("kernel_size", kernel_size, 2)
    h_out, w_out = conv_output_size(int_tuple("input_size", input_size, 2), (k_h, k_w),
                                    stride=(k_h, k_w) if stride is None else stride,
                                    padding=padding)
    n = positive_int("batch", batch) * positive_int("channels", channels) * h_out * w_out
    if mode == "max":
        return {"comparisons": n * (k_h * k_w - 1)}
    return {"mults": n, "adds": n * (k_h * k_w - 1)}


# --------------------------------------------------------------------------- tables

def summarize(table, kinds=("mults", "adds")):
    """The per-layer table of :func:`count_ops` reduced to ``kinds``, with a ``total`` row."""
    import pandas as pd

    rows = table[["layer", "kind", *kinds]]
    total = pd.DataFrame([{"layer": "total", "kind": "", **{k: int(rows[k].sum()) for k in kinds}}])
    return pd.concat([rows, total], ignore_index=True)
