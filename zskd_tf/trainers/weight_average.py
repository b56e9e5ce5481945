"""A moving average of a model's weights, kept beside the training (``--ema_momentum``).

After every optimizer step each average ``a`` of a weight ``w`` becomes
``m_t * a + (1 - m_t) * w`` with ``m_t = min(m, (1 + t) / (10 + t))`` at step ``t``: the
average forgets its starting point quickly at first, as ``tf.train.ExponentialMovingAverage``
does with ``num_updates``, then keeps a horizon of about ``1 / (1 - m)`` steps. Every float
weight is averaged, BatchNorm's moving statistics included, so the averaged model is complete.
At the end of training :meth:`WeightAverage.copy_to_model` puts the averages into the model
(docs/concepts.md, "Weight averaging").

The averages are ``tf.Variable``s of a ``tf.Module``: a ``tf.train.Checkpoint`` saves and
restores them with the model, so a resumed run continues the same average. Created inside a
distribution strategy's scope they are mirrored; every replica holds the same weights after a
step, so the first replica's update is the one kept.
"""
from __future__ import annotations

import tensorflow as tf


class WeightAverage(tf.Module):
    """The moving average of ``model``'s float weights with momentum ``momentum`` in (0, 1)."""

    def __init__(self, model, momentum: float):
        super().__init__(name="weight_average")
        if not 0 < momentum < 1:
            raise ValueError(f"momentum must be in (0, 1), got {momentum}")
        self.momentum = float(momentum)
        self._weights = [w for w in model.weights if tf.as_dtype(w.dtype).is_floating]
        self.averages = [
            tf.Variable(tf.convert_to_tensor(w), trainable=False, name=f"average_{i}",
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for i, w in enumerate(self._weights)]

    def update(self, step) -> None:
        """Moves every average towards its weight; ``step`` counts the steps taken (>= 1)."""
        t = tf.cast(step, tf.float32)
        momentum = tf.minimum(self.momentum, (1.0 + t) / (10.0 + t))
        for average, weight in zip(self.averages, self._weights):
            m = tf.cast(momentum, average.dtype)
            average.assign(m * average + (1 - m) * tf.convert_to_tensor(weight))

    def copy_to_model(self) -> None:
        """Replaces the model's weights by their averages (the weights themselves are lost)."""
        for average, weight in zip(self.averages, self._weights):
            weight.assign(average.read_value())
