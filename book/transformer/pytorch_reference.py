"""What our Transformer can take from ``torch.nn.Transformer``: the settings that decide whether
its weights, copied into ours (:meth:`book.transformer.model.Transformer.load_torch_weights`),
give the same outputs. Anything else is refused before a weight is copied.
"""

from __future__ import annotations

from torch import nn

from book.transformer.layers import LayerNorm

__all__ = ["check_torch_reference"]


def check_torch_reference(ref: nn.Transformer, config) -> None:
    """A ``ValueError`` naming the first setting of ``ref`` that our model of ``config`` (a
    :class:`~book.transformer.model.TransformerConfig`) does not compute, what ours computes,
    and what to change; a ``TypeError`` unless ``ref`` is an ``nn.Transformer``."""
    if not isinstance(ref, nn.Transformer):
        raise TypeError(f"ref must be a torch.nn.Transformer, got {type(ref).__name__}")
    enc, dec = ref.encoder, ref.decoder
    layers = (*enc.layers, *dec.layers)
    if (type(enc) is not nn.TransformerEncoder or type(dec) is not nn.TransformerDecoder
            or any(type(layer) not in (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
                   for layer in layers)):
        raise ValueError("ref has a custom_encoder or custom_decoder, which ours cannot "
                         "reproduce: ours computes nn.Transformer's own encoder and decoder "
                         "layers; build the reference without custom_encoder/custom_decoder")
    other = [a for a in (layer.activation for layer in layers)
             if not (a is nn.functional.relu or isinstance(a, nn.ReLU))]
    eps = [m.eps for m in ref.modules() if isinstance(m, nn.LayerNorm) and m.eps != LayerNorm.EPS]
    settings = (  # (setting, ref's value, ours, the config field that would follow ref's)
        ("final encoder and decoder norms", None not in (enc.norm, dec.norm), True, None),
        ("num_encoder_layers", len(enc.layers), 1, None),
        ("num_decoder_layers", len(dec.layers), 1, None),
        ("d_model", ref.d_model, config.d_model, "d_model"),
        ("nhead", ref.nhead, config.n_heads, "n_heads"),
        ("dim_feedforward", layers[0].linear1.out_features, config.d_ff, "d_ff"),
        ("norm_first", any(layer.norm_first for layer in layers), False, None),
        ("activation", getattr(other[0], "__name__", type(other[0]).__name__) if other else "relu",
         "relu", None),
        ("bias", layers[0].linear1.bias is not None, True, None),
        ("layer_norm_eps", eps[0] if eps else LayerNorm.EPS, LayerNorm.EPS, None),
    )
    for setting, theirs, ours, field in settings:
        if theirs != ours:
            fix = f"build the reference with {setting}={ours!r}"
            if field:
                fix += f", or our model with TransformerConfig({field}={theirs!r})"
            raise ValueError(f"ref has {setting}={theirs!r}, which ours cannot reproduce: ours "
                             f"computes {setting}={ours!r}; {fix}")
