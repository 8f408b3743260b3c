"""Shared test helpers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sphinx_ext() -> ModuleType:
    """The book's Sphinx extension, `tools/book_sphinx_ext.py`, loaded by its path."""
    spec = importlib.util.spec_from_file_location("book_sphinx_ext",
                                                  ROOT / "tools" / "book_sphinx_ext.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mnist():
    """The whole of MNIST in memory (:func:`book.mnist.data.load_mnist`), read once."""
    from book.mnist.data import load_mnist

    return load_mnist()
