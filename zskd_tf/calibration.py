"""Calibration images for full-integer quantization, from synthetic or real sources.

The TFLite converter measures the range of every activation on a *representative dataset*. An
exported classifier takes raw images (values in [0, 255], the dataset's raw size), so every
source is turned into raw images here:

* a synthetic ``.npz`` (data impressions, reconstructions: :mod:`zskd_tf.data.synthetic`) holds
  images in the model's input space; they must have the model's input shape and normalisation
  and lie near its input range (Lopes et al. reconstructions are not clipped to it: values up to
  ``RANGE_SLACK`` range-widths outside it are accepted, clipped, and the clipped fraction is
  recorded), and are mapped back to raw images (normalisation undone, resized back to the raw
  size or the zero padding cropped);
* ``generator``: samples of a ZSKT generator (``generator.keras``), drawn in batches as in
  training (its BatchNorm uses batch statistics) and mapped back the same way, clipped to the
  valid range;
* ``real``: the dataset's training images (for comparison: the data-free user has none);
* ``noise``: uniform raw pixels, i.e. uniform noise over the model's input range (the naive
  baseline).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from zskd_tf.data import preprocess as pp
from zskd_tf.data import sampling, synthetic
from zskd_tf.errors import UserError

SOURCES = ("generator", "real", "noise")  # or the path of a synthetic .npz
GENERATOR_FILE = "generator.keras"
GENERATOR_BATCH = 128  # ZSKT's batch size: the generator's BatchNorm sees batches like this
# Range-widths a synthetic image may exceed the input range by (clipped). Lopes et al.
# reconstructions of the --quick pipeline reach 2.3-3.3 widths (docs/int8_quantization.md);
# raw 0..255 pixels given to a [0, 1] model exceed it by 254.
RANGE_SLACK = 5.0


@dataclasses.dataclass
class CalibrationSet:
    """Raw float32 images (N, H, W, C) in [0, 255] and where they come from (result.json)."""
    raw_images: np.ndarray
    source: dict


def to_raw(x: np.ndarray, spec: pp.InputSpec) -> np.ndarray:
    """Model inputs (N, height, width, C) -> raw float32 images in [0, 255]: the inverse of
    ``preprocess`` up to the resize (bilinear back to the raw size; zero padding cropped)."""
    import tensorflow as tf

    images = pp.unprocess(x, spec)
    if spec.resize == "bilinear":
        images = tf.image.resize(images, (spec.raw_height, spec.raw_width), method="bilinear",
                                 antialias=True)
    elif spec.resize == "pad":
        top = (spec.height - spec.raw_height) // 2
        left = (spec.width - spec.raw_width) // 2
        images = images[:, top:top + spec.raw_height, left:left + spec.raw_width]
    return np.clip(np.asarray(images) * 255.0, 0.0, 255.0).astype(np.float32)


def _check_model_space(x: np.ndarray, spec: pp.InputSpec, where: str) -> float:
    """Checks shape and range; returns the fraction of values outside the input range."""
    if x.shape[1:] != spec.shape:
        raise UserError(f"{where}: images of shape {x.shape[1:]} but the model takes "
                        f"{spec.shape}")
    low, high = spec.value_range
    slack = RANGE_SLACK * (high - low)
    if (x < low - slack).any() or (x > high + slack).any():
        raise UserError(f"{where}: values in [{x.min():.3g}, {x.max():.3g}] but the model's "
                        f"inputs lie in [{low.min():.3g}, {high.max():.3g}]: were they made "
                        "for another model's input mapping?")
    return float(np.mean((x < low) | (x > high)))


def _subset(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    return images[sampling.seeded_subset(len(images), n, seed)]


def from_synthetic(path: str, spec: pp.InputSpec, n: int, seed: int) -> CalibrationSet:
    """``n`` images (all when fewer) of a synthetic ``.npz`` made for ``spec``'s inputs."""
    data = synthetic.load_synthetic(path)
    where = f"--calibration={path}"
    if len(data.x) == 0:
        raise UserError(f"{where} holds no images")
    if data.input_spec.shape != spec.shape:
        raise UserError(f"{where}: images of shape {data.input_spec.shape} but the model takes "
                        f"{spec.shape}")
    if (data.input_spec.mean, data.input_spec.std) != (spec.mean, spec.std):
        raise UserError(f"{where} was made for inputs normalised with mean {data.input_spec.mean}"
                        f" / std {data.input_spec.std}, the model takes mean {spec.mean} / std "
                        f"{spec.std}: use a set made from this model's teacher")
    x = _subset(data.x, n, seed)
    clipped = _check_model_space(x, spec, where)
    return CalibrationSet(to_raw(x, spec), {
        "source": "synthetic", "path": os.path.abspath(path), "method": data.meta["method"],
        "num_images": len(x), "available": len(data.x), "clipped_fraction": clipped})


