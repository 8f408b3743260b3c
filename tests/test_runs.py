"""The run protocol never reuses what it should not: damaged, stale or half-written results."""

import json
import os
import subprocess
import sys

import pytest
import torch

from book.runs import (
    Run,
    RunError,
    atomic_write,
    code_digest,
    file_digest,
    remove_stale_temporaries,
)

IDENTITY = {"model": "Tiny", "config": {"lr": 0.01, "sizes": (1, 2)}}
WEIGHTS = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}


def finished_run(folder, identity=IDENTITY) -> Run:
    run = Run("tiny", identity, folder)
    run.save_checkpoint({"step": 1})
    run.finish(WEIGHTS, {"history": [1.0, 0.5]})
    return run


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_finished_run_is_reused_with_identical_weights(tmp_path):
    finished_run(tmp_path)
    record, weights = Run("tiny", IDENTITY, tmp_path).finished()
    assert record["history"] == [1.0, 0.5]
    assert record["weights_sha256"] == file_digest(tmp_path / "tiny.pt")
    for key, value in WEIGHTS.items():
        assert torch.equal(weights[key], value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.pt"]


def test_identity_compares_as_stored_in_json(tmp_path):
    finished_run(tmp_path)  # (1, 2) is stored as [1, 2]; the same identity must still match
    assert Run("tiny", {"config": {"sizes": [1, 2], "lr": 0.01}, "model": "Tiny"},
               tmp_path).finished() is not None


def test_run_of_another_identity_is_retrained_not_loaded(tmp_path):
    finished_run(tmp_path)
    assert Run("tiny", {**IDENTITY, "model": "Other"}, tmp_path).finished() is None


def test_flipped_byte_in_weights_is_refused_with_the_file_and_the_fix(tmp_path):
    finished_run(tmp_path)
    flip_byte(tmp_path / "tiny.pt", (tmp_path / "tiny.pt").stat().st_size - 100)
    with pytest.raises(RunError, match=r"tiny\.pt does not match the SHA-256.*retrain=True"):
        Run("tiny", IDENTITY, tmp_path).finished()


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"identity": {}}'])
def test_damaged_record_is_refused_with_its_name(tmp_path, content):
    finished_run(tmp_path)
    (tmp_path / "tiny.json").write_bytes(content)
    with pytest.raises(RunError, match=r"tiny\.json .*delete it, or pass retrain=True"):
        Run("tiny", IDENTITY, tmp_path).finished()


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_checkpoint_is_refused_with_its_name(tmp_path, damage):
    run = Run("tiny", IDENTITY, tmp_path)
    run.save_checkpoint({"weights": WEIGHTS, "step": 3})
    path = tmp_path / "tiny.ckpt"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 50])
    elif damage == "flip":
        flip_byte(path, len(data) - 200)
    elif damage == "garbage":
        path.write_bytes(os.urandom(500))
    else:
        path.write_bytes(b"")
    with pytest.raises(RunError, match=r"tiny\.ckpt .*retrain=True"):
        Run("tiny", IDENTITY, tmp_path).checkpoint()


def test_checkpoint_round_trips_and_ignores_another_identity(tmp_path):
    Run("tiny", IDENTITY, tmp_path).save_checkpoint({"weights": WEIGHTS, "step": 3})
    state = Run("tiny", IDENTITY, tmp_path).checkpoint()
    assert state["step"] == 3 and torch.equal(state["weights"]["w"], WEIGHTS["w"])
    assert Run("tiny", {"model": "Other"}, tmp_path).checkpoint() is None


def test_kill_between_weights_and_record_resumes_instead_of_mixing_runs(tmp_path):
    finished_run(tmp_path)  # an old finished run ...
    run = Run("tiny", IDENTITY, tmp_path)
    run.save_checkpoint({"step": 9})  # ... then a new one reaches its end and writes weights
    torch.save({"w": torch.zeros(2, 3)}, tmp_path / "tiny.pt")  # killed before the record
    assert run.finished() is None  # the record does not match: resume, do not mix
    assert run.checkpoint() == {"step": 9}


def test_an_interrupted_retrain_keeps_the_finished_run(tmp_path):
    finished_run(tmp_path)
    retrain = Run("tiny", IDENTITY, tmp_path, retrain=True)
    assert retrain.finished() is None and retrain.checkpoint() is None  # trains from scratch
    retrain.save_checkpoint({"step": 1})  # ... and is killed before it finishes
    record, weights = Run("tiny", IDENTITY, tmp_path).finished()
    assert record["history"] == [1.0, 0.5] and torch.equal(weights["w"], WEIGHTS["w"])


def test_identity_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON-able"):
        Run("tiny", {"dtype": torch.float16}, tmp_path)


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", None])
def test_bad_run_name_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="plain file stem"):
        Run(name, IDENTITY, tmp_path)


def test_code_digest_changes_with_the_source():
    def f():
        return 1

    def g():
        return 2

    assert code_digest(f) != code_digest(g)
    assert code_digest(json) == code_digest(json) and len(code_digest(json)) == 16


def test_stale_temporary_of_a_killed_write_is_removed_a_live_one_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".tiny.pt.{dead}.abc123.tmp"
    live = tmp_path / f".tiny.pt.{os.getpid()}.def456.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"in progress")
    Run("tiny", IDENTITY, tmp_path)
    assert not stale.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path) == []


def test_read_only_folder_is_named_not_a_temporary_file(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):  # what mkstemp raises in a folder without write permission
        raise PermissionError(13, "Permission denied", str(tmp_path / ".x.json.1.abc.tmp"))

    monkeypatch.setattr("book.runs.tempfile.mkstemp", refuse)  # root may write anywhere
    with pytest.raises(PermissionError, match=f"folder {tmp_path} is not writable") as error:
        atomic_write(tmp_path / "x.json", lambda f: f.write(b"{}"))
    assert ".tmp" not in str(error.value)
