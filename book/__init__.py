"""Helper package of the course-report book on efficient neural networks.

One module per idea; ``CONTRIBUTING.md`` lists them all. The notebooks import modules
(``from book import opcount``) and call them: data (:mod:`book.data`), models
(:mod:`book.models`), training under one run protocol (:mod:`book.training`,
:mod:`book.runs`), operation counts and memory traffic (:mod:`book.opcount`,
:mod:`book.traffic`), the Transformer of Problem 2 (:mod:`book.transformer`) and every
figure (:mod:`book.plots`).
"""

from book.paths import DATA_DIR, RESULTS_DIR, ROOT

__all__ = ["DATA_DIR", "RESULTS_DIR", "ROOT"]
