"""Parts c and d: exact multiplications and additions of a forward pass, layer by layer.

:mod:`~book.counting.costs` (what each aten operator costs: the one cost model),
:mod:`~book.counting.counter` (runs a model and counts every operator it runs),
:mod:`~book.counting.closed_forms` (the formulas the counts must agree with),
:mod:`~book.counting.separable_map` (Part d: regular to separable counts),
:mod:`~book.counting.model_zoo` (torchvision's networks against their published figures) and
:mod:`~book.counting.figures`.
"""
