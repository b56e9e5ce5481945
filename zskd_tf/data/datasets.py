"""The named real datasets, loaded whole into memory as uint8 arrays.

:func:`load_dataset` tries, in order, stopping at the first success:

1. tfds-prepared data under ``data_dir`` (or the tfds default data dir when ``data_dir`` is None);
2. the original raw files under ``data_dir/<name>/`` or ``data_dir/`` (see :mod:`raw_formats`);
3. for ``fashion_mnist``, the copy of the Debian package ``dataset-fashion-mnist``;
4. a tfds download, when allowed and the dataset's host answers within a few seconds (an
   offline ``tfds.load(download=True)`` retries for minutes before failing).

When everything fails, one :class:`UserError` lists each place tried and how to get the data.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
import threading

import numpy as np
from absl import logging

from zskd_tf.data import raw_formats
from zskd_tf.errors import UserError

DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
# The dataset name recorded for a teacher described by itself (zskd_tf/teacher_task.py): its
# class names and input spec are recorded beside it; there are no images to load.
CUSTOM = "custom"

# Where the Debian package dataset-fashion-mnist puts the gzipped IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# Seconds to wait for the download host before skipping the tfds download attempt.
NETWORK_TIMEOUT = 3.0

_TFDS_NAMES = {"svhn": "svhn_cropped"}
# (host, port) tfds 4.9 downloads each dataset from.
_DOWNLOAD_HOSTS = {
    "mnist": ("storage.googleapis.com", 443),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar10": ("www.cs.toronto.edu", 443),
    "cifar100": ("www.cs.toronto.edu", 443),
    "svhn": ("ufldl.stanford.edu", 80),
}
_IDX_FILES = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
              "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz")
# name -> (reader of a raw directory, what the user should put there)
_RAW_READERS = {
    "mnist": (raw_formats.read_idx_dir, _IDX_FILES),
    "fashion_mnist": (raw_formats.read_idx_dir, _IDX_FILES),
    "cifar10": (functools.partial(raw_formats.read_cifar_dir, num_classes=10),
                "the extracted cifar-10-batches-py/ directory"),
    "cifar100": (functools.partial(raw_formats.read_cifar_dir, num_classes=100),
                 "the extracted cifar-100-python/ directory"),
    "svhn": (raw_formats.read_svhn_dir, "train_32x32.mat and test_32x32.mat"),
}

_DIGITS = tuple(str(i) for i in range(10))
_CLASS_NAMES = {
    "mnist": _DIGITS,
    "svhn": _DIGITS,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10}
IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3),
                "cifar100": (32, 32, 3), "svhn": (32, 32, 3)}


@dataclasses.dataclass(frozen=True)
class RawDataset:
    """A whole dataset in memory: uint8 NHWC images, int64 labels (arrays are read-only)."""
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    source: str  # where it was loaded from, for logs and result.json

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def class_names(name: str) -> tuple[str, ...]:
    """The dataset's fixed class names without loading it (``class_i`` where it has none)."""
    names = _CLASS_NAMES.get(check_dataset_name(name))
    return tuple(names) if names else tuple(f"class_{i}" for i in range(NUM_CLASSES[name]))


def check_dataset_name(name: str) -> str:
    if name not in DATASET_NAMES:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASET_NAMES)} "
                        f"(or a synthetic .npz file where a procedure accepts one)")
    return name


def load_dataset(name: str, data_dir: str | None = None,
                 allow_download: bool = True) -> RawDataset:
    """The dataset ``name`` (one of :data:`DATASET_NAMES`); cached in-process."""
    check_dataset_name(name)
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir))) if data_dir else None
    return _load_cached(name, data_dir, bool(allow_download))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str | None, allow_download: bool) -> RawDataset:
    failures = []
    for place, load in _attempts(name, data_dir, allow_download):
        try:
            arrays = load()
            _check_arrays(name, arrays)
        except Exception as e:  # noqa: BLE001 - each failure becomes a line of the final error
            reason = _short_reason(e)
            logging.info("dataset %s: %s: %s", name, place, reason)
            failures.append(f"{place}: {reason}")
            continue
        logging.info("dataset %s loaded from %s", name, place)
        return _make_dataset(name, arrays, place)
    raise UserError(f"cannot load dataset {name!r}; tried {'; '.join(failures)}. "
                    f"{_how_to_get(name)}")


