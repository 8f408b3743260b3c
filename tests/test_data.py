"""MNIST is the real data set, complete, and a damaged file is refused with a useful message."""

import hashlib
import shutil

import pytest
import torch

from book.mnist.data import MD5, MNISTError, prepare_mnist, raw_dir, verify_mnist
from book.paths import DATA_DIR


def test_files_match_published_md5():
    folder = prepare_mnist()
    for name, expected in MD5.items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == expected


def test_shapes_dtypes_and_labels(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28)
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert mnist.train_images.dtype == mnist.test_images.dtype == torch.uint8
    assert mnist.train_labels.shape == (60_000,) and mnist.test_labels.shape == (10_000,)
    for labels in (mnist.train_labels, mnist.test_labels):
        assert labels.dtype == torch.int64
        assert sorted(labels.unique().tolist()) == list(range(10))
    # Well-known facts of the original files: the first training label is 5, the first test
    # labels are 7, 2, 1, 0; pixels span the whole byte range.
    assert mnist.train_labels[0] == 5
    assert mnist.test_labels[:4].tolist() == [7, 2, 1, 0]
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0


def _copy_raw(tmp_path):
    (raw_dir(tmp_path)).mkdir(parents=True)
    for name in MD5:
        shutil.copyfile(raw_dir(DATA_DIR) / name, raw_dir(tmp_path) / name)
    return raw_dir(tmp_path)


def test_truncated_file_is_refused_with_its_name_and_the_fix(tmp_path):
    folder = _copy_raw(tmp_path)
    victim = folder / "train-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(MNISTError) as err:
        prepare_mnist(tmp_path)
    message = str(err.value)
    assert "train-labels-idx1-ubyte" in message
    assert "truncated" in message and "make data" in message
    # A damaged file is never silently replaced.
    assert victim.stat().st_size == 1000


def test_corrupted_byte_is_refused(tmp_path):
    folder = _copy_raw(tmp_path)
    victim = folder / "t10k-images-idx3-ubyte"
    data = bytearray(victim.read_bytes())
    data[5000] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(MNISTError, match="t10k-images-idx3-ubyte"):
        verify_mnist(tmp_path)


def test_missing_files_are_rebuilt_atomically(tmp_path):
    folder = prepare_mnist(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(MD5)  # no temporary leftovers
    verify_mnist(tmp_path)


def test_missing_file_message(tmp_path):
    with pytest.raises(MNISTError, match="missing"):
        verify_mnist(tmp_path)


def test_every_damaged_file_is_named_in_one_run(tmp_path):
    folder = _copy_raw(tmp_path)
    damaged = ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for name in damaged:
        (folder / name).write_bytes(b"garbage")
    with pytest.raises(MNISTError) as err:
        verify_mnist(tmp_path)
    message = str(err.value)
    assert all(name in message for name in damaged)
    assert "train-labels-idx1-ubyte" not in message  # intact files are not accused


def test_a_dangling_data_root_symlink_is_named_with_its_target(tmp_path):
    root = tmp_path / "data"
    root.symlink_to(tmp_path / "gone")
    with pytest.raises(MNISTError, match=f"{root} is a symbolic link to {tmp_path / 'gone'}, "
                                         "which does not exist"):
        prepare_mnist(root)


def test_an_idx_path_that_is_a_folder_is_named_not_a_temporary_file(tmp_path):
    folder = _copy_raw(tmp_path)
    victim = folder / "t10k-labels-idx1-ubyte"
    victim.unlink()
    victim.mkdir()
    with pytest.raises(MNISTError, match=f"{victim} is not a file") as err:
        prepare_mnist(tmp_path)
    assert ".tmp" not in str(err.value) and victim.is_dir()
