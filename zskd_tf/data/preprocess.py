"""How raw uint8 images become a model's input, and training augmentation.

An :class:`InputSpec` records the mapping so that training, evaluation, synthetic datasets and
exported SavedModels all apply the same one: scale to [0, 1] (/255), resize or zero-pad from the
raw size to the model's size, then ``(x - mean) / std`` per channel. Everything here is pure
TensorFlow, usable inside ``tf.data`` maps, ``tf.function`` and serving signatures.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from zskd_tf.constants import AUGMENTATIONS
from zskd_tf.data.datasets import IMAGE_SHAPES, check_dataset_name
from zskd_tf.errors import UserError

RESIZE_MODES = ("none", "bilinear", "pad")
CROP_PADDING = 4
# Random affine augmentations, per image: (largest zoom-in as the fraction of the image kept,
# largest shift as a fraction of the side, largest rotation in degrees); then a left-right flip
# with probability 1/2. "affine_wide" spans the ranges of the ZSKD authors' DI augmentation
# (central scale down to 0.60, 20 % shifts, rotations of +-90 degrees).
AFFINE_RANGES = {"affine": (0.75, 0.10, 15.0), "affine_wide": (0.60, 0.20, 90.0)}

# Per-channel mean and std of x/255, for the families that normalise (WRN).
MEAN_STD = {
    # CIFAR and SVHN: the constants of the ZSKT / Moonshine / replication code.
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2009, 0.1984, 0.2023)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    # MNIST: the usual torchvision constants.
    "mnist": ((0.1307,), (0.3081,)),
    # Fashion-MNIST: mean and (population) std of x/255 over all pixels of the 60,000 training
    # images (Debian dataset-fashion-mnist copy): 0.286041 and 0.353024.
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
# Model family -> (resize mode used when the raw and model sizes differ, normalise with MEAN_STD?).
# LeNet: 28 -> 32 bilinear stretch, [0, 1] (ZSKD 6.4, Lopes 2.1). WRN: zero-pad, mean/std.
FAMILIES = {"lenet": ("bilinear", False), "mlp": ("bilinear", False),
            "alexnet": ("bilinear", False), "wrn": ("pad", True),
            "small_cnn": ("bilinear", False)}


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How raw (raw_height, raw_width, C) uint8 images become model inputs (height, width, C)."""
    height: int
    width: int
    channels: int
    resize: str  # "none" | "bilinear" (tf.image.resize, half-pixel centres) | "pad" (centred zeros)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    raw_height: int
    raw_width: int

    def __post_init__(self):
        for name in ("height", "width", "channels", "raw_height", "raw_width"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        problem = self._problem()
        if problem:
            raise UserError(f"invalid input spec {self.to_dict()}: {problem}")

    @property
    def value_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (low, high) of valid inputs: raw 0 and 255 through the normalisation."""
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        return ((0.0 - mean) / std).astype(np.float32), ((1.0 - mean) / std).astype(np.float32)

    def _problem(self) -> str | None:
        if min(self.height, self.width, self.channels, self.raw_height, self.raw_width) < 1:
            return "sizes must be positive"
        if self.resize not in RESIZE_MODES:
            return f"resize must be one of {', '.join(RESIZE_MODES)}"
        if not len(self.mean) == len(self.std) == self.channels:
            return "mean and std need one value per channel"
        if min(self.std) <= 0:
            return "std must be positive"
        raw, size = (self.raw_height, self.raw_width), (self.height, self.width)
        if self.resize == "none" and raw != size:
            return "resize='none' needs equal raw and model sizes"
        if self.resize == "pad" and (raw[0] > size[0] or raw[1] > size[1]):
            return "resize='pad' cannot shrink images"
        return None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return self.raw_height, self.raw_width, self.channels

    @property
    def black_level(self) -> tuple[float, ...]:
        """A black raw pixel in the model's input space, per channel."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(d, dict) or set(names) - set(d):
            raise UserError(f"invalid input spec {d!r}: it needs the keys {', '.join(names)}")
        try:
            return cls(**{name: d[name] for name in names})
        except UserError:
            raise
        except (TypeError, ValueError) as e:
            raise UserError(f"invalid input spec {d!r}: {e}") from e


def input_spec_for(dataset_name: str, family: str, input_shape) -> InputSpec:
    """The papers' input convention for ``family`` models of input (H, W, C) on a dataset."""
    raw_h, raw_w, raw_c = IMAGE_SHAPES[check_dataset_name(dataset_name)]
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    if len(input_shape) != 3:
        raise UserError(f"model input shape {tuple(input_shape)} is not (height, width, channels)")
    height, width, channels = (int(d) for d in input_shape)
    if channels != raw_c:
        raise UserError(f"{dataset_name} images have {raw_c} channel(s) but the model input "
                        f"{tuple(input_shape)} has {channels}: build the model with {raw_c}")
    mode, normalise = FAMILIES[family]
    mean, std = MEAN_STD[dataset_name] if normalise else ((0.0,) * channels, (1.0,) * channels)
    return InputSpec(height, width, channels, "none" if (height, width) == (raw_h, raw_w) else mode,
                     mean, std, raw_h, raw_w)


def default_augmentation(dataset_name: str, family: str) -> str:
    """The papers' training augmentation: crop+flip for WRNs on CIFAR, nothing otherwise."""
    return "crop_flip" if dataset_name in ("cifar10", "cifar100") and family == "wrn" else "none"


def _normalisation(spec: InputSpec):
    if spec.mean == (0.0,) * spec.channels and spec.std == (1.0,) * spec.channels:
        return None
    return tf.constant(spec.mean, tf.float32), tf.constant(spec.std, tf.float32)


def preprocess(images, spec: InputSpec) -> tf.Tensor:
    """Raw images in [0, 255] (uint8 or float), (N, raw_h, raw_w, C) or one (raw_h, raw_w, C),
    -> float32 model inputs."""
    x = tf.cast(tf.convert_to_tensor(images), tf.float32) / 255.0
    if x.shape.rank not in (3, 4) or not x.shape[-3:].is_compatible_with(spec.raw_shape):
        raise UserError(f"images of shape {x.shape} do not match the input spec, which expects "
                        f"(N, {', '.join(map(str, spec.raw_shape))}) raw images")
    if spec.resize == "bilinear":
        x = tf.image.resize(x, (spec.height, spec.width), method="bilinear")
    elif spec.resize == "pad":
        top, left = (spec.height - spec.raw_height) // 2, (spec.width - spec.raw_width) // 2
        paddings = [[0, 0]] * (x.shape.rank - 3) + [
            [top, spec.height - spec.raw_height - top],
            [left, spec.width - spec.raw_width - left], [0, 0]]
        x = tf.pad(x, paddings)
    norm = _normalisation(spec)
    return x if norm is None else (x - norm[0]) / norm[1]


def unprocess(x, spec: InputSpec) -> tf.Tensor:
    """Model inputs -> images in [0, 1] (normalisation undone and clipped; no un-resizing)."""
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    norm = _normalisation(spec)
    x = x if norm is None else x * norm[1] + norm[0]
    return tf.clip_by_value(x, 0.0, 1.0)


def augment(images, kind: str, seed, *, spec: InputSpec | None = None) -> tf.Tensor:
    """Random training augmentation, a pure function of ``(images, seed)``.

    ``kind``: "none"; "crop_flip": pad 4 px, crop a random window of the original size, and
    flip left-right with probability 1/2, independently per image; "affine" / "affine_wide":
    a random zoom-in, rotation and shift per image (``AFFINE_RANGES``), then the same flip;
    "affine_mixup": the "affine" view, then blended with another view of the batch
    (:func:`_mix_within_batch`), so only a teacher scoring the result can label it.
    ``seed``: int tensor of shape
    [2] (stateless random ops, so a resumed run sees the same batches).

    Padding value: the PyTorch recipe pads the [0, 1] image with zeros (black) *before*
    normalising. That is what happens here when ``images`` are raw, or when they are in the
    model's input space and ``spec`` is given (padding then uses ``spec.black_level``). Without
    ``spec``, normalised images are padded with 0, i.e. with the dataset's mean colour. The
    affine kinds fill the area they uncover the same way.
    """
    if kind not in AUGMENTATIONS:
        raise UserError(f"unknown augmentation {kind!r}; use one of {', '.join(AUGMENTATIONS)}")
    x = tf.convert_to_tensor(images)
    if kind == "none":
        return x
    single = x.shape.rank == 3
    x = x[None] if single else x
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    fill = None if spec is None else spec.black_level
    if kind == "crop_flip":
        x = _random_crop_after_padding(x, CROP_PADDING, crop_seed, fill)
    else:
        x = _random_affine(x, *AFFINE_RANGES[kind.removesuffix("_mixup")], crop_seed, fill)
    x = tf.image.stateless_random_flip_left_right(x, flip_seed)
    if kind == "affine_mixup":
        # A seed of its own, derived from the flip's, so the other kinds' views stay as they were.
        x = _mix_within_batch(x, tf.random.experimental.stateless_split(flip_seed, 1)[0])
    return x[0] if single else x


def _mix_within_batch(x, seed):
    """mixup (Zhang et al. 2018) without labels: image i becomes ``lam_i * x_i + (1 - lam_i) *
    x_{n-1-i}``, the batch read backwards, with ``lam_i ~ U(0, 1)`` (mixup's Beta(1, 1)) drawn per
    image. Images between two classes draw from the teacher the scores between them that a
    synthetic set lacks (docs/methods/extensions.md, "Mixed views"). One image is returned as it
    is (its partner would be itself)."""
    images = tf.cast(x, tf.float32) if not x.dtype.is_floating else x
    lam = tf.random.stateless_uniform(tf.stack([tf.shape(x)[0], 1, 1, 1]), seed,
                                      dtype=images.dtype)
    mixed = lam * images + (1.0 - lam) * tf.reverse(images, [0])
    return mixed if x.dtype.is_floating else tf.cast(tf.round(mixed), x.dtype)


def _random_affine(x, min_kept, max_shift, max_degrees, seed, fill_value):
    """Per image: zoom in keeping a fraction U[min_kept, 1] of the side, rotate by
    U[-max_degrees, max_degrees] about the centre, shift by U[-max_shift, max_shift] of the
    side; bilinear, the uncovered area filled with ``fill_value`` (per channel) or 0."""
    shape = tf.shape(x)
    n, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    u = tf.random.stateless_uniform([n, 4], seed, minval=-1.0, maxval=1.0)
    kept = 1.0 - (1.0 - min_kept) * (u[:, 0] + 1.0) / 2.0  # output -> input scale
    angle = u[:, 1] * max_degrees * np.pi / 180.0
    tx, ty = u[:, 2] * max_shift * w, u[:, 3] * max_shift * h
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = kept * tf.cos(angle), kept * tf.sin(angle)
    # input (x, y) = centre + kept * R(angle) (output - centre) + shift
    transforms = tf.stack([cos, -sin, cx - cos * cx + sin * cy + tx,
                           sin, cos, cy - sin * cx - cos * cy + ty,
                           tf.zeros_like(cos), tf.zeros_like(cos)], axis=1)
    floating = x.dtype.is_floating  # raw uint8 images: filled with 0 (black)
    value = tf.constant(fill_value if fill_value is not None and floating else 0, x.dtype)
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=x - value, transforms=transforms, output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    return tf.ensure_shape(moved + value, x.shape)


def _random_crop_after_padding(x, pad, seed, pad_value):
    """Per-image random crop of x's size from x padded by ``pad`` (vectorised gathers)."""
    paddings = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    if pad_value is None:
        padded = tf.pad(x, paddings)
    else:  # per-channel constant: shift so the constant becomes 0, pad, shift back
        value = tf.constant(pad_value, x.dtype)
        padded = tf.pad(x - value, paddings) + value
    shape = tf.shape(x)
    offsets = tf.random.stateless_uniform([shape[0], 2], seed, minval=0, maxval=2 * pad + 1,
                                          dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(shape[1])[None]
    cols = offsets[:, 1:] + tf.range(shape[2])[None]
    cropped = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return tf.ensure_shape(cropped, x.shape)
