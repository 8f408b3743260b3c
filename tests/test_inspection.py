"""Hooks never outlive their block, and eval_mode gives every module its own flag back."""

import pytest
import torch
from torch import nn

from book.inspection import eval_mode, forward_hooks


def test_forward_hooks_see_the_pass_and_are_removed_after_it():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seen = []
    with forward_hooks([(m, lambda m, a, o: seen.append(type(m).__name__)) for m in net]):
        net(torch.zeros(1, 2))
    net(torch.zeros(1, 2))
    assert seen == ["Linear", "ReLU"]
    assert all(not m._forward_hooks for m in net.modules())


def test_forward_hooks_are_removed_when_the_block_raises():
    net = nn.Linear(2, 3)
    with pytest.raises(RuntimeError, match="boom"), forward_hooks([(net, lambda *a: None)],
                                                                   pre=True):
        raise RuntimeError("boom")
    assert not net._forward_pre_hooks


def test_eval_mode_restores_a_mixed_mode_model():
    net = nn.Sequential(nn.Dropout(), nn.Dropout())
    net[1].eval()
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == [True, True, False]
