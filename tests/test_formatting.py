"""Numbers in the tables are written as the prose writes them."""

import numpy as np
import pandas as pd
import pytest

from book.formatting import glue_numbers, latex_sci, markdown_table, readable


def test_scientific_notation_for_math():
    assert latex_sci(1.234e-6) == "$1.2\\times10^{-6}$"


@pytest.mark.parametrize(("value", "shown"), [
    (None, "none"), (float("nan"), "none"), (True, "yes"), (np.False_, "no"), (60000, "60,000"),
    (60000.0, "60,000"), (np.int64(1234), "1,234"), (0.001, "0.001"), (2.5e-4, "0.00025"),
    ("adam", "adam")])
def test_readable_writes_a_cell_as_the_prose_does(value, shown):
    assert readable(value) == shown


def test_readable_names_what_is_missing_in_the_table_s_own_word():
    assert readable(None, missing="never") == "never"


def test_glue_numbers_refuses_a_nan_naming_its_key():
    with pytest.raises(ValueError, match="'acc_pct' is nan"):
        glue_numbers({"acc_pct": float("nan")})


def test_markdown_table_writes_the_index_first_and_each_value_as_the_prose_does():
    frame = pd.DataFrame({"mults": [416_520, 62_144], "share": [0.5, None]},
                         index=pd.Index(["LeNet-5", "DSC"], name="net"))
    assert markdown_table(frame).data.splitlines() == [
        "| net | mults | share |", "| --- | --: | --: |",
        "| LeNet-5 | 416,520 | 0.5 |", "| DSC | 62,144 | none |"]


def test_markdown_table_escapes_only_when_asked():
    frame = pd.DataFrame({"a_b": ["x|y"]}, index=["*"])
    assert markdown_table(frame, str).data.splitlines()[2] == "| * | x\\|y |"  # | always
    assert markdown_table(frame, str, escape=True).data.splitlines()[0] == "|  | a\\_b |"
    assert markdown_table(frame, str, escape=True).data.splitlines()[2] == "| \\* | x\\|y |"


def test_markdown_table_puts_each_index_level_in_its_own_column():
    index = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["net", "batch"])
    frame = pd.DataFrame({"ms": [1.5, None]}, index=index)
    assert markdown_table(frame, missing="never").data.splitlines() == [
        "| net | batch | ms |", "| --- | --- | --: |", "| a | 1 | 1.5 |", "| b | 2 | never |"]
