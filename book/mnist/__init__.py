"""Parts a and b: LeNet-5 and its depthwise-separable version, trained on MNIST.

:mod:`~book.mnist.data` (MNIST offline, checksummed), :mod:`~book.mnist.models` (the nets),
:mod:`~book.mnist.training` (the training loop, evaluation), :mod:`~book.mnist.significance`
(do two nets differ on the same test set) and :mod:`~book.mnist.figures`.
"""
