"""Numbers as the prose writes them: scientific notation for MyST math and for plain text."""

from __future__ import annotations

__all__ = ["latex_sci", "unicode_sci"]

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def mantissa_exponent(value: float, digits: int) -> tuple[str, int]:
    """``1.234e-06`` with ``digits=1`` -> ``("1.2", -6)``."""
    mantissa, exponent = f"{float(value):.{digits}e}".split("e")
    return mantissa, int(exponent)


def latex_sci(value: float, digits: int = 1) -> str:
    """``1.2e-06`` as the inline math ``$1.2\\times10^{-6}$``, for the text."""
    mantissa, exponent = mantissa_exponent(value, digits)
    return f"${mantissa}\\times10^{{{exponent}}}$"


def unicode_sci(value: float, digits: int = 1) -> str:
    """``1.2e-06`` as the plain text ``1.2 × 10⁻⁶``, for pasting into other pages."""
    mantissa, exponent = mantissa_exponent(value, digits)
    return f"{mantissa} × 10{str(exponent).translate(SUPERSCRIPT)}"
