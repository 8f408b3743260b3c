"""Numbers as the prose writes them: scientific notation for MyST math, and integers with
thousands separators in the tables shown next to the prose."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["latex_sci", "with_separators"]


def mantissa_exponent(value: float, digits: int) -> tuple[str, int]:
    """``1.234e-06`` with ``digits=1`` -> ``("1.2", -6)``."""
    mantissa, exponent = f"{float(value):.{digits}e}".split("e")
    return mantissa, int(exponent)


def latex_sci(value: float, digits: int = 1) -> str:
    """``1.2e-06`` as the inline math ``$1.2\\times10^{-6}$``, for the text."""
    mantissa, exponent = mantissa_exponent(value, digits)
    return f"${mantissa}\\times10^{{{exponent}}}$"


def _separated(value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return f"{int(value):,}"
    return value


def with_separators(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` for display, in which every integer cell (a Python or NumPy
    integer, not a bool) is a string with thousands separators, ``416520`` -> ``"416,520"``,
    as the prose writes its counts. Every other cell, floats included, is unchanged, and so
    are the index and the column names; ``table`` itself is not modified, so the numbers can
    still be computed with."""
    return table.map(_separated)
