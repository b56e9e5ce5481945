"""The one synthetic-dataset format: a single ``.npz`` file.

Entries: ``x`` float32 (N, H, W, C) in the teacher's input space (already preprocessed: feed it
to the model as is), ``y`` int64 (N,) labels, optional ``soft_targets`` float32 (N, K)
probabilities, and ``meta``: a JSON string with the dataset name (a named dataset, or
``custom`` for a teacher described by itself), class count, class names, method,
``input_spec`` (see :class:`InputSpec`), creation time, method-specific ``extra`` and, when a
teacher made it, ``teacher``: its architecture and a SHA-256 of its weights (files written
before zskd_tf recorded it have none).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os

import numpy as np

from zskd_tf.data.datasets import CUSTOM, NUM_CLASSES, check_dataset_name
from zskd_tf.data.datasets import class_names as dataset_class_names
from zskd_tf.data.preprocess import InputSpec
from zskd_tf.errors import UserError
from zskd_tf.runtime import guarded
from zskd_tf.runtime.atomic import atomic_path

FORMAT = "zskd_tf.synthetic/1"
_META_KEYS = ("dataset", "num_classes", "method", "input_spec")


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    x: np.ndarray
    y: np.ndarray
    soft_targets: np.ndarray | None
    meta: dict
    input_spec: InputSpec
    path: str | None = None  # the file it was read from

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @property
    def class_names(self) -> tuple[str, ...]:
        """The recorded class names; a named dataset's, or "0".."K-1" when none are recorded."""
        names = self.meta.get("class_names")
        if isinstance(names, list) and len(names) == self.num_classes:
            return tuple(str(n) for n in names)
        if self.dataset != CUSTOM and self.dataset in NUM_CLASSES:
            return dataset_class_names(self.dataset)
        return tuple(str(i) for i in range(self.num_classes))

    def to_tf_dataset(self, batch_size: int | None = None, soft: bool = True):
        """A ``tf.data.Dataset`` of ``(x, target)`` pairs: the stored soft targets when
        ``soft`` and present, else the labels ``y``; batched when ``batch_size`` is given.

        Args:
            batch_size: examples per element; None yields single examples.
            soft: pair each image with its soft targets (teacher probabilities).

        Returns:
            The dataset, in file order (shuffle it for training).
        """
        import tensorflow as tf

        targets = self.soft_targets if soft and self.soft_targets is not None else self.y
        data = tf.data.Dataset.from_tensor_slices((self.x, targets))
        return data.batch(batch_size) if batch_size else data


def is_synthetic_path(s) -> bool:
    return str(s).lower().endswith(".npz")


