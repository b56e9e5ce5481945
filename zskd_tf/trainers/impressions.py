"""ZSKD data impressions: images whose teacher softmax at temperature T matches a target.

For a batch of sampled Dirichlet targets y, the images x (the only trainable variable) minimise
the paper's cross-entropy ``mean_i CE(y_i, softmax(teacher(x_i) / T))`` with the teacher frozen
and in inference mode (T = 20; docs/methods/zskd.md, "Synthesising the impressions").
``image_l2`` adds sseung0703's penalty ``image_l2 * mean_i sum(x_i^2) / 2`` (his
``l2_regularizer(1e-3 / B)`` on the batch, same section; 0, the paper's and the authors' loss,
by default): it pulls every pixel the teacher does not care about to 0. Given several weights,
row r of the batch takes weight r mod K of the K (``mean_i w_i sum(x_i^2) / 2``): a mixture
of priors in one synthesis whose rows follow the same equations as K runs of one weight each
(no term couples two rows); in floating point the per-row formula rounds differently from the
one-weight one, and Adam at a large learning rate lets such differences grow, so the images are
alike in kind, not equal in value. ``image_tv`` adds
``image_tv * mean_i TV2(x_i)``, the summed squared differences of neighbouring pixels (a
smoothness prior of feature-visualisation work, in no ZSKD code). ``jitter`` and ``flip`` show
the teacher, at every step, the whole batch rolled by a random offset of up to ``jitter`` pixels
per axis and (``flip``) mirrored left-right with probability 1/2 (DeepInversion's jitter, Yin et
al. 2020; not in ZSKD): an impression must then look like its class wherever it sits and
whichever way it faces. ``bn_weight`` adds ``bn_weight * R``, R the sum over the teacher's
BatchNorm layers of the distance of the batch's feature mean and variance to the layer's moving
statistics (DeepInversion's feature-statistics prior, ``losses.batchnorm_prior``; not in ZSKD):
the impressions must also look like real data to the teacher's BatchNorm layers, which is what a
calibration set for quantization needs. The offsets are a function of the batch seed and the
step, so a batch is the same whether or not the run was resumed.
Everything else — fresh Adam state per batch, images kept in the teacher's input range
after each step, several replicas — is :class:`ImageSynthesizer`'s.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from zskd_tf import losses
from zskd_tf.models import taps
from zskd_tf.trainers.synthesis import ImageSynthesizer
from zskd_tf.zskd.config import PAPER_TEMPERATURE


class ImpressionSynthesizer(ImageSynthesizer):
    def __init__(self, teacher, batch_shape, temperature: float = PAPER_TEMPERATURE,
                 value_range=None, image_l2: float | Sequence[float] = 0.0,
                 image_tv: float = 0.0,
                 jitter: int = 0, flip: bool = False, bn_weight: float = 0.0, **kwargs):
        super().__init__(teacher, batch_shape, value_range=value_range, **kwargs)
        self.temperature = float(temperature)
        weights = tuple(image_l2) if isinstance(image_l2, (list, tuple)) else (image_l2,)
        # One weight keeps the one-weight formula (the same images, to the bit, as before the
        # mixture existed); several take a weight per row (image_l2_rows, image_l2 then 0).
        mixed = len(set(weights)) > 1
        self.image_l2 = 0.0 if mixed else float(weights[0])
        self.image_l2_rows = tf.constant([float(weights[r % len(weights)])
                                          for r in range(batch_shape[0])]) if mixed else None
        self.image_tv = float(image_tv)
        self.jitter = int(jitter)
        self.flip = bool(flip)
        self.bn_weight = float(bn_weight)
        if self.bn_weight:
            self.bn_layers = taps.batchnorm_layers(teacher)
            self.teacher_with_bn_inputs = taps.with_batchnorm_inputs(teacher)

    def synthesis_loss(self, images, targets, rows=None):
        if self.bn_weight:
            logits, features = self.teacher_with_bn_inputs(self.shown(images), training=False)
            prior = self.bn_weight * losses.batchnorm_prior(features, self.bn_layers)
        else:
            logits, prior = self.teacher(self.shown(images), training=False), 0.0
        loss = losses.soft_cross_entropy(targets, logits, self.temperature) + prior
        if self.image_l2 or self.image_l2_rows is not None:
            squares = keras.ops.sum(keras.ops.square(images), axis=(1, 2, 3))
            if self.image_l2_rows is None:
                loss = loss + self.image_l2 * keras.ops.mean(squares) / 2
            else:
                weights = (self.image_l2_rows if rows is None
                           else tf.gather(self.image_l2_rows, rows))
                loss = loss + keras.ops.mean(weights * squares) / 2
        if self.image_tv:
            loss = loss + self.image_tv * keras.ops.mean(squared_variation(images))
        return loss

    def shown(self, images):
        """The images as the teacher sees them this step: rolled and mirrored at random
        (``jitter``, ``flip``), or as they are."""
        if not (self.jitter or self.flip):
            return images
        seed = tf.stack([self.batch_seed.value,
                         tf.cast(self.optimizer.iterations.value, tf.int64)])
        draws = tf.random.stateless_uniform((3,), seed, dtype=tf.float32)
        if self.jitter:
            span = 2 * self.jitter + 1
            shifts = tf.cast(tf.floor(draws[:2] * span), tf.int32) - self.jitter
            images = tf.roll(images, shifts, axis=[1, 2])
        if self.flip:
            images = tf.cond(draws[2] < 0.5, lambda: tf.reverse(images, axis=[2]),
                             lambda: images)
        return images


def squared_variation(images):
    """Per image: the sum of squared differences between vertically and horizontally adjacent
    pixels (an anisotropic total variation, squared: a smoothness prior)."""
    rows = keras.ops.square(images[:, 1:] - images[:, :-1])
    cols = keras.ops.square(images[:, :, 1:] - images[:, :, :-1])
    return keras.ops.sum(rows, axis=(1, 2, 3)) + keras.ops.sum(cols, axis=(1, 2, 3))
