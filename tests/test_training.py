"""The training loop learns, stops by its rule, and resumes an interrupted run exactly."""

import dataclasses
import importlib
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from book.mnist.models import LeNet5
from book.mnist.training import (
    HISTORY_COLUMNS,
    TrainConfig,
    TrainResult,
    run_identity,
    shifted,
    train,
    train_epoch,
)
from book.runs import RunError

# Small enough for a few seconds on two cores, large enough to learn.
TINY = TrainConfig(train_limit=2_000, val_size=1_000, max_epochs=4, patience=2, batch_size=128)
ONE_EPOCH = dataclasses.replace(TINY, max_epochs=1)


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_tiny_run_learns_and_writes_its_files(mnist, tmp_path):
    result = train("tiny", LeNet5, mnist, TINY, results_dir=tmp_path, progress=False)
    assert result.status == "fresh"
    assert list(result.history.columns) == HISTORY_COLUMNS
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
    assert result.test_acc > 0.85  # 2,000 images, 4 epochs: far above chance (0.10)
    stored = json.loads((tmp_path / "tiny.json").read_text())
    assert stored["test_acc"] == result.test_acc and stored["epochs"] == result.epochs
    assert (tmp_path / "tiny.pt").exists() and not (tmp_path / "tiny.ckpt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.pt"]

    again = train("tiny", LeNet5, mnist, TINY, results_dir=tmp_path, progress=False)
    assert again.status == "reused"
    assert again.summary() == result.summary()
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key].cpu(), value.cpu(),
                                   rtol=0, atol=0)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(mnist, tmp_path):
    straight = train("run", LeNet5, mnist, TINY, results_dir=tmp_path / "a", progress=False)

    def stop_after_two(epoch, history):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train("run", LeNet5, mnist, TINY, results_dir=tmp_path / "b", progress=False,
              on_epoch_end=stop_after_two)
    assert (tmp_path / "b" / "run.ckpt").exists()
    assert not (tmp_path / "b" / "run.json").exists()
    resumed = train("run", LeNet5, mnist, TINY, results_dir=tmp_path / "b", progress=False)
    assert resumed.status == "resumed"
    assert resumed.summary() == straight.summary()
    columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
    assert resumed.history[columns].equals(straight.history[columns])
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.slow
def test_changed_config_is_not_reused(mnist, tmp_path):
    train("run", LeNet5, mnist, TINY, results_dir=tmp_path, progress=False)
    result = train("run", LeNet5, mnist, ONE_EPOCH, results_dir=tmp_path, progress=False)
    assert result.status == "fresh" and result.epochs == 1


@pytest.mark.slow
def test_numpy_numbers_in_the_config_are_stored_as_plain_numbers(mnist, tmp_path):
    config = dataclasses.replace(ONE_EPOCH, lr=np.float32(0.01), batch_size=np.int64(128))
    assert type(config.lr) is float and type(config.batch_size) is int
    result = train("np", LeNet5, mnist, config, results_dir=tmp_path, progress=False)
    stored = json.loads((tmp_path / "np.json").read_text())["identity"]["config"]
    assert stored["lr"] == float(np.float32(0.01)) and stored["batch_size"] == 128
    assert train("np", LeNet5, mnist, config, results_dir=tmp_path,
                 progress=False).status == "reused" != result.status


class LookAlike(LeNet5):
    """Same class name, same parameters as LeNet5; max-pooling and tanh instead."""

    def __init__(self):
        super().__init__()
        self.s2, self.s4, self.act = nn.MaxPool2d(2), nn.MaxPool2d(2), nn.Tanh()


LookAlike.__name__ = LookAlike.__qualname__ = "LeNet5"


@pytest.mark.slow
def test_changed_architecture_with_the_same_name_and_size_is_retrained(mnist, tmp_path):
    train("run", LeNet5, mnist, ONE_EPOCH, results_dir=tmp_path, progress=False)
    result = train("run", LookAlike, mnist, ONE_EPOCH, results_dir=tmp_path, progress=False)
    assert result.status == "fresh"
    assert isinstance(result.model.s2, nn.MaxPool2d)


@pytest.mark.slow
def test_flipped_byte_in_stored_weights_is_refused_not_reused(mnist, tmp_path):
    train("run", LeNet5, mnist, ONE_EPOCH, results_dir=tmp_path, progress=False)
    path = tmp_path / "run.pt"
    data = bytearray(path.read_bytes())
    data[-600] ^= 0x40  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(RunError, match=r"run\.pt does not match"):
        train("run", LeNet5, mnist, ONE_EPOCH, results_dir=tmp_path, progress=False)
    again = train("run", LeNet5, mnist, ONE_EPOCH, results_dir=tmp_path, progress=False,
                  retrain=True)
    assert again.status == "fresh"


@pytest.mark.slow
def test_damaged_checkpoint_is_refused_not_resumed(mnist, tmp_path):
    def stop(epoch, history):
        raise Interrupt

    with pytest.raises(Interrupt):
        train("run", LeNet5, mnist, TINY, results_dir=tmp_path, progress=False, on_epoch_end=stop)
    path = tmp_path / "run.ckpt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(RunError, match=r"run\.ckpt is damaged"):
        train("run", LeNet5, mnist, TINY, results_dir=tmp_path, progress=False)


