"""Writes that are never half done: write to a temporary file beside the target, then rename.

``os.replace`` is atomic on POSIX within one file system, so a reader (or a run that was
interrupted and restarted) sees either the old file or the complete new one. A temporary
file is named ``.<target>.<pid>.<random>.tmp``; one whose writing process no longer exists
was left by a killed write and is removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "load_json", "load_torch", "remove_stale_temporaries", "save_json",
           "save_torch"]

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


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: str | os.PathLike) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
