"""Readers for the datasets' original file formats.

* IDX (MNIST, Fashion-MNIST), plain or gzipped: ``train-images-idx3-ubyte[.gz]`` etc.
* CIFAR-10 / CIFAR-100 "python version" pickles: ``cifar-10-batches-py/``, ``cifar-100-python/``.
* SVHN cropped digits: ``train_32x32.mat`` / ``test_32x32.mat`` (needs scipy).

Each ``read_*_dir(directory)`` returns :class:`Arrays` with uint8 NHWC images and int64 labels,
or raises ``FileNotFoundError`` (files absent) / :class:`UserError` (files unreadable) with a
short reason.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
from typing import NamedTuple

import numpy as np

from zskd_tf.errors import UserError


class Arrays(NamedTuple):
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...] | None  # None when the files do not name the classes


# IDX type byte -> element dtype (multi-byte types are big-endian).
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """One IDX file (``.gz`` is decompressed) as an array in native byte order."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    ndim, header = data[3], 4 + 4 * data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    if len(data) != header + dtype.itemsize * math.prod(shape):
        raise UserError(f"IDX file {path} is truncated or corrupt: its header says shape {shape} "
                        f"but it holds {len(data)} bytes")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: str, *names: str) -> str:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no {' or '.join(names)}")


def read_idx_dir(directory: str) -> Arrays:
    """MNIST-style directory: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``."""
    def split(prefix):
        parts = []
        for kind in ("images-idx3", "labels-idx1"):
            stem = f"{prefix}-{kind}-ubyte"
            parts.append(read_idx(_find(directory, stem + ".gz", stem)))
        images, labels = parts
        return images[..., None], labels.astype(np.int64)

    return Arrays(*split("train"), *split("t10k"), None)


def _unpickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise FileNotFoundError(f"no {path}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"cannot read CIFAR batch {path}: {e}") from e


# num_classes -> (directory, train files, test files, label key, meta file, class-name key)
_CIFAR_LAYOUT = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
         b"labels", "batches.meta", b"label_names"),
    100: ("cifar-100-python", ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}


def read_cifar_dir(directory: str, num_classes: int) -> Arrays:
    """A directory holding the extracted ``cifar-10-batches-py/`` or ``cifar-100-python/``."""
    subdir, train_files, test_files, label_key, meta_file, names_key = _CIFAR_LAYOUT[num_classes]
    root = os.path.join(directory, subdir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no {subdir}/")

    def split(files):
        batches = [_unpickle(os.path.join(root, name)) for name in files]
        try:
            images = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[label_key], np.int64) for b in batches])
            return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels
        except (KeyError, ValueError) as e:
            raise UserError(f"unexpected content in the CIFAR batches of {root}: {e!r}") from e

    names = None
    meta_path = os.path.join(root, meta_file)
    if os.path.isfile(meta_path):
        names = tuple(n.decode() for n in _unpickle(meta_path).get(names_key, ())) or None
    return Arrays(*split(train_files), *split(test_files), names)


def read_svhn_dir(directory: str) -> Arrays:
    """``train_32x32.mat`` and ``test_32x32.mat`` (label 10 means digit 0)."""
    paths = [_find(directory, f"{split}_32x32.mat") for split in ("train", "test")]
    try:
        from scipy import io as sio
    except ImportError:
        raise UserError("reading SVHN .mat files needs scipy, which is not installed: "
                        "pip install scipy") from None

    def split(path):
        try:
            mat = sio.loadmat(path)
            images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)), np.uint8)
            labels = mat["y"].reshape(-1).astype(np.int64)
        except Exception as e:  # noqa: BLE001 - any failure means a bad file
            raise UserError(f"cannot read SVHN file {path}: {e!r}") from e
        labels[labels == 10] = 0
        return images, labels

    return Arrays(*split(paths[0]), *split(paths[1]), None)
