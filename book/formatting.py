"""Numbers as the prose writes them: scientific notation for MyST math, one way to write a table
cell (:func:`readable`), a table for a numbered, captioned ``{table}`` (:func:`markdown_table`),
and one call to hand a chapter's numbers to its text (:func:`glue_numbers`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["glue_numbers", "latex_sci", "markdown_table", "readable"]


def mantissa_exponent(value: float, digits: int) -> tuple[str, int]:
    """``1.234e-06`` with ``digits=1`` -> ``("1.2", -6)``."""
    mantissa, exponent = f"{float(value):.{digits}e}".split("e")
    return mantissa, int(exponent)


def latex_sci(value: float, digits: int = 1) -> str:
    """``1.2e-06`` as the inline math ``$1.2\\times10^{-6}$``, for the text."""
    mantissa, exponent = mantissa_exponent(value, digits)
    return f"${mantissa}\\times10^{{{exponent}}}$"


def readable(value: Any, missing: str = "none") -> str:
    """One table cell as the prose writes it: ``missing`` for None or NaN, "yes"/"no" for a
    bool, an integral number with thousands separators (``60000.0`` -> ``"60,000"``), any other
    number in its shortest form (``0.001`` -> ``"0.001"``), anything else as ``str``."""
    if value is None or (isinstance(value, Real) and not isinstance(value, bool)
                         and np.isnan(float(value))):
        return missing
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Real):
        return f"{int(value):,}" if float(value).is_integer() else f"{float(value):g}"
    return str(value)


def glue_numbers(values: Mapping[str, Any]) -> None:
    """Glue every ``key: value`` of ``values`` for the text (myst-nb's ``glue`` with
    ``display=False``), where a chapter's markdown pastes them with ``{glue:text}`key```.

    A value that is NaN or infinite is refused, naming its key: a number the text quotes is never
    a silent NaN."""
    from myst_nb import glue  # only where a notebook pastes: the package imports without it

    for key, value in values.items():
        number = isinstance(value, Real) and not isinstance(value, bool)
        if number and not np.isfinite(float(value)):
            raise ValueError(f"glue_numbers: {key!r} is {value}; a number for the text must be "
                             "finite: check the computation that produced it")
        glue(key, value, display=False)


def markdown_table(frame: pd.DataFrame, cell: Callable[[Any], str] = readable, *,
                   index_name: str | None = None, escape: bool = False):
    """``frame`` as a Markdown pipe table (an ``IPython.display.Markdown``): the index first,
    headed ``index_name`` (default: the index's name), every value written by ``cell``, the
    value columns right-aligned. Glued with ``glue(key, table, display=False)`` and pasted
    with ``{glue:md}`` inside a ``{table}`` directive, it becomes a numbered table with a
    caption, which a glued DataFrame cannot. ``escape`` puts a backslash before ``|``, ``*``
    and ``_`` in every cell and header, for text that is not meant as Markdown."""
    from IPython.display import Markdown  # only where a notebook displays it

    def text(value) -> str:
        value = str(value)
        return "".join("\\" + c if c in "|*_" else c for c in value) if escape else value

    head = [index_name if index_name is not None else (frame.index.name or ""),
            *map(str, frame.columns)]
    rows = [[text(h) for h in head], ["---", *["--:"] * len(frame.columns)]]
    rows += [[text(name), *(text(cell(v)) for v in values)]
             for name, values in zip(frame.index, frame.itertuples(index=False), strict=True)]
    return Markdown("\n".join("| " + " | ".join(row) + " |" for row in rows))
