"""The interleaved timer alternates its contenders, measures real work, reports the spread,
and refuses meaningless arguments."""

import time

import pandas as pd
import pytest
import torch

from book.speed.timing import forward_seconds, interleaved_seconds, spread, threads


def test_rounds_alternate_the_order_of_the_contenders():
    calls = []

    def contender(name):
        def fn():
            calls.append(name)
            time.sleep(0.002)
        return fn

    # one call a block: each call lasts longer than the block
    times = interleaved_seconds({n: contender(n) for n in "abc"}, rounds=4,
                                block_seconds=0.0005)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up and calibration
    assert calls[6:] == list("abc" "cba" "abc" "cba")
    assert list(times.columns) == ["a", "b", "c"] and len(times) == 4


def test_the_times_are_seconds_per_call_of_each_contender():
    times = interleaved_seconds({"idle": lambda: None, "sleep": lambda: time.sleep(0.003)},
                                rounds=3, block_seconds=0.01)
    # a sleep lasts at least as long as asked, however busy the machine; no upper bound holds
    assert (times["sleep"] >= 0.003).all()
    assert (times["idle"] < times["sleep"]).all()


def test_spread_gives_median_quartiles_and_range_per_column():
    table = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 100.0], "b": [5.0] * 5})
    result = spread(table)
    assert result.loc["a"].to_dict() == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0,
                                         "max": 100.0}
    assert result.loc["b", "median"] == 5.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fns": {}}, "fns"),
    ({"fns": {"a": lambda: None}, "rounds": 0}, "rounds"),
    ({"fns": {"a": lambda: None}, "block_seconds": 0}, "block_seconds"),
])
def test_bad_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        interleaved_seconds(**kwargs)


def test_threads_sets_and_restores_the_thread_count_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be a positive int"):
        with threads(0):
            pass


def test_forward_seconds_times_each_model_in_eval_mode_and_restores_its_flags():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append((self.training, torch.is_inference_mode_enabled()))
            return x

    models = {"a": Probe().train(), "b": torch.nn.Sequential(Probe()).eval()}
    times = forward_seconds(models, torch.zeros(1), rounds=2, block_seconds=0.0001)
    assert list(times.columns) == ["a", "b"] and len(times) == 2
    assert set(seen) == {(False, True)}
    assert models["a"].training and not models["b"].training
