"""Part d: the counts of a regular convolution map exactly to those of its separable
replacement, as the hooks of book.counting.counter count both."""

from fractions import Fraction

import matplotlib.pyplot as plt
import pytest
from hypothesis import given
from matplotlib.layout_engine import ConstrainedLayoutEngine
from strategies import SETTINGS, conv_configs, totals
from torch import nn

from book.counting.counter import count_ops
from book.counting.figures import plot_ratios
from book.counting.separable_map import (
    adds_ratio,
    mults_ratio,
    ops_ratio,
    separable_adds_from_regular,
    separable_mults_from_regular,
    separable_ops_from_regular,
)


@SETTINGS
@given(conv_configs())
def test_mapping_matches_hook_counts(cfg):
    c_in, c_out, (k_h, k_w) = cfg["c_in"], cfg["c_out"], cfg["k"]
    common = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    regular = nn.Conv2d(c_in, c_out, (k_h, k_w), **common)
    separable = nn.Sequential(nn.Conv2d(c_in, c_in, (k_h, k_w), groups=c_in, **common),
                              nn.Conv2d(c_in, c_out, 1))
    shape, bias = (cfg["batch"], c_in, *cfg["size"]), cfg["bias"]
    x_mult, x_add = totals(count_ops(regular, shape, bias=bias))
    y_mult, y_add = totals(count_ops(separable, shape, bias=bias))
    assert separable_mults_from_regular(x_mult, c_out, k_h, k_w) == y_mult
    assert separable_adds_from_regular(x_add, c_in, c_out, k_h, k_w, bias=bias) == y_add
    assert separable_ops_from_regular(x_mult + x_add, c_in, c_out, k_h, k_w,
                                      bias=bias) == y_mult + y_add


def test_mapping_on_lenet_and_exact_types():
    # c3 of LeNet-5: 6 -> 16 channels, 5x5 kernel
    assert separable_mults_from_regular(240_000, 16, 5, 5) == 15_000 + 9_600
    assert separable_adds_from_regular(238_400, 6, 16, 5, 5) == 14_400 + 8_000
    assert isinstance(separable_mults_from_regular(240_000, 16, 5, 5), int)
    assert mults_ratio(16, 5, 5) == Fraction(41, 400)
    assert separable_mults_from_regular(1, 16, 5, 5) == Fraction(41, 400)  # not a real count
    assert adds_ratio(6, 16, 5, 5, bias=True) == mults_ratio(16, 5, 5)
    assert ops_ratio(6, 16, 5, 5, bias=True) == mults_ratio(16, 5, 5)
    assert adds_ratio(6, 16, 5, 5) != mults_ratio(16, 5, 5)
    assert separable_adds_from_regular(0, 1, 7, 1, 1) == 0  # neither adds anything
    with pytest.raises(ValueError, match="undefined"):
        adds_ratio(1, 7, 1, 1)
    with pytest.raises(ValueError, match="x_add must be 0"):
        separable_adds_from_regular(3, 1, 7, 1, 1)
    with pytest.raises(ValueError, match="x must be a non-negative int"):
        separable_mults_from_regular(-1, 16, 5, 5)
    with pytest.raises(ValueError, match="c_out must be a positive int"):
        mults_ratio(0, 5, 5)


def test_ratio_figure_plots_the_exact_ratios_on_a_shared_axis():
    c_out_values = [1, 2, 4, 8]
    fig = plot_ratios(c_out_values, kernel_sizes=(3, 5), c_in=3, fixed_c_out=(16,))
    left, right = fig.axes
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert left.get_shared_y_axes().joined(left, right)
    mults_3x3, adds_3x3 = left.lines[:2]  # then the grey line at 1 comes last
    assert list(mults_3x3.get_ydata()) == [float(mults_ratio(c, 3, 3)) for c in c_out_values]
    assert list(adds_3x3.get_ydata()) == [float(adds_ratio(3, c, 3, 3)) for c in c_out_values]
    assert adds_3x3.get_linestyle() == "--" and mults_3x3.get_linestyle() == "-"
    assert list(right.lines[0].get_xdata()) == list(range(1, 12))
    plt.close(fig)
