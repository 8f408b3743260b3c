"""The run protocol never reuses what it should not: damaged, stale or half-written results."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from book.runs import (
    Run,
    RunError,
    Stages,
    atomic_write,
    code_digest,
    read_record,
    remove_stale_temporaries,
    run_in_stages,
)

IDENTITY = {"model": "Tiny", "config": {"lr": 0.01, "sizes": (1, 2)}}
WEIGHTS = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3)}


def finished_run(folder, identity=IDENTITY) -> Run:
    run = Run("tiny", identity, folder)
    run.save_checkpoint({"step": 1})
    run.finish(WEIGHTS, {"history": [1.0, 0.5]})
    return run


def file_digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def test_an_edited_record_is_refused_not_reported_as_the_result(tmp_path):
    finished_run(tmp_path)
    path = tmp_path / "tiny.json"
    record = read_record(path)
    assert record["history"] == [1.0, 0.5]
    record["history"] = [1.0, 0.25]  # a better result, typed in
    path.write_text(json.dumps(record, indent=2))
    for read in (lambda: read_record(path), Run("tiny", IDENTITY, tmp_path).finished):
        with pytest.raises(RunError, match=r"tiny\.json does not match its own SHA-256.*retrain="):
            read()


def test_every_flipped_bit_in_the_record_is_refused_never_reused_or_retrained(tmp_path):
    finished_run(tmp_path)
    path = tmp_path / "tiny.json"
    intact = path.read_bytes()
    for offset in range(len(intact)):
        for bit in (0x01, 0x20):
            damaged = bytearray(intact)
            damaged[offset] ^= bit
            path.write_bytes(bytes(damaged))
            with pytest.raises(RunError, match=r"tiny\.json .*delete it, or pass retrain=True"):
                Run("tiny", IDENTITY, tmp_path).finished()


@pytest.mark.parametrize("field", ["identity", "weights_sha256", "history", "record_sha256"])
def test_a_record_missing_a_field_is_refused_with_its_name_not_a_key_error(tmp_path, field):
    finished_run(tmp_path)
    path = tmp_path / "tiny.json"
    record = json.loads(path.read_text())
    del record[field]
    path.write_text(json.dumps(record))
    with pytest.raises(RunError, match=r"tiny\.json .*delete it, or pass retrain=True"):
        Run("tiny", IDENTITY, tmp_path).finished()


def test_finish_records_the_digest_of_the_bytes_it_wrote(tmp_path, monkeypatch):
    write = atomic_write

    def another_process_replaces_the_weights(path, writer):
        done = write(path, writer)
        if done.suffix == ".pt":  # between the write and anything that follows it
            torch.save({"w": torch.zeros(2, 3)}, done)
        return done

    monkeypatch.setattr("book.runs.atomic_write", another_process_replaces_the_weights)
    record = Run("tiny", IDENTITY, tmp_path).finish(WEIGHTS, {})
    monkeypatch.undo()
    assert record["weights_sha256"] != file_digest(tmp_path / "tiny.pt")
    with pytest.raises(RunError, match=r"tiny\.pt does not match the SHA-256"):
        Run("tiny", IDENTITY, tmp_path).finished()


def test_finished_loads_the_bytes_it_checked(tmp_path, monkeypatch):
    finished_run(tmp_path)
    load = torch.load

    def another_process_replaces_the_weights(source, *args, **kwargs):
        torch.save({"w": torch.zeros(2, 3)}, tmp_path / "tiny.pt")  # after the digest check
        return load(source, *args, **kwargs)

    monkeypatch.setattr(torch, "load", another_process_replaces_the_weights)
    _, weights = Run("tiny", IDENTITY, tmp_path).finished()
    assert torch.equal(weights["w"], WEIGHTS["w"])


def test_a_run_of_another_torch_version_is_retrained(tmp_path, monkeypatch):
    finished_run(tmp_path)
    monkeypatch.setattr(torch, "__version__", "1.0.0")
    assert Run("tiny", IDENTITY, tmp_path).finished() is None


def test_a_deleted_weights_file_beside_its_record_is_refused_with_the_fix(tmp_path):
    finished_run(tmp_path)
    (tmp_path / "tiny.pt").unlink()
    with pytest.raises(RunError, match=r"tiny\.pt is missing, but .*tiny\.json records it.*"
                                       r"delete the record too, or pass retrain=True"):
        Run("tiny", IDENTITY, tmp_path).finished()


def test_results_dir_that_is_a_file_is_refused_at_once_by_its_name(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(RunError, match=f"results_dir {tmp_path / 'results'} is not a folder"):
        Run("tiny", IDENTITY, tmp_path / "results")


def test_a_folder_where_a_file_goes_is_named_not_a_temporary_file(tmp_path):
    (tmp_path / "tiny.pt").mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot write {tmp_path / 'tiny.pt'}: a folder"):
        atomic_write(tmp_path / "tiny.pt", lambda f: f.write(b"weights"))
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"]


def test_the_training_loop_is_resumed_stage_by_stage(tmp_path):
    class Count(Stages):
        checkpointed = ("step", "generator")

        def __init__(self, stop_at=None):
            self.step, self.stop_at = 0, stop_at
            self.generator = torch.Generator().manual_seed(0)
            self.draws = []

        def done(self):
            return self.step >= 4

        def stage(self):
            if self.step == self.stop_at:
                raise KeyboardInterrupt
            self.draws.append(torch.rand(1, generator=self.generator).item())
            self.step += 1

        def outcome(self):
            return {"w": torch.tensor([float(self.step)])}, {"draws": self.draws}

    run = Run("tiny", IDENTITY, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_in_stages(run, lambda: Count(stop_at=2))
    record, weights, status = run_in_stages(run, Count)
    assert status == "resumed" and weights["w"].item() == 4
    straight = torch.rand(4, generator=torch.Generator().manual_seed(0)).tolist()
    assert record["draws"] == straight[2:]  # the generator continued where it stopped
    assert run_in_stages(run, Count)[2] == "reused"
