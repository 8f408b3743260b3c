"""Parts c and d: exact multiplications and additions of a forward pass, layer by layer.

One cost model (:mod:`~book.counting.closed_forms`) prices every aten operator
(:mod:`~book.counting.costs`) that :mod:`~book.counting.counter` sees a model run.
"""
