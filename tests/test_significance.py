"""McNemar's exact test: the binomial tail by hand, symmetry, and refusals."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from book.mnist.significance import difference_interval, mcnemar_exact


def outcomes(only_a: int, only_b: int, both: int = 5, neither: int = 3):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return torch.tensor(a), torch.tensor(b)


def test_one_disagreement_against_nine_has_the_hand_computed_p_value():
    result = mcnemar_exact(*outcomes(9, 1))
    assert (result.only_a, result.only_b) == (9, 1)
    assert result.p_value == pytest.approx(2 * (1 + 10) / 2**10)  # P(X <= 1), X ~ B(10, 1/2)


def test_digits_both_get_right_or_wrong_carry_no_evidence():
    assert mcnemar_exact(*outcomes(6, 2, both=0, neither=0)) == mcnemar_exact(
        *outcomes(6, 2, both=900, neither=40))


def test_classifiers_that_never_disagree_have_p_value_one():
    assert mcnemar_exact(*outcomes(0, 0)).p_value == 1.0


def test_an_even_split_has_p_value_one():
    assert mcnemar_exact(*outcomes(7, 7)).p_value == 1.0


@given(st.integers(0, 300), st.integers(0, 300))
def test_the_test_is_symmetric_and_a_probability(only_a, only_b):
    forward = mcnemar_exact(*outcomes(only_a, only_b))
    a, b = outcomes(only_a, only_b)
    backward = mcnemar_exact(b, a)
    assert forward.p_value == backward.p_value
    assert (backward.only_a, backward.only_b) == (only_b, only_a)
    assert 0 < forward.p_value <= 1 and math.isfinite(forward.p_value)


def test_a_thousand_to_none_is_tiny_but_not_zero():
    assert 0 < mcnemar_exact(*outcomes(1000, 0)).p_value < 1e-300


def test_non_bool_or_mismatched_inputs_are_refused_with_their_names():
    a, b = outcomes(3, 2)
    with pytest.raises(ValueError, match="right_a must be a bool tensor"):
        mcnemar_exact(a.int(), b)
    with pytest.raises(ValueError, match="same examples"):
        mcnemar_exact(a, b[:-1])


def test_the_difference_interval_is_centred_on_the_difference_with_the_paired_variance():
    a, b = outcomes(82, 67, both=9_800, neither=51)  # 10,000 examples
    low, high = difference_interval(a, b)
    n, diff = 10_000, 82 - 67
    half = 1.96 * math.sqrt(82 + 67 - diff**2 / n) / n
    assert (low, high) == pytest.approx((diff / n - half, diff / n + half))
    assert low < 0 < high  # 15 digits out of 149 disagreements: not resolved


def test_the_interval_of_classifiers_that_never_disagree_is_a_point_at_zero():
    assert difference_interval(*outcomes(0, 0)) == (0.0, 0.0)


@given(st.integers(0, 200), st.integers(0, 200))
def test_swapping_the_classifiers_mirrors_the_interval(only_a, only_b):
    a, b = outcomes(only_a, only_b)
    low, high = difference_interval(a, b)
    back_low, back_high = difference_interval(b, a)
    assert (back_low, back_high) == pytest.approx((-high, -low))
    assert low <= (only_a - only_b) / len(a) <= high
