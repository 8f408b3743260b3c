"""What the operation-count tests share: the MNIST input shape, hypothesis settings, random
valid convolutions and poolings, and the totals of a count table."""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

MNIST = (1, 1, 28, 28)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def totals(table):
    """(multiplications, additions) of a table from ``count_ops``, summed over its rows."""
    return int(table["mults"].sum()), int(table["adds"].sum())


@st.composite
def conv_configs(draw):
    """A valid ``nn.Conv2d`` (channels, kernel, stride, padding, dilation, groups), the input
    size and batch it runs on, and whether the bias is counted."""
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    k_h, k_w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # an input at least as large as the padded kernel span, so the layer is valid
    h = draw(st.integers(max(1, dilation[0] * (k_h - 1) + 1 - 2 * padding[0]), 12))
    w = draw(st.integers(max(1, dilation[1] * (k_w - 1) + 1 - 2 * padding[1]), 12))
    batch = draw(st.integers(1, 3))
    return dict(c_in=c_in, c_out=c_out, k=(k_h, k_w), stride=stride, padding=padding,
                dilation=dilation, groups=groups, size=(h, w), batch=batch,
                bias=draw(st.booleans()))


@st.composite
def pool_configs(draw):
    """A valid 2-D pooling (kernel, stride, padding of at most half the kernel, ceil_mode) and
    an input shape at least as large as the kernel."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    h, w = draw(st.integers(k[0], 11)), draw(st.integers(k[1], 11))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), k=k,
                stride=stride, padding=padding, ceil=draw(st.booleans()))