def generator_path(run: str) -> str:
    """``generator.keras`` of a ZSKT run: a seed directory, or a run with exactly one seed."""
    if os.path.isfile(run):
        return run
    direct = os.path.join(run, GENERATOR_FILE)
    if os.path.isfile(direct):
        return direct
    seeds = sorted(d for d in (os.listdir(run) if os.path.isdir(run) else ())
                   if os.path.isfile(os.path.join(run, d, GENERATOR_FILE)))
    if len(seeds) == 1:
        return os.path.join(run, seeds[0], GENERATOR_FILE)
    if seeds:
        raise UserError(f"--generator_run={run} holds generators of several seeds "
                        f"({', '.join(seeds)}): name one, e.g. {os.path.join(run, seeds[0])}")
    raise UserError(f"--generator_run={run} holds no {GENERATOR_FILE}: give a finished "
                    "zero_shot run (or its seed_N directory)")


def from_generator(path: str, spec: pp.InputSpec, n: int, seed: int) -> CalibrationSet:
    """``n`` samples of the ZSKT generator in ``path`` (a run directory or its .keras)."""
    import keras

    import zskd_tf.models.layers  # noqa: F401  (registers the generator's layers)

    file = generator_path(path)
    try:
        generator = keras.saving.load_model(file, compile=False)
    except Exception as e:  # noqa: BLE001 - an unreadable file is the user's input
        raise UserError(f"cannot load the generator {file}: "
                        f"{str(e).splitlines()[0][:200]}") from None
    if tuple(generator.output_shape[1:]) != spec.shape:
        raise UserError(f"the generator {file} makes images of shape "
                        f"{tuple(generator.output_shape[1:])} but the model takes {spec.shape}")
    z = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1]))
    batches = [keras.ops.convert_to_numpy(generator(z[i:i + GENERATOR_BATCH].astype(np.float32),
                                                    training=True))
               for i in range(0, n, GENERATOR_BATCH)]
    x = np.concatenate(batches)
    return CalibrationSet(to_raw(x, spec), {"source": "generator", "path": os.path.abspath(file),
                                            "num_images": n})


def from_real(train_images: np.ndarray, dataset: str, n: int, seed: int) -> CalibrationSet:
    """``n`` seeded random raw training images of ``dataset``."""
    raw = _subset(np.asarray(train_images), n, seed).astype(np.float32)
    return CalibrationSet(raw, {"source": "real", "dataset": dataset, "split": "train",
                                "num_images": len(raw)})


def uniform_noise(spec: pp.InputSpec, n: int, seed: int) -> CalibrationSet:
    """``n`` images of i.i.d. uniform raw pixels in [0, 255]."""
    raw = np.random.default_rng(seed).uniform(0.0, 255.0, (n, *spec.raw_shape))
    return CalibrationSet(raw.astype(np.float32), {"source": "noise",
                                                   "distribution": "uniform [0, 255] raw pixels",
                                                   "num_images": n})
