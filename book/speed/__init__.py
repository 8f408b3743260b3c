"""Part b's speed study: why fewer multiplications do not make a net proportionally faster.

:mod:`~book.speed.traffic` (bytes each layer moves, arithmetic intensity),
:mod:`~book.speed.roofline` (this machine's measured roofline, each layer under it) and
:mod:`~book.speed.figures`. Wall-clock timing itself is shared: :mod:`book.timing`.
"""
