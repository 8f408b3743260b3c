"""One protocol for every training run in the book: reuse, resume, checkpoint, finish.

A run has a ``name`` (its files are ``results/<name>.*``) and an ``identity``: a JSON-able
dict of everything that decides its result (the model's structure and source, the training
code, the data, the configuration). Its files:

- ``<name>.ckpt``: the checkpoint of an unfinished run, rewritten atomically after each
  stage. One file: a JSON header line (identity, SHA-256 and length of the payload), then
  the ``torch.save`` payload, so a damaged or truncated checkpoint is refused before
  unpickling and a checkpoint of another identity is recognised without reading it.
- ``<name>.pt``: the finished weights, a plain state dict (``torch.load`` reads it).
- ``<name>.json``: the record: the identity, the weights' SHA-256 and what the trainer
  stores (history, scores).

The protocol (:class:`Run`): a finished run with the same identity whose weights match the
record's digest is reused; a run of another identity is retrained (its files are
overwritten when it finishes); a damaged file raises :class:`RunError` naming it, what is
wrong and the fix. :meth:`Run.finish` writes the weights, then the record, then deletes the
checkpoint: a kill between those writes leaves the checkpoint, and the next call resumes
from it and finishes again, so the pair on disk is never one run's record beside another
run's weights.

Every file is written atomically (:func:`atomic_write`): to a temporary file beside the target,
then renamed. ``os.replace`` is atomic on POSIX within one file system, so a reader sees either
the old file or the complete new one. A temporary file is named ``.<target>.<pid>.<random>.tmp``;
one whose writing process no longer exists was left by a killed write and is removed by
:func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from book.paths import RESULTS_DIR

__all__ = ["Run", "RunError", "atomic_write", "code_digest", "file_digest",
           "remove_stale_temporaries"]

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then rename it to ``path``.

    A folder that cannot be written is reported by its own name, not the temporary file's.
    """
    path = Path(path)
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
    """Delete the temporary files in ``folder`` whose writing process has ended; return them.

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


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))



def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: str | os.PathLike) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


FIX = "delete it, or pass retrain=True to train from scratch"


class RunError(RuntimeError):
    """A stored result or checkpoint is damaged, or cannot be written."""


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_digest(*objects: Any) -> str:
    """SHA-256 (first 16 hex digits) of the source code of modules, classes or functions.

    A class contributes the source of every class in its MRO defined outside ``torch`` and
    ``builtins``, so a changed base class changes the digest of its subclasses.
    """
    sha = hashlib.sha256()
    for obj in objects:
        parts = [obj]
        if inspect.isclass(obj):
            parts = [c for c in obj.__mro__
                     if c.__module__.split(".")[0] not in ("torch", "builtins", "typing")]
        for part in parts:
            sha.update(f"{getattr(part, '__qualname__', part.__name__)}\n".encode())
            sha.update(inspect.getsource(part).encode())
    return sha.hexdigest()[:16]


def _canonical(identity: dict) -> dict:
    """The identity as it reads back from JSON (tuples become lists, keys are strings)."""
    try:
        return json.loads(json.dumps(identity, sort_keys=True))
    except TypeError as error:
        raise TypeError(f"a run identity must be JSON-able: {error}") from None


class Run:
    """The files of one named training run and the rules for using them."""

    def __init__(self, name: str, identity: dict, results_dir: str | Path = RESULTS_DIR, *,
                 retrain: bool = False) -> None:
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ValueError(f"name must be a plain file stem such as 'lenet5', got {name!r}")
        self.name = name
        self.identity = _canonical(identity)
        self.folder = Path(results_dir)
        self.record_path = self.folder / f"{name}.json"
        self.weights_path = self.folder / f"{name}.pt"
        self.checkpoint_path = self.folder / f"{name}.ckpt"
        remove_stale_temporaries(self.folder)
        if retrain:
            for path in (self.record_path, self.weights_path, self.checkpoint_path):
                path.unlink(missing_ok=True)

    # --- a finished run ------------------------------------------------------------------

    def finished(self) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """``(record, weights)`` of a finished run with this identity, or None.

        None also when the stored run has another identity (it will be retrained) or when
        its record does not match the weights but a checkpoint exists (a finish that was
        interrupted: it resumes from the checkpoint).
        """
        if not (self.record_path.exists() and self.weights_path.exists()):
            return None
        record = self._record()
        if record["identity"] != self.identity:
            return None
        if file_digest(self.weights_path) != record["weights_sha256"]:
            if self.checkpoint_path.exists():
                return None
            raise RunError(f"{self.weights_path} does not match the SHA-256 recorded in "
                           f"{self.record_path}: the weights are damaged or belong to another "
                           f"run; {FIX}")
        try:
            weights = load_torch(self.weights_path)
        except Exception as error:  # a digest that matches damaged bytes: written damaged
            raise RunError(f"{self.weights_path} cannot be read ({error}); {FIX}") from None
        return record, weights

    def _record(self) -> dict:
        try:
            record = json.loads(self.record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RunError(f"{self.record_path} is not valid JSON ({error}); {FIX}") from None
        missing = [k for k in ("identity", "weights_sha256")
                   if not isinstance(record, dict) or k not in record]
        if missing:
            raise RunError(f"{self.record_path} is not a run record (missing {missing}); "
                           f"{FIX}")
        return record

    def finish(self, weights: dict[str, torch.Tensor], record: dict) -> dict:
        """Store the finished run: weights, then the record (with identity and the weights'
        digest), then delete the checkpoint. Returns the record as stored."""
        save_torch(self.weights_path, {k: v.detach().cpu() for k, v in weights.items()})
        stored = {**record, "identity": self.identity,
                  "weights_sha256": file_digest(self.weights_path)}
        save_json(self.record_path, stored)
        self.checkpoint_path.unlink(missing_ok=True)
        return json.loads(json.dumps(stored))

    # --- an unfinished run ---------------------------------------------------------------

    def checkpoint(self) -> dict | None:
        """The state last given to :meth:`save_checkpoint` by a run with this identity, or
        None (no checkpoint, or one of another identity, which is left to be overwritten)."""
        if not self.checkpoint_path.exists():
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
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)

    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (anything ``torch.save`` takes) atomically, with this identity."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
        header = json.dumps({"identity": self.identity, "bytes": len(payload),
                             "sha256": hashlib.sha256(payload).hexdigest()}, sort_keys=True)
        atomic_write(self.checkpoint_path, lambda f: f.write(header.encode() + b"\n" + payload))
