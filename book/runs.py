"""One protocol for every training run in the book: reuse, resume, checkpoint, finish.

A run has a ``name`` (its files are ``results/<name>.*``) and an ``identity``: a JSON-able dict
of everything that decides its result (the model's structure and the source of every module its
class and base classes come from, the training code, the data, the configuration), to which
:class:`Run` adds the torch version. Its files are the checkpoint of an unfinished run
(``.ckpt``, :meth:`Run.save_checkpoint`), the finished weights (``.pt``, a plain state dict)
and the record (``.json``, :func:`read_record`), each written atomically (:func:`atomic_write`).

Choices, and why:

- A finished run with the same identity whose weights match the record's digest is reused; one
  of another identity is retrained (its files are overwritten when it finishes); a damaged file
  raises :class:`RunError` naming it, what is wrong and the fix.
- ``retrain=True`` ignores the finished run and the checkpoint but deletes nothing: the new
  run's files replace the old ones only when it finishes, so an interrupted retrain keeps the
  old result (a later call without ``retrain`` reuses it).
- A record of this identity whose weights file is missing is refused, not retrained: the record
  says the result exists, so its loss is damage to be fixed by whoever deleted it (delete the
  record too, or pass ``retrain=True``), not something to paper over with a new run that may
  take an hour and differ in its timings.
- The bytes that are hashed are the bytes that are written, and the bytes that are loaded are
  the bytes that were checked, so another process replacing a file in between cannot pair one
  run's record with another's weights.
- :meth:`Run.finish` writes the weights, then the record, then deletes the checkpoint: a kill
  between those writes leaves the checkpoint, and the next call resumes from it.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import torch

from book.paths import RESULTS_DIR

__all__ = ["Run", "RunError", "Stages", "atomic_write", "code_digest", "model_code_digest",
           "read_record", "record_digest", "remove_stale_temporaries", "run_in_stages"]

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")
# Code whose changes the torch version in every identity already stands for.
_NOT_OURS = ("torch", "builtins", "typing")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it to ``path``
    (``os.replace`` is atomic on POSIX within one file system: a reader sees either the old file
    or the complete new one).

    A folder that cannot be written, or a folder standing where the file should go, is
    reported by its own name, not the temporary file's.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: a folder of that name is in the way; "
                                "remove it or choose another name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp")
    except PermissionError:
        raise PermissionError(f"cannot write {path}: the folder {path.parent} is not writable; "
                              "make it writable or choose another folder") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` (``.<target>.<pid>.<random>.tmp``) whose
    writing process has ended, left by a killed write; return them.

    A write that is still running (another process, or this one) keeps its file.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FIX = "delete it, or pass retrain=True to train from scratch"


class RunError(RuntimeError):
    """A stored result or checkpoint is damaged, or cannot be written."""


def code_digest(*objects: Any) -> str:
    """SHA-256 (first 16 hex digits) of the source code of modules, classes or functions.

    A class contributes the source of every class in its MRO defined outside ``torch`` and
    ``builtins``, so a changed base class changes the digest of its subclasses.
    """
    sha = hashlib.sha256()
    for obj in objects:
        parts = [obj]
        if inspect.isclass(obj):
            parts = [c for c in obj.__mro__ if c.__module__.split(".")[0] not in _NOT_OURS]
        for part in parts:
            sha.update(f"{getattr(part, '__qualname__', part.__name__)}\n".encode())
            sha.update(inspect.getsource(part).encode())
    return sha.hexdigest()[:16]


def model_code_digest(model_class: type) -> str:
    """:func:`code_digest` of every module that defines ``model_class`` or one of its base
    classes outside torch: a subclass of ``LeNet5`` defined in a user's file changes its
    digest when ``LeNet5``'s module changes, and so do the helpers those modules hold."""
    modules: list[ModuleType] = []
    for cls in model_class.__mro__:
        module = inspect.getmodule(cls)
        if cls.__module__.split(".")[0] not in _NOT_OURS and module not in modules:
            modules.append(module)
    return code_digest(*modules)


