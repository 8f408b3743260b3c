"""Helper package of the course-report book on efficient neural networks.

Grouped by the chapter whose question it answers (``CONTRIBUTING.md`` lists every module):
:mod:`book.mnist` (Parts a and b), :mod:`book.counting` (Parts c and d), :mod:`book.speed`
(Part b's speed study) and :mod:`book.transformer` (Problem 2); the modules at the top are
shared. A sub-package imports only the shared modules and, where a chapter builds on another, a
sibling; no shared module imports a sub-package.
"""
