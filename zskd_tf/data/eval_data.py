"""``--eval_data``: the user's own labelled images, to evaluate a teacher or a student on.

Two forms:

* a directory with one sub-folder per class, read with
  ``keras.utils.image_dataset_from_directory``. Sub-folders named as the classes are matched by
  name (in any order); when the classes have no names (``0`` .. ``K-1``, the default of a teacher
  described by itself) the sub-folders, in sorted order, are the classes 0 .. K-1 and there
  must be K of them;
* an ``.npz`` file with ``x`` (N, H, W) or (N, H, W, C) raw pixel values in [0, 255] and ``y``
  (N,) integer labels in [0, K).

Images are resized (bilinearly) to the classifier's raw input size; the result is raw float32
images in [0, 255], as the named datasets' test splits are fed to classifiers.
"""
from __future__ import annotations

import os

import numpy as np

from zskd_tf.errors import UserError

_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def load_eval_data(path: str, class_names, raw_shape) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``--eval_data=path``.

    Args:
        path: a class-folder directory or an ``.npz`` file.
        class_names: the classifier's class names, in output order.
        raw_shape: (H, W, C) of the raw images the classifier takes.

    Returns:
        (float32 images (N, H, W, C) in [0, 255], int64 labels (N,)).
    """
    class_names = [str(n) for n in class_names]
    raw_shape = tuple(int(d) for d in raw_shape)
    if os.path.isdir(path):
        return _from_directory(path, class_names, raw_shape)
    if os.path.isfile(path) and path.lower().endswith(".npz"):
        return _from_npz(path, len(class_names), raw_shape)
    raise UserError(f"--eval_data={path} is neither a directory of class folders nor an .npz "
                    "file")


def folder_order(path: str, class_names: list[str]) -> list[str]:
    """The sub-folders of ``path`` in class order; UserError when they do not match."""
    folders = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    if set(folders) == set(class_names):
        return list(class_names)
    unnamed = class_names == [str(i) for i in range(len(class_names))]
    if unnamed and len(folders) == len(class_names):
        return folders
    if unnamed:
        raise UserError(f"--eval_data={path} has {len(folders)} class folders but the teacher has "
                        f"{len(class_names)} classes")
    raise UserError(f"--eval_data={path}: its class folders ({', '.join(folders) or 'none'}) do "
                    f"not match the teacher's classes ({', '.join(class_names)})")


def _from_directory(path, class_names, raw_shape):
    import keras
    import tensorflow as tf

    order = folder_order(path, class_names)
    height, width, channels = raw_shape
    if channels not in _COLOR_MODES:
        raise UserError(f"--eval_data={path}: images of {channels} channels cannot be read from "
                        "image files; give an .npz")
    try:
        data = keras.utils.image_dataset_from_directory(
            path, labels="inferred", label_mode="int", class_names=order,
            color_mode=_COLOR_MODES[channels], batch_size=256, image_size=(height, width),
            shuffle=False, interpolation="bilinear", verbose=False)
        batches = [(x.numpy(), y.numpy()) for x, y in data]
    except (tf.errors.OpError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"--eval_data={path}: cannot read its images ({reason})") from None
    if not batches:
        raise UserError(f"--eval_data={path} holds no images (.png, .jpg, .jpeg, .bmp, .gif)")
    x = np.concatenate([b[0] for b in batches]).astype(np.float32)
    y = np.concatenate([b[1] for b in batches]).astype(np.int64)
    return x, y


def _from_npz(path, num_classes, raw_shape):
    from zskd_tf.runtime import guarded

    try:
        arrays = guarded.read_npz(path)
    except guarded.DamagedFile as e:
        raise UserError(f"--eval_data={path}: not a readable .npz file ({e.reason})") from None
    if "x" not in arrays or "y" not in arrays:
        raise UserError(f"--eval_data={path} must hold x (images) and y (labels)")
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != raw_shape[-1] or not np.issubdtype(x.dtype, np.number):
        raise UserError(f"--eval_data={path}: x is {x.dtype}{list(x.shape)}, expected numbers "
                        f"(N, H, W, {raw_shape[-1]})")
    if y.shape != x.shape[:1] or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"--eval_data={path}: y must be {len(x)} integer labels, got "
                        f"{y.dtype}{list(y.shape)}")
    if len(y) == 0 or y.min() < 0 or y.max() >= num_classes:
        raise UserError(f"--eval_data={path}: labels must be in [0, {num_classes}) (the "
                        "teacher's classes)")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"--eval_data={path}: x contains NaN or Inf")
    if x.shape[1:3] != raw_shape[:2]:
        import tensorflow as tf
        x = tf.image.resize(x, raw_shape[:2], method="bilinear").numpy()
    return x, y.astype(np.int64)
