"""The activations Lopes et al. record: every feature tap (pre-ReLU) and the logits / T.

A recorded layer is named after its tap (``fc1``, ``conv2``, ...) or ``"logits"``; its
activation is always flattened to (batch, units) in row-major (H, W, C) order, the layout
of every statistic, target and spectral signal.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from zskd_tf.models import taps as taps_lib

LOGITS = taps_lib.LOGITS


def recorded_layers(model: keras.Model) -> list[str]:
    """The model's taps in graph order, then ``"logits"``."""
    return [*taps_lib.tap_names(model), LOGITS]


def layer_units(model: keras.Model) -> dict[str, int]:
    """Recorded layer -> number of units of its flattened activation."""
    units = {LOGITS: int(model.output_shape[-1])}
    for name in taps_lib.tap_names(model):
        units[name] = math.prod(model.get_layer(taps_lib.tap(name)).output.shape[1:])
    return {name: units[name] for name in recorded_layers(model)}


def recorder(model: keras.Model, layers) -> keras.Model:
    """A model sharing ``model``'s weights that returns ``(logits, {tap: tensor})`` for the
    taps among ``layers`` (``"logits"`` needs no tap)."""
    return taps_lib.with_taps(model, [name for name in dict.fromkeys(layers) if name != LOGITS])


def record(tapped: keras.Model, images, temperature: float) -> dict[str, tf.Tensor]:
    """Flattened activations of every layer ``tapped`` records, plus ``"logits"`` = logits/T.

    The teacher runs in inference mode (dropout off, BatchNorm moving statistics).
    """
    logits, taps = tapped(images, training=False)
    out = {name: tf.reshape(value, [tf.shape(value)[0], -1]) for name, value in taps.items()}
    out[LOGITS] = logits / temperature
    return out
