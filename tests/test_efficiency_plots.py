"""The Pareto and roofline figures show what their captions say."""

import matplotlib
import numpy as np
import pandas as pd

from book.speed.figures import pareto_front, plot_pareto, plot_roofline
from book.speed.roofline import Roofs

matplotlib.use("Agg")


def test_the_pareto_front_keeps_only_points_nothing_beats_on_both_counts():
    cost = [1, 2, 3, 4, 5]
    accuracy = [0.90, 0.95, 0.93, 0.99, 0.99]
    assert pareto_front(cost, accuracy) == [0, 1, 3]  # 3 is beaten by 2, 5 ties 4 at a cost


def test_the_pareto_figure_shares_accuracy_and_draws_the_time_spread():
    table = pd.DataFrame({"test_acc": [0.99, 0.98, 0.985], "mults": [400, 60, 150],
                          "us": [70.0, 60.0, 65.0], "us_min": [60.0, 50.0, 55.0],
                          "us_max": [90.0, 80.0, 75.0]}, index=["big", "small", "mid"])
    fig = plot_pareto(table)
    left, right = fig.axes
    assert left.get_shared_y_axes().joined(left, right)
    assert left.get_xscale() == right.get_xscale() == "log"
    assert "Mult-Adds" in left.get_xlabel() and "µs" in right.get_xlabel()
    front = left.lines[0]
    np.testing.assert_allclose(front.get_xdata(), [60, 150, 400])
    np.testing.assert_allclose(front.get_ydata(), [98.0, 98.5, 99.0])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Pareto front", "big", "small", "mid"]


def test_the_roofline_draws_both_roofs_and_every_layer_with_its_name():
    roofs = Roofs(peak=80e9, bandwidth=10e9, matmul_size=512, copy_bytes=2**28)
    layers = pd.DataFrame({"net": ["A", "A", "B"], "layer": ["c1", "s2", "c1.depthwise"],
                           "intensity": [10.0, 0.2, 6.0], "rate": [20e9, 1e9, 2e9],
                           "rate_median": [15e9, 0.8e9, 1.5e9]})
    fig = plot_roofline(roofs, layers, reference=5e9)
    a, b = fig.axes
    assert a.get_shared_y_axes().joined(a, b) and a.get_shared_x_axes().joined(a, b)
    assert a.get_xscale() == a.get_yscale() == "log"
    roof = a.lines[0]
    x, y = roof.get_xdata(), roof.get_ydata()
    np.testing.assert_allclose(y, np.minimum(80, 10 * x))  # GOP/s
    assert x.min() <= 0.1 and x.max() >= 20  # every layer and the ridge (8) lie inside
    assert [t.get_text() for t in a.texts] == ["c1", "s2"]
    assert [t.get_text() for t in b.texts] == ["c1.depthwise"]
    assert any(line.get_linestyle() == "--" for line in a.lines)  # the op-count reference
