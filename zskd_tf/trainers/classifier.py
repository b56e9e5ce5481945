"""Supervised training of a classifier: cross-entropy plus coupled L2 weight decay."""
from __future__ import annotations

import keras
import tensorflow as tf

from zskd_tf import losses


def add_weight_decay(grads, variables, weight_decay: float):
    """PyTorch-style coupled L2: ``g + weight_decay * w`` (it then passes through momentum)."""
    if not weight_decay:
        return grads
    return [g + weight_decay * v if g is not None else None for g, v in zip(grads, variables)]


class ClassifierTrainer(keras.Model):
    """Wraps a logits model; ``fit`` trains it, ``evaluate`` reports loss and accuracy.

    Subclasses change what is minimised by overriding ``objective``. The per-replica mean
    loss is divided by the number of replicas before the gradient (Keras sums gradients over
    replicas); the logged loss is the unscaled mean.
    """

    def __init__(self, classifier: keras.Model, weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.weight_decay = float(weight_decay)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True  # the classifier is built; see ecosystem.md §0.8

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def objective(self, x, y):
        """(loss to minimise, classifier logits) for one per-replica batch."""
        logits = self.classifier(x, training=True)
        return losses.cross_entropy(y, logits), logits

    def _logs(self, loss, y, logits):
        if y.shape.rank == 2:  # soft targets: accuracy against their argmax
            y = tf.argmax(y, axis=-1)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(logits)[0])
        self.accuracy_tracker.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            loss, logits = self.objective(x, y)
            scaled = (loss + sum(self.classifier.losses)) / replicas
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(add_weight_decay(grads, variables, self.weight_decay / replicas),
                             variables)
        return self._logs(loss, y, logits)

    def test_step(self, data):
        x, y = data
        logits = self.classifier(x, training=False)
        return self._logs(losses.cross_entropy(y, logits), y, logits)