@pytest.mark.slow
def test_stops_when_validation_loss_stalls(mnist, tmp_path):
    config = TrainConfig(train_limit=500, val_size=500, max_epochs=30, patience=1, lr=0.05,
                         min_delta=0.0)
    result = train("stall", LeNet5, mnist, config, results_dir=tmp_path, progress=False)
    best = result.history["val_loss"].idxmin() + 1
    assert result.best_epoch == best
    assert result.epochs == best + 1 < 30  # stopped one epoch after the best, not at the cap


@pytest.mark.slow
def test_small_improvements_do_not_count(mnist, tmp_path):
    config = TrainConfig(train_limit=500, val_size=500, max_epochs=30, patience=2,
                         min_delta=0.5)
    result = train("coarse", LeNet5, mnist, config, results_dir=tmp_path, progress=False)
    losses = result.history["val_loss"].tolist()
    best = losses[result.best_epoch - 1]
    # Every epoch after the kept one failed to beat it by half; the kept one did beat all before.
    assert all(loss >= best * 0.5 for loss in losses[result.best_epoch:])
    assert result.epochs == result.best_epoch + 2


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("lr", -1.0), ("shift", 20),
                                         ("val_size", -5), ("lr_factor", 1.5),
                                         ("lr", float("nan")), ("min_delta", "0.1"),
                                         ("ema_decay", 1.0), ("batch_size", True)])
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_shift_moves_each_image_within_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    out = shifted(x, 2, g, fill=0.0)
    assert out.shape == x.shape
    assert torch.all(out.sum(dim=(1, 2, 3)) == 4)  # the blob never leaves the frame
    rows = out[:, 0].sum(2).argmax(1)
    assert set(rows.tolist()) <= {1, 2, 3, 4, 5} and len(set(rows.tolist())) > 1
    assert torch.equal(shifted(x, 0, g, fill=0.0), x)


def test_results_dir_that_is_a_file_fails_before_training(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr("book.mnist.training.train_epoch", untrainable)
    (tmp_path / "results").write_text("")
    with pytest.raises(RunError, match=f"results_dir {tmp_path / 'results'} is not a folder"):
        train("run", LeNet5, mnist, TINY, results_dir=tmp_path / "results", progress=False)


def untrainable(*args, **kwargs):
    raise Interrupt("the first epoch was interrupted")


def test_an_interrupted_first_epoch_promises_no_checkpoint(mnist, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setattr("book.mnist.training.train_epoch", untrainable)
    with pytest.raises(Interrupt):
        train("run", LeNet5, mnist, TINY, results_dir=tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "interrupted before its first checkpoint" in out and "resume" not in out
    assert not (tmp_path / "run.ckpt").exists()


def test_a_model_instance_instead_of_a_factory_is_refused_in_words(mnist, tmp_path):
    with pytest.raises(TypeError, match=r"make_model=.*not a LeNet5 instance; pass the class"):
        train("run", LeNet5(), mnist, TINY, results_dir=tmp_path, progress=False)


def test_kept_reads_the_row_of_the_kept_epoch():
    history = pd.DataFrame([{c: float(e * 10 + i) for i, c in enumerate(HISTORY_COLUMNS)}
                            for e in (1, 2, 3)], columns=HISTORY_COLUMNS)
    result = TrainResult("run", LeNet5(), history, best_epoch=2, test_acc=0.0, test_loss=0.0,
                         seconds=0.0, config=TINY, status="reused", std=1.0)
    assert result.kept("val_loss") == history["val_loss"][1] == 23.0


@pytest.mark.parametrize("decay", [0.998, 0.99, 0.9, 0.5])
def test_the_weight_average_ramps_up_to_its_decay(decay):
    config = TrainConfig(ema_decay=decay)
    assert config.ema_decay_at(0) == min(decay, 0.1)
    ramp = config.ema_ramp_steps()
    assert config.ema_decay_at(ramp) == decay
    assert ramp == 0 or config.ema_decay_at(ramp - 1) < decay
    assert TrainConfig().ema_ramp_steps() == 4490  # the book's 0.998, as chapter 1 states it


def test_train_epoch_averages_with_the_decay_ema_decay_at_gives(monkeypatch):
    torch.manual_seed(0)
    model = LeNet5()
    averaged = LeNet5()  # other weights: a decay of 0 must replace them with the model's
    monkeypatch.setattr(TrainConfig, "ema_decay_at", lambda self, step: 0.0)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, TINY,
                torch.Generator().manual_seed(0), averaged, fill=0.0)
    for mine, average in zip(model.parameters(), averaged.parameters(), strict=True):
        assert torch.equal(mine, average)


def test_a_subclass_defined_elsewhere_is_retrained_when_its_base_class_changes(tmp_path,
                                                                              monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "user_net.py").write_text(
        "from user_base import Base\n\n\nclass Net(Base):\n    pass\n")

    def identity(forward: str) -> dict:
        (tmp_path / "user_base.py").write_text(
            "from torch import nn\n\n\nclass Base(nn.Linear):\n    def __init__(self):\n"
            f"        super().__init__(2, 2)\n\n    def forward(self, x):\n        {forward}\n")
        for name in ("user_base", "user_net"):
            sys.modules.pop(name, None)
        return run_identity(importlib.import_module("user_net").Net(), TINY)

    assert identity("return super().forward(x)") != identity("return -super().forward(x)")
