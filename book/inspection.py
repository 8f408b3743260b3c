"""Looking inside a model while it runs: hooks that are always removed, modes always restored.

Every place in the book that watches a forward pass (to trace, count, measure traffic, time or
read attention) adds its hooks through :func:`forward_hooks`, so a hook never outlives the pass
it was added for, even when the pass raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from torch import nn

__all__ = ["eval_mode", "forward_hooks"]


@contextlib.contextmanager
def forward_hooks(hooks: Iterable[tuple[nn.Module, Callable]], *, pre: bool = False,
                  with_kwargs: bool = False) -> Iterator[None]:
    """Register each ``(module, hook)`` as a forward hook (``pre=True``: a forward pre-hook) for
    the block, and remove every one that was registered when the block ends, however it ends."""
    handles = []
    try:
        for module, hook in hooks:
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook, with_kwargs=with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Every module of ``models`` in eval mode for the block; each gets its own training flag
    back afterwards (a model mixing modes keeps its mix)."""
    flags = {m: m.training for model in models for m in model.modules()}
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, training in flags.items():
            module.training = training
