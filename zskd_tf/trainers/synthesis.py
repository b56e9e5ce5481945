"""Optimising a batch of input images against a frozen teacher (ZSKD, Lopes et al.).

``ImageSynthesizer`` is a Keras model whose only trainable variable is the image batch. One
``fit`` optimises one batch: ``start_batch`` loads its initial images, resets the optimizer
(fresh Adam moments for every batch: docs/methods/zskd.md, "Synthesising the impressions"), and
``fit`` runs ``steps`` steps over a dataset that repeats the batch's targets. Subclasses define
``synthesis_loss``. With ``fast_input_gradient`` (the default) the teacher's first few-channel
convolutions differentiate through their space-to-depth form
(:mod:`zskd_tf.trainers.input_gradients`: same forward, same gradient up to float rounding,
~1.4x more image-steps/s for LeNet-5); ``bfloat16_input_gradient`` computes the convolutions'
input gradients in bfloat16 (1.3-1.9x more on a CPU with AMX; bfloat16 rounding).

Several replicas: the image variable holds the *global* batch and is mirrored; the dataset
yields ``(row_indices, targets)`` so each replica slices out and optimises its own rows. Only
those rows get a gradient from that replica, the all-reduce assembles the full gradient and
every replica applies the same update, so the result equals one device's up to float
rounding (which a high learning rate can amplify over many steps).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from zskd_tf.trainers import input_gradients


class _Clip(keras.constraints.Constraint):
    def __init__(self, low, high):
        self.low, self.high = low, high

    def __call__(self, w):
        return keras.ops.clip(w, self.low, self.high)


class ImageSynthesizer(keras.Model):
    def __init__(self, teacher: keras.Model, batch_shape, value_range=None,
                 fast_input_gradient: bool = True, bfloat16_input_gradient: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher
        teacher.trainable = False
        self.accelerated_layers = input_gradients.accelerate_input_gradients(
            teacher, block_form=fast_input_gradient,
            gradient_dtype="bfloat16" if bfloat16_input_gradient else "float32")
        # Keeping images in the teacher's valid input range: the optimizer applies the
        # constraint after each update (in cross-replica context under a strategy).
        constraint = _Clip(*value_range) if value_range is not None else None
        self.images = self.add_weight(shape=tuple(batch_shape), initializer="zeros",
                                      trainable=True, name="images", constraint=constraint)
        # Seeds the random parts of a batch's steps (set per batch by ``start_batch``).
        self.batch_seed = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                          trainable=False, name="batch_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def synthesis_loss(self, images, targets, rows=None):
        """Per-replica mean loss of ``images`` (a slice of the batch) against ``targets``;
        ``rows``: their indices in the batch (None: the whole batch, in order)."""
        raise NotImplementedError

    def start_batch(self, initial_images: np.ndarray, seed: int = 0) -> None:
        self.images.assign(initial_images)
        self.batch_seed.assign(seed)
        for variable in self.optimizer.variables:  # step count and moments, not the lr
            if variable.name != "learning_rate":
                variable.assign(tf.zeros_like(variable))

    def batch_dataset(self, targets: np.ndarray, steps: int) -> tf.data.Dataset:
        """``steps`` repetitions of the whole batch: ``(row indices, targets)``."""
        rows = np.arange(len(targets), dtype=np.int64)
        return (tf.data.Dataset.from_tensors((rows, targets.astype(np.float32)))
                .repeat(steps).prefetch(2))

    def train_step(self, data):
        rows, targets = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.synthesis_loss(self._replica_images(rows, replicas), targets, rows)
            scaled = loss / replicas
        grads = tape.gradient(scaled, [self.images])
        self.optimizer.apply(grads, [self.images])
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def _replica_images(self, rows, replicas: int):
        """This replica's rows of the image batch: a contiguous block (the distributed dataset
        splits the batch in order), so a slice, whose gradient is dense and cheap, serves."""
        if replicas == 1:
            return self.images.value
        start = tf.cast(rows[0], tf.int32)
        return tf.slice(self.images, tf.stack([start, 0, 0, 0]),
                        tf.stack([tf.shape(rows)[0], -1, -1, -1]))

    def optimise(self, initial_images, targets, steps: int, verbose: int = 0,
                 seed: int = 0) -> np.ndarray:
        """Runs one batch from ``initial_images``; returns the optimised images. ``seed`` seeds
        the random parts of the steps, if the loss has any."""
        self.start_batch(initial_images, seed)
        self.fit(self.batch_dataset(targets, steps), epochs=1, steps_per_epoch=steps,
                 verbose=verbose, shuffle=False)
        return self.images.numpy()
