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


def latex_sci(value: float, digits: int = 1) -> str:
    """``1.2e-06`` as the inline math ``$1.2\\times10^{-6}$``, for the text."""
    mantissa, exponent = f"{float(value):.{digits}e}".split("e")
    return f"${mantissa}\\times10^{{{int(exponent)}}}$"


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


def markdown_table(frame: pd.DataFrame, cell: Callable[[Any], str] | None = None, *,
                   missing: str = "none", index_name: str | None = None, escape: bool = False):
    """``frame`` as a Markdown pipe table (an ``IPython.display.Markdown``): the index levels
    first, headed by their names (or ``index_name`` for a single level), every value written by
    ``cell`` (default :func:`readable`, with ``missing`` for None or NaN), the value columns
    right-aligned. Glued with ``glue(key, table, display=False)`` and pasted with ``{glue:md}``
    inside a ``{table}`` directive, it becomes a numbered table with a caption, which a glued
    DataFrame cannot. A ``|`` in a cell is always escaped; ``escape`` also puts a backslash
    before ``*`` and ``_``, for text that is not meant as Markdown."""
    from IPython.display import Markdown  # only where a notebook displays it

    special = "|*_" if escape else "|"
    write = cell or (lambda value: readable(value, missing))

    def text(value) -> str:
        return "".join("\\" + c if c in special else c for c in str(value))

    names = ([index_name] if index_name is not None
             else [name or "" for name in frame.index.names])
    keys = [key if isinstance(key, tuple) else (key,) for key in frame.index]
    rows = [[text(h) for h in (*names, *map(str, frame.columns))],
            ["---"] * len(names) + ["--:"] * len(frame.columns)]
    rows += [[*map(text, key), *(text(write(v)) for v in values)]
             for key, values in zip(keys, frame.itertuples(index=False), strict=True)]
    return Markdown("\n".join("| " + " | ".join(row) + " |" for row in rows))
