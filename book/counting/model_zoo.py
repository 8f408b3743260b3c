"""Eleven torchvision classification networks, counted by :mod:`book.counting.counter` and checked
against the figures torchvision publishes for them.

torchvision's weights carry, in ``get_model_weights(name).DEFAULT.meta``, the number of
parameters (``num_params``) and ``_ops``: billions of multiply-accumulates of the products
for one 224 x 224 image, what our ``products`` category counts. The networks are built on the
``meta`` device, where PyTorch computes shapes only, so counting all eleven takes seconds.
"""

from __future__ import annotations

import contextlib
from itertools import pairwise

import pandas as pd
import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)

from book.counting.closed_forms import CATEGORIES, PRODUCTS
from book.counting.counter import OP_KINDS, count_operators, count_ops
from book.counting.separable_map import separable_mults_from_regular
from book.inspection import forward_hooks

__all__ = ["IMAGE", "MODELS", "build", "by_category", "count_model", "published",
           "separable_blocks", "zoo_table"]

MODELS = ("alexnet", "googlenet", "densenet121", "resnet50", "mobilenet_v2",
          "mobilenet_v3_large", "efficientnet_b0", "shufflenet_v2_x1_0", "convnext_tiny",
          "swin_t", "vit_b_16")
IMAGE = (1, 3, 224, 224)  # one RGB image, as the published figures assume
# GoogLeNet (and Inception v3) as published: without the auxiliary classifiers (they only run
# in training); init_weights given, so torchvision does not warn that its default will change.
_OPTIONS = {"googlenet": {"aux_logits": False, "init_weights": True},
            "inception_v3": {"aux_logits": False, "init_weights": True}}


def build(name: str, device: str | torch.device = "meta") -> nn.Module:
    """torchvision's classification network ``name`` (``weights=None``) in eval mode, for
    counting: on the ``meta`` device its tensors have shapes and no values; on another device
    its parameters and buffers are zeros (made in a moment, where torchvision's random
    initialisation of ViT-B/16 takes seconds), since no count depends on their values."""
    import torchvision
    from torchvision.models import get_model, list_models

    names = list_models(module=torchvision.models)
    if name not in names:
        raise ValueError(f"name must be one of torchvision's classification networks {names}, "
                         f"got {name!r}")
    with _parameters_on_meta():
        model = get_model(name, weights=None, **_OPTIONS.get(name, {}))
    if torch.device(device).type != "meta":
        model = model.to_empty(device=device)
        with torch.no_grad():
            for t in (*model.parameters(), *model.buffers()):
                t.zero_()
    return model.eval()


@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter and buffer registered in the block is moved to the meta device as it is
    registered, so that initialising it costs nothing. Not ``torch.device("meta")``: RegNet
    computes its widths with tensors and reads them back (``tolist``), which needs data."""
    on_parameter = register_module_parameter_registration_hook(
        lambda module, name, p: None if p is None else nn.Parameter(p.to("meta"),
                                                                     p.requires_grad))
    on_buffer = register_module_buffer_registration_hook(
        lambda module, name, b: None if b is None else b.to("meta"))
    try:
        yield
    finally:
        on_parameter.remove()
        on_buffer.remove()


def published(name: str) -> dict[str, float]:
    """``{"parameters": int, "GMACs": float}`` as torchvision publishes them (offline)."""
    from torchvision.models import get_model_weights

    meta = get_model_weights(name).DEFAULT.meta
    return {"parameters": int(meta["num_params"]), "GMACs": float(meta["_ops"])}


def count_model(name: str) -> pd.DataFrame:
    """:func:`~book.counting.counter.count_operators` of network ``name`` on :data:`IMAGE`,
    on the meta device, everything counted (bias and pooling included)."""
    return count_operators(build(name), IMAGE, bias=True, pooling=True)


def by_category(operators: pd.DataFrame) -> pd.Series:
    """The multiplications of an operator table summed per category, in
    :data:`book.counting.closed_forms.CATEGORIES` order (zeros included)."""
    sums = operators.groupby("category")["mults"].sum()
    return pd.Series({c: int(sums.get(c, 0)) for c in CATEGORIES}, name="mults")


def zoo_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per network (``tables`` maps its name to :func:`count_model`'s table):
    parameters counted and published, the multiplications of the products in billions
    (``GMACs``) against the published figure and their relative difference in percent, then
    all multiplications and the other kinds of operation, counted."""
    rows = []
    for name, ops in tables.items():
        ref = published(name)
        params = sum(p.numel() for p in build(name).parameters())
        products = by_category(ops)[PRODUCTS] / 1e9
        totals = {k: int(ops[k].sum()) for k in OP_KINDS}
        rows.append({
            "network": name, "parameters": params, "parameters (published)": ref["parameters"],
            "GMACs": products, "GMACs (published)": ref["GMACs"],
            "difference (%)": 100 * (products / ref["GMACs"] - 1),
            **totals,
        })
    return pd.DataFrame(rows).set_index("network")


def _separable_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, str, nn.Conv2d]]:
    """Each depthwise convolution with a kernel larger than 1 x 1, with the pointwise (1 x 1,
    ungrouped) convolution that follows it in definition order and reads its channels."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    pairs = []
    for (dw_name, dw), (pw_name, pw) in pairwise(convs):
        depthwise = dw.groups == dw.in_channels == dw.out_channels and dw.kernel_size != (1, 1)
        pointwise = pw.kernel_size == (1, 1) and pw.groups == 1
        if depthwise and pointwise and pw.in_channels == dw.out_channels:
            pairs.append((dw_name, dw, pw_name, pw))
    return pairs


def separable_blocks(model: nn.Module, inputs) -> pd.DataFrame:
    """Part d's map on a real network: for every depthwise-separable pair (a depthwise
    convolution and the pointwise one after it), ``x`` is the count of the regular convolution
    it replaces (``C_in -> C_out``, the same kernel, stride, padding and dilation, counted by
    :func:`book.counting.counter.count_ops` on the depthwise stage's input), ``f(x)`` the map of
    equation map-f-mult, and ``y`` the two stages as counted in the network. One row per
    pair, indexed by the depthwise layer's name."""
    pairs = _separable_pairs(model)
    shapes: dict[str, torch.Size] = {}

    def record(name: str):
        def hook(module, args) -> None:
            shapes.setdefault(name, args[0].shape)
        return hook

    with forward_hooks([(dw, record(name)) for name, dw, _, _ in pairs], pre=True):
        table = count_ops(model, inputs)
    mults = table.groupby("layer", sort=False)["mults"].sum()
    rows = []
    for dw_name, dw, pw_name, pw in pairs:
        shape = shapes[dw_name]
        regular = nn.Conv2d(pw.in_channels, pw.out_channels, dw.kernel_size, stride=dw.stride,
                            padding=dw.padding, dilation=dw.dilation, bias=False,
                            device="meta")
        x = int(count_ops(regular, torch.Size(shape))["mults"].sum())
        k_h, k_w = dw.kernel_size
        rows.append({
            "depthwise": dw_name, "C_in": pw.in_channels, "C_out": pw.out_channels,
            "kernel": f"{k_h}x{k_w}", "stride": dw.stride[0], "input": f"{shape[2]}x{shape[3]}",
            "x": x, "f(x)": separable_mults_from_regular(x, pw.out_channels, k_h, k_w),
            "y": int(mults[dw_name] + mults[pw_name]),
        })
    return pd.DataFrame(rows).set_index("depthwise")
