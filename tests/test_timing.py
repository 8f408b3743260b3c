"""The timing helper measures real work and refuses a meaningless budget."""

import time

import pytest

from book.speed.timing import median_seconds


def test_median_tracks_the_work_done():
    fast = median_seconds(lambda: None, min_run_time=0.05)
    slow = median_seconds(lambda: time.sleep(0.002), min_run_time=0.05)
    assert 0 < fast < 0.001
    assert 0.0015 < slow < 0.05


@pytest.mark.parametrize("bad", [0, -1.0])
def test_non_positive_run_time_is_refused(bad):
    with pytest.raises(ValueError, match="min_run_time"):
        median_seconds(lambda: None, min_run_time=bad)
