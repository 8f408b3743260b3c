"""Part b's speed study: why fewer multiplications do not make a net proportionally faster.

:mod:`~book.speed.timing` (wall-clock medians, interleaved comparisons and their spread; the
Transformer's dtypes are timed with it too), :mod:`~book.speed.traffic` (bytes each layer
moves, arithmetic intensity), :mod:`~book.speed.roofline` (this machine's measured roofline,
each layer under it) and :mod:`~book.speed.figures`.
"""