def _canonical(identity: dict) -> dict:
    """The identity as it reads back from JSON (tuples become lists, keys are strings)."""
    try:
        return json.loads(json.dumps(identity, sort_keys=True))
    except TypeError as error:
        raise TypeError(f"a run identity must be JSON-able: {error}") from None


def record_digest(record: dict) -> str:
    """SHA-256 (hex) of a record's canonical form: sorted keys, no spaces, ASCII, without its
    own ``record_sha256``; the same for the record as written and as read back."""
    fields = {k: v for k, v in record.items() if k != "record_sha256"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_record(path: str | os.PathLike) -> dict:
    """The record of a finished run (``<name>.json``): the identity, the weights' SHA-256, what
    the trainer stores (history, scores) and ``record_sha256``, checked.

    Its own digest (:func:`record_digest`) is checked before anything in it is trusted, the
    identity included, so an edited or damaged record is refused, never reused and never
    mistaken for another identity's run and overwritten. Raises :class:`RunError` naming the
    file, what is wrong and the fix.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON ({error}); {FIX}") from None
    if not isinstance(record, dict):
        raise RunError(f"{path} is not a run record (not a JSON object); {FIX}")
    if record.get("record_sha256") != record_digest(record):
        raise RunError(f"{path} does not match its own SHA-256 (record_sha256, missing or "
                       f"wrong): it was edited, damaged or written by an older version, and "
                       f"nothing in it can be trusted; {FIX}")
    missing = [k for k in ("identity", "weights_sha256") if k not in record]
    if missing:
        raise RunError(f"{path} is not a run record (missing {missing}); {FIX}")
    return record


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _torch_load(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class Run:
    """The files of one named training run and the rules for using them."""

    def __init__(self, name: str, identity: dict, results_dir: str | Path = RESULTS_DIR, *,
                 retrain: bool = False) -> None:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"name must be a plain file stem such as 'lenet5', got {name!r}")
        self.name = name
        self.identity = _canonical({**identity, "torch": torch.__version__})
        self.retrain = retrain
        self.folder = Path(results_dir)
        self.record_path = self.folder / f"{name}.json"
        self.weights_path = self.folder / f"{name}.pt"
        self.checkpoint_path = self.folder / f"{name}.ckpt"
        try:  # now, not after the first stage's training, when the checkpoint is written
            self.folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunError(f"results_dir {self.folder} is not a folder (a file stands at it or "
                           "above it); move that file, or pass another results_dir") from None
        remove_stale_temporaries(self.folder)

    # --- a finished run ------------------------------------------------------------------

    def finished(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """``(record, weights)`` of a finished run with this identity, or None.

        None also with ``retrain=True``, when the stored run has another identity (it will
        be retrained) and when its record does not match the weights but a checkpoint
        exists (a finish that was interrupted: it resumes from the checkpoint).
        """
        if self.retrain or not self.record_path.exists():
            return None
        record = read_record(self.record_path)
        if record["identity"] != self.identity:
            return None
        try:
            data = self.weights_path.read_bytes()
        except FileNotFoundError:
            raise RunError(f"{self.weights_path} is missing, but {self.record_path} records it "
                           "as this run's result; delete the record too, or pass retrain=True "
                           "to train from scratch") from None
        if hashlib.sha256(data).hexdigest() != record["weights_sha256"]:
            if self.checkpoint_path.exists():
                return None
            raise RunError(f"{self.weights_path} does not match the SHA-256 recorded in "
                           f"{self.record_path}: the weights are damaged or belong to another "
                           f"run; {FIX}")
        try:
            weights = _torch_load(data)
        except Exception as error:  # a digest that matches damaged bytes: written damaged
            raise RunError(f"{self.weights_path} cannot be read ({error}); {FIX}") from None
        return record, weights

    def finish(self, weights: dict[str, torch.Tensor], record: dict) -> dict:
        """Store the finished run: weights, then the record (with identity, the weights'
        digest and its own), then delete the checkpoint. Returns the record as stored."""
        data = _torch_bytes({k: v.detach().cpu() for k, v in weights.items()})
        atomic_write(self.weights_path, lambda f: f.write(data))
        stored = json.loads(json.dumps({**record, "identity": self.identity,
                                        "weights_sha256": hashlib.sha256(data).hexdigest()}))
        stored["record_sha256"] = record_digest(stored)
        text = (json.dumps(stored, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(self.record_path, lambda f: f.write(text))
        self.checkpoint_path.unlink(missing_ok=True)
        return stored

    # --- an unfinished run ---------------------------------------------------------------

    def checkpoint(self) -> dict | None:
        """The state last given to :meth:`save_checkpoint` by a run with this identity, or
        None (no checkpoint, ``retrain=True``, or one of another identity, which is left to
        be overwritten)."""
        if self.retrain or not self.checkpoint_path.exists():
            return None
        data = self.checkpoint_path.read_bytes()
        header, _, payload = data.partition(b"\n")
        try:
            header = json.loads(header)
            identity, digest, size = header["identity"], header["sha256"], header["bytes"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise RunError(f"{self.checkpoint_path} is not a checkpoint (its header is "
                           f"unreadable); {FIX}") from None
        if identity != self.identity:
            return None
        if len(payload) != size or hashlib.sha256(payload).hexdigest() != digest:
            raise RunError(f"{self.checkpoint_path} is damaged (its contents do not match the "
                           f"SHA-256 in its header); {FIX}")
        return _torch_load(payload)

    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (anything ``torch.save`` takes) atomically, with this identity.

        One file: a JSON header line (identity, SHA-256 and length of the payload), then the
        ``torch.save`` payload, so a damaged or truncated checkpoint is refused before
        unpickling and a checkpoint of another identity is recognised without reading it.
        """
        payload = _torch_bytes(state)
        header = json.dumps({"identity": self.identity, "bytes": len(payload),
                             "sha256": hashlib.sha256(payload).hexdigest()}, sort_keys=True)
        atomic_write(self.checkpoint_path, lambda f: f.write(header.encode() + b"\n" + payload))


class Stages(abc.ABC):
    """A training run cut into stages (an epoch; a few hundred steps), as
    :func:`run_in_stages` drives it.

    ``checkpointed`` names the attributes that are the whole state between two stages:
    modules, optimizers and schedulers (stored by ``state_dict``), ``torch.Generator``
    (by ``get_state``) and plain values (numbers, lists, dicts, tensors).
    """

    checkpointed: tuple[str, ...] = ()

    @abc.abstractmethod
    def done(self) -> bool:
        """True when no stage is left."""

    @abc.abstractmethod
    def stage(self) -> None:
        """Run the next stage."""

    @abc.abstractmethod
    def outcome(self) -> tuple[dict[str, torch.Tensor], dict]:
        """The weights to keep and the record to store with them (JSON-able)."""

    def state_dict(self) -> dict[str, Any]:
        state = {}
        for name in self.checkpointed:
            value = getattr(self, name)
            if isinstance(value, torch.Generator):
                state[name] = value.get_state()
            elif hasattr(value, "state_dict"):
                state[name] = value.state_dict()
            else:
                state[name] = value
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.checkpointed:
            value = getattr(self, name)
            if isinstance(value, torch.Generator):
                value.set_state(state[name])
            elif hasattr(value, "load_state_dict"):
                value.load_state_dict(state[name])
            else:
                setattr(self, name, state[name])


def run_in_stages(run: Run, start: Callable[[], Stages], *,
                  after_stage: Callable[[Stages], None] | None = None,
                  ) -> tuple[dict, dict[str, torch.Tensor], str]:
    """Reuse ``run`` if it is finished; otherwise resume it from its checkpoint (or begin),
    run the stages with a checkpoint after each, and finish it.

    ``start()`` builds the training state, only when there is training to do;
    ``after_stage(training)`` is called after each stage's checkpoint is written. Returns
    ``(record, weights, status)``, ``status`` being ``"reused"``, ``"resumed"`` or
    ``"fresh"``.
    """
    found = run.finished()
    if found is not None:
        return (*found, "reused")
    training = start()
    status = "fresh"
    state = run.checkpoint()
    if state is not None:
        training.load_state_dict(state)
        status = "resumed"
    while not training.done():
        training.stage()
        run.save_checkpoint(training.state_dict())
        if after_stage is not None:
            after_stage(training)
    weights, record = training.outcome()
    return run.finish(weights, record), weights, status
