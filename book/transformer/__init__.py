"""Problem 2: a one-encoder, one-decoder Transformer (8 heads, d_model 256) in 16 bits.

:mod:`~book.transformer.model` builds it from :mod:`~book.transformer.layers` (all of its
arithmetic) and :mod:`~book.transformer.strict_fp16` (16-bit accumulation); ``costs`` counts
it, ``numerics`` compares it with PyTorch, ``reversal`` trains the demonstration and ``figures``
plots the results.
"""
