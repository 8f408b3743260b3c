"""Helper package of the course-report book on efficient neural networks.

Grouped by the chapter whose question it answers (``CONTRIBUTING.md`` lists every module):

- :mod:`book.mnist`: Parts a and b, LeNet-5 and its depthwise-separable version on MNIST
  (data, models, training, significance, figures).
- :mod:`book.counting`: Parts c and d, exact operation counts (the cost of each operator, the
  counter, the closed forms, the separable map, torchvision's networks, figures).
- :mod:`book.speed`: Part b's speed study (wall-clock timing, memory traffic, the measured
  roofline, figures); Problem 2 times its dtypes with the same timing.
- :mod:`book.transformer`: Problem 2, the Transformer in 16 bits (model, layers, strict float16
  accumulation, costs, numerics, the digit-reversal demonstration, figures).

Shared at the top: :mod:`book.paths`, :mod:`book.checks`, :mod:`book.hardware`,
:mod:`book.formatting`, :mod:`book.progress`, :mod:`book.inspection` (hooks and modes during a
forward pass) and :mod:`book.runs` (the one resumable-run protocol and its atomic files).
A sub-package imports only the shared modules and, where a chapter builds on another, a
sibling; no shared module imports a sub-package.
"""

from book.paths import DATA_DIR, RESULTS_DIR, ROOT

__all__ = ["DATA_DIR", "RESULTS_DIR", "ROOT"]
