"""tf.data pipelines over in-memory arrays, with a data order that survives resumption.

The training stream is the concatenation of per-epoch permutations, each a stateless
shuffle seeded by ``(seed, epoch)``, cut into batches of ``batch_size`` (a batch may span an
epoch boundary, so every batch is full even when the set is smaller than a batch). Batch
``s`` is therefore a pure function of ``(seed, s)``: a run resumed at step ``s`` sees exactly
the batches an uninterrupted run would have seen. Augmentation is seeded by the step too.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from zskd_tf.data import preprocess as pp

AUTOTUNE = tf.data.AUTOTUNE


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def _index_stream(n: int, seed: int, first_epoch: int) -> tf.data.Dataset:
    def epoch_indices(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order)

    return tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_indices)


def train_batches(x, y, spec: pp.InputSpec, batch_size: int, seed: int, start_step: int,
                  num_steps: int, augment: str = "none") -> tf.data.Dataset:
    """``num_steps`` batches ``(images, labels)`` starting at global step ``start_step``.

    ``x`` holds the images as stored: uint8 raw images, or float arrays already in the
    model's input space when ``spec`` is None (synthetic datasets).
    """
    n = len(x)
    if n == 0:
        raise ValueError("train_batches needs at least one example")  # callers validate first
    first = start_step * batch_size
    first_epoch, offset = divmod(first, n)
    images = tf.constant(x)
    labels = tf.constant(np.asarray(y))

    def make_batch(step, idx):
        batch = tf.gather(images, idx)
        batch = pp.preprocess(batch, spec) if spec is not None else batch
        if augment != "none":
            batch = pp.augment(batch, augment, tf.stack([tf.cast(seed, tf.int64), step]),
                               spec=spec)
        return batch, tf.gather(labels, idx)

    indices = (_index_stream(n, seed, first_epoch).skip(offset)
               .batch(batch_size, drop_remainder=True).take(num_steps))
    steps = tf.data.Dataset.range(start_step, start_step + num_steps)
    ds = tf.data.Dataset.zip(steps, indices).map(make_batch, num_parallel_calls=AUTOTUNE,
                                                 deterministic=True)
    return ds.prefetch(AUTOTUNE)


def eval_batches(x, y, spec: pp.InputSpec | None, batch_size: int) -> tf.data.Dataset:
    """All examples in order, the last batch possibly smaller."""
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y))).batch(batch_size)
    if spec is not None:
        ds = ds.map(lambda images, labels: (pp.preprocess(images, spec), labels),
                    num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
