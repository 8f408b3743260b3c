"""The block diagram is drawn from the model: its order, its labels and its refusals."""

import matplotlib
import pytest
import torch
from torch import nn

from book.transformer.figures import plot_transformer, sublayers
from book.transformer.model import Transformer, TransformerConfig

matplotlib.use("Agg")


def model(**kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(13, 11, max_len=8, **kw))


def texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_sublayers_come_in_the_order_of_a_forward_pass():
    rows = sublayers(model())
    assert [eq for _, _, eq in rows["encoder"]] == ["(R12)", "(R13, R15)", "(R14)",
                                                     "(R13, R15)"]
    assert [eq for _, _, eq in rows["decoder"]] == ["(R16)", "(R13, R15)", "(R17)",
                                                     "(R13, R15)", "(R14)", "(R13, R15)"]


def test_labels_come_from_the_configuration():
    fig = plot_transformer(model(d_ff=512, n_heads=4))
    shown = "\n".join(texts(fig))
    assert "feed-forward 256 → 512 → 256" in shown
    assert "self-attention, 4 heads × 64" in shown
    assert "token embedding 13 → 256" in shown and "generator: linear 256 → 11" in shown
    assert "next-token logits [B, T, 11]" in shown
    added = [p for p in fig.axes[0].patches if p.get_linewidth() > 2]
    assert len(added) == 2 + 2 + 1  # final LayerNorms, padding masks, generator


def test_an_unknown_sublayer_is_refused():
    m = model()
    m.encoder.ffn = nn.Sequential(m.encoder.ffn)  # a block the diagram cannot name
    with pytest.raises(TypeError, match=r"no diagram box for encoder\.ffn"):
        plot_transformer(m)