def save_synthetic(path, x, y, soft_targets=None, *, input_spec: InputSpec, dataset: str,
                   method: str, extra: dict | None = None, teacher: dict | None = None,
                   class_names=None) -> None:
    """Validates and writes the dataset atomically (a killed run leaves no partial file).

    ``dataset`` is a named dataset or ``custom``, which needs ``class_names`` (the teacher's
    classes); ``class_names`` are recorded when given.

    ``teacher`` (``{"model", "weights_sha256"}``, see ``model_io.fingerprint``) records the
    teacher the images were made from, which ``distill`` checks against its ``--teacher``.
    """
    path = os.fspath(path)
    if not is_synthetic_path(path):
        raise UserError(f"synthetic dataset path {path} must end with .npz")
    if dataset == CUSTOM:
        if not class_names:
            raise UserError(f"synthetic dataset {path}: a custom teacher's set needs its "
                            "class names")
        num_classes = len(class_names)
    else:
        num_classes = NUM_CLASSES[check_dataset_name(dataset)]
    meta = {"format": FORMAT, "dataset": dataset, "num_classes": num_classes,
            "method": method,
            "input_spec": input_spec.to_dict(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "extra": extra or {}}
    if class_names:
        meta["class_names"] = [str(n) for n in class_names]
    if teacher is not None:
        meta["teacher"] = {"model": teacher["model"], "weights_sha256": teacher["weights_sha256"]}
    arrays = _validated(f"synthetic dataset for {path}", input_spec, meta["num_classes"],
                        x, y, soft_targets)
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def read_meta(path) -> dict | None:
    """The meta a synthetic file records, read without its arrays (None when the file cannot
    say: :func:`load_synthetic` then reports why)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
        return meta if isinstance(meta, dict) else None
    except Exception:  # noqa: BLE001 - load_synthetic names the problem
        return None


def read_input_spec(path) -> InputSpec | None:
    """The input mapping a synthetic file records, read without its arrays (None when the
    file cannot say: :func:`load_synthetic` then reports why)."""
    try:
        return InputSpec.from_dict(read_meta(path)["input_spec"])
    except Exception:  # noqa: BLE001 - load_synthetic names the problem
        return None


def load_synthetic(path) -> SyntheticDataset:
    """Reads and validates a file written by :func:`save_synthetic`."""
    path = os.fspath(path)
    where = f"synthetic dataset {path}"
    _check(os.path.isfile(path), where, "no such file")
    try:
        arrays = guarded.read_npz(path)
    except guarded.DamagedFile as e:
        raise UserError(f"{where}: not a readable .npz file ({e.reason})") from None
    missing = sorted({"x", "y", "meta"} - set(arrays))
    _check(not missing, where, f"missing entries {', '.join(missing)}; write it with "
                               f"save_synthetic")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as e:
        raise UserError(f"{where}: meta is not valid JSON ({e})") from e
    _check(isinstance(meta, dict) and all(k in meta for k in _META_KEYS), where,
           f"meta must be a JSON object with {', '.join(_META_KEYS)}")
    try:
        spec = InputSpec.from_dict(meta["input_spec"])
    except UserError as e:
        raise UserError(f"{where}: {e}") from e
    num_classes = meta["num_classes"]
    _check(isinstance(num_classes, int) and num_classes > 0, where,
           f"num_classes must be a positive integer, got {num_classes!r}")
    checked = _validated(where, spec, num_classes, arrays["x"], arrays["y"],
                         arrays.get("soft_targets"))
    return SyntheticDataset(checked["x"], checked["y"], checked.get("soft_targets"), meta, spec,
                            os.path.abspath(path))


def _check(ok: bool, where: str, problem: str) -> None:
    if not ok:
        raise UserError(f"{where}: {problem}")


def _validated(where, spec: InputSpec, num_classes: int, x, y, soft_targets) -> dict:
    """The arrays as float32 / int64, after checking everything :func:`load_synthetic` promises."""
    x, y = np.asarray(x), np.asarray(y)
    _check(x.ndim == 4 and np.issubdtype(x.dtype, np.floating), where,
           f"x must be a float (N, H, W, C) array, got {x.dtype} {x.shape}")
    _check(x.shape[1:] == spec.shape, where,
           f"x images are {x.shape[1:]} but its input_spec says {spec.shape}")
    _check(y.ndim == 1 and np.issubdtype(y.dtype, np.integer), where,
           f"y must be a 1-D integer array, got {y.dtype} {y.shape}")
    _check(len(y) == len(x), where, f"x has {len(x)} examples but y has {len(y)}")
    _check(len(x) > 0, where, "holds no examples (x is empty)")
    _check(bool(np.isfinite(x).all()), where, "x contains NaN or Inf")
    _check(len(y) == 0 or (y.min() >= 0 and y.max() < num_classes), where,
           f"labels must be in [0, {num_classes})")
    out = {"x": x.astype(np.float32, copy=False), "y": y.astype(np.int64, copy=False)}
    if soft_targets is not None:
        s = np.asarray(soft_targets)
        _check(s.ndim == 2 and np.issubdtype(s.dtype, np.floating), where,
               f"soft_targets must be a float (N, K) array, got {s.dtype} {s.shape}")
        _check(s.shape == (len(x), num_classes), where,
               f"soft_targets has shape {s.shape}, expected ({len(x)}, {num_classes})")
        _check(bool(np.isfinite(s).all()), where, "soft_targets contains NaN or Inf")
        _check(bool((s >= 0).all()) and np.allclose(s.sum(axis=1), 1.0, atol=1e-3), where,
               "soft_targets rows must be non-negative and sum to 1")
        out["soft_targets"] = s.astype(np.float32, copy=False)
    return out