def _attempts(name, data_dir, allow_download):
    """(place, loader) pairs in lookup order; loaders raise with a short reason on failure."""
    tfds_dir = data_dir or "the tfds default data dir"
    yield f"tfds data in {tfds_dir}", lambda: _from_tfds(name, data_dir, download=False)
    if data_dir:
        reader, _ = _RAW_READERS[name]
        subdirs = {os.path.join(data_dir, name), os.path.join(data_dir, name.replace("_", "-"))}
        for directory in sorted(d for d in subdirs if os.path.isdir(d)) + [data_dir]:
            yield f"raw files in {directory}", functools.partial(reader, directory)
    if name == "fashion_mnist":
        yield (f"Debian package dataset-fashion-mnist in {DEBIAN_FASHION_MNIST_DIR}",
               lambda: raw_formats.read_idx_dir(DEBIAN_FASHION_MNIST_DIR))
    yield f"tfds download into {tfds_dir}", lambda: _download(name, data_dir, allow_download)


def _from_tfds(name, data_dir, download):
    import tensorflow_datasets as tfds  # slow import: only when needed

    # Not batch_size=-1: it batches by info.splits, which is empty under tfds.testing.mock_data
    # (the process then aborts in C++); explicit batches work for real and mocked data.
    splits, info = tfds.load(_TFDS_NAMES.get(name, name), split=["train", "test"],
                             data_dir=data_dir, download=download, as_supervised=True,
                             with_info=True)
    arrays = []
    for split in splits:
        batches = list(tfds.as_numpy(split.batch(10_000)))
        arrays += [np.concatenate([b[0] for b in batches]),
                   np.concatenate([b[1] for b in batches]).astype(np.int64)]
    return raw_formats.Arrays(*arrays, tuple(info.features["label"].names))


def _download(name, data_dir, allow_download):
    if not allow_download:
        raise RuntimeError("not attempted (downloads disabled)")
    host, port = _DOWNLOAD_HOSTS[name]
    if not _reachable(host, port, NETWORK_TIMEOUT):
        raise ConnectionError(f"skipped: cannot reach {host}:{port} within "
                              f"{NETWORK_TIMEOUT:g} s (no network?)")
    return _from_tfds(name, data_dir, download=True)


def _reachable(host: str, port: int, timeout: float) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout`` seconds (DNS included)."""
    answered = []

    def probe():  # in a thread: name resolution itself has no timeout
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def _short_reason(e: Exception) -> str:
    """The first sentence of an exception's message (tfds adds long advice after it)."""
    text = str(e).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(e).__name__


def _check_arrays(name, arrays: raw_formats.Arrays):
    shape, k = IMAGE_SHAPES[name], NUM_CLASSES[name]
    for x, y in ((arrays.train_x, arrays.train_y), (arrays.test_x, arrays.test_y)):
        if x.dtype != np.uint8 or x.shape[1:] != shape or y.shape != x.shape[:1]:
            raise UserError(f"found images {x.dtype}{list(x.shape)} with labels {list(y.shape)}, "
                            f"expected uint8[N, {', '.join(map(str, shape))}] with [N] labels")
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise UserError(f"labels outside [0, {k})")


def _make_dataset(name, arrays: raw_formats.Arrays, source) -> RawDataset:
    k = NUM_CLASSES[name]
    names = _CLASS_NAMES.get(name)
    if names is None:  # cifar100: the names the source gave, if it gave all of them
        given = arrays.class_names or ()
        names = tuple(given) if len(given) == k else tuple(f"class_{i}" for i in range(k))
    frozen = []
    for a in arrays[:4]:
        a = np.ascontiguousarray(a)
        a.flags.writeable = False  # shared by every caller through the cache
        frozen.append(a)
    return RawDataset(name, *frozen, class_names=names, source=source)


def _how_to_get(name) -> str:
    tfds_name = _TFDS_NAMES.get(name, name)
    apt = "`apt-get install dataset-fashion-mnist`, or " if name == "fashion_mnist" else ""
    return (f"To get it: {apt}run `tfds build {tfds_name} --data_dir=DIR` on a machine with "
            f"internet and copy DIR here, then pass --data_dir=DIR; or put the raw files "
            f"({_RAW_READERS[name][1]}) in --data_dir.")
