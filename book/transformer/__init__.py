"""Problem 2: a one-encoder, one-decoder Transformer (8 heads, d_model 256) in 16 bits.

:mod:`~book.transformer.model` (config, attention, layers, ``generate``, weight import),
:mod:`~book.transformer.layers` (its leaf modules: all of its arithmetic),
:mod:`~book.transformer.strict_fp16` (16-bit accumulation), :mod:`~book.transformer.costs`
(operations and bytes, block by block), :mod:`~book.transformer.numerics` (against PyTorch in
each dtype, timing, where 16 bits break), :mod:`~book.transformer.reversal` (the demonstration
task and its training) and :mod:`~book.transformer.figures`.
"""
