"""The training loop learns, stops by its rule, and resumes an interrupted run exactly."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from book.mnist.data import load_mnist
from book.mnist.models import LeNet5
from book.mnist.training import HISTORY_COLUMNS, TrainConfig, shifted, train
from book.runs import RunError

# Small enough for a few seconds on two cores, large enough to learn.
TINY = TrainConfig(train_limit=2_000, val_size=1_000, max_epochs=4, patience=2, batch_size=128)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


class Interrupt(Exception):
    pass


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


def test_changed_config_is_not_reused(mnist, tmp_path):
    train("run", LeNet5, mnist, TINY, results_dir=tmp_path, progress=False)
    other = TrainConfig(**{**TINY.__dict__, "max_epochs": 1})
    result = train("run", LeNet5, mnist, other, results_dir=tmp_path, progress=False)
    assert result.status == "fresh" and result.epochs == 1


def test_numpy_numbers_in_the_config_are_stored_as_plain_numbers(mnist, tmp_path):
    config = TrainConfig(**{**TINY.__dict__, "max_epochs": 1, "lr": np.float32(0.01),
                            "batch_size": np.int64(128)})
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


def test_changed_architecture_with_the_same_name_and_size_is_retrained(mnist, tmp_path):
    one_epoch = TrainConfig(**{**TINY.__dict__, "max_epochs": 1})
    train("run", LeNet5, mnist, one_epoch, results_dir=tmp_path, progress=False)
    result = train("run", LookAlike, mnist, one_epoch, results_dir=tmp_path, progress=False)
    assert result.status == "fresh"
    assert isinstance(result.model.s2, nn.MaxPool2d)


def test_flipped_byte_in_stored_weights_is_refused_not_reused(mnist, tmp_path):
    one_epoch = TrainConfig(**{**TINY.__dict__, "max_epochs": 1})
    train("run", LeNet5, mnist, one_epoch, results_dir=tmp_path, progress=False)
    path = tmp_path / "run.pt"
    data = bytearray(path.read_bytes())
    data[-600] ^= 0x40  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(RunError, match=r"run\.pt does not match"):
        train("run", LeNet5, mnist, one_epoch, results_dir=tmp_path, progress=False)
    again = train("run", LeNet5, mnist, one_epoch, results_dir=tmp_path, progress=False,
                  retrain=True)
    assert again.status == "fresh"


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


def test_stops_when_validation_loss_stalls(mnist, tmp_path):
    config = TrainConfig(train_limit=500, val_size=500, max_epochs=30, patience=1, lr=0.05,
                         min_delta=0.0)
    result = train("stall", LeNet5, mnist, config, results_dir=tmp_path, progress=False)
    best = result.history["val_loss"].idxmin() + 1
    assert result.best_epoch == best
    assert result.epochs == best + 1 < 30  # stopped one epoch after the best, not at the cap


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
