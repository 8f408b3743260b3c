"""Helper package of the course-report book on efficient neural networks.

One module per idea: :mod:`book.data` (MNIST), :mod:`book.models` (LeNet-5 and its
separable variant), :mod:`book.training` (the training loop shared by every chapter),
:mod:`book.plots`, :mod:`book.opcount` (multiplication and addition counts) and
:mod:`book.transformer`.
"""

from book.paths import DATA_DIR, RESULTS_DIR, ROOT

__all__ = ["DATA_DIR", "RESULTS_DIR", "ROOT"]
