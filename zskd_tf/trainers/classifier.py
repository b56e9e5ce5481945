"""Supervised training of a classifier: cross-entropy plus coupled L2 weight decay, optionally
on perturbed inputs (Gaussian noise, or an L2 PGD attack: adversarial training)."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from zskd_tf import losses
from zskd_tf.trainers.distributed import SymbolicBuildFix, replica_logs
from zskd_tf.trainers.train_config import DEFAULTS as TRAIN_DEFAULTS
from zskd_tf.trainers.weight_average import WeightAverage


def add_weight_decay(grads, variables, weight_decay: float):
    """PyTorch-style coupled L2: ``g + weight_decay * w`` (it then passes through momentum)."""
    if not weight_decay:
        return grads
    return [g + weight_decay * v if g is not None else None for g, v in zip(grads, variables)]


@dataclasses.dataclass(frozen=True)
class InputPerturbation:
    """What the training images go through before the loss (all in the model's input space).

    ``noise_std``: add N(0, noise_std^2) per pixel. ``adversarial_eps``: replace the batch by
    an L2 PGD attack on the cross-entropy of radius ``adversarial_eps`` per image,
    ``adversarial_steps`` normalised-gradient steps of ``2.5 * eps / steps`` from the clean
    image (Madry et al. 2018), kept in ``value_range``; the attacked model runs in inference
    mode. Robust teachers have input gradients that look like the data, which is what
    data-free methods follow.
    """
    noise_std: float = TRAIN_DEFAULTS.input_noise
    adversarial_eps: float = TRAIN_DEFAULTS.adversarial_eps
    adversarial_steps: int = TRAIN_DEFAULTS.adversarial_train_steps
    value_range: tuple | None = None  # per-channel (low, high) arrays
    seed: int = 0

    def __bool__(self):
        return bool(self.noise_std or self.adversarial_eps)


def _per_image_l2(t):
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=[1, 2, 3], keepdims=True))


def l2_ascent(x, loss_fn, eps: float, steps: int, value_range=None):
    """``x`` moved to raise ``loss_fn``: L2 PGD (Madry et al. 2018) from ``x`` itself,
    ``steps`` steps of ``2.5 * eps / steps`` along each image's normalised gradient, projected
    back to the L2 ball of radius ``eps`` around the image and, with ``value_range`` (low, high),
    into that box. Returns the moved images, without gradient."""
    step = 2.5 * eps / steps
    delta = tf.zeros_like(x)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(delta)
            loss = loss_fn(x + delta)
        grad = tape.gradient(loss, delta)
        delta = delta + step * grad / (_per_image_l2(grad) + 1e-12)
        delta = delta * tf.minimum(1.0, eps / (_per_image_l2(delta) + 1e-12))
        if value_range is not None:
            delta = tf.clip_by_value(x + delta, *value_range) - x
    return tf.stop_gradient(x + delta)


class ClassifierTrainer(SymbolicBuildFix, keras.Model):
    """Wraps a logits model; ``fit`` trains it, ``evaluate`` reports loss and accuracy.

    Subclasses change what is minimised by overriding ``objective``. The per-replica mean
    loss is divided by the number of replicas before the gradient (Keras sums gradients over
    replicas); the logged loss is the unscaled mean. With ``ema_momentum`` > 0 the moving
    average of the classifier's weights (:class:`WeightAverage`) follows every step; the
    caller puts it into the classifier when training ends.
    """

    def __init__(self, classifier: keras.Model, weight_decay: float = 0.0,
                 perturbation: InputPerturbation = InputPerturbation(),
                 ema_momentum: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.weight_decay = float(weight_decay)
        self.perturbation = perturbation
        # Built here, inside the strategy scope the trainer is made in.
        self.weight_average = (WeightAverage(classifier, ema_momentum) if ema_momentum
                               else None)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # The classifier is built (docs/methods/keras_notes.md, "Built wrapper models").
        self.built = True

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
        return replica_logs({m.name: m.result() for m in self.metrics})

    def perturb(self, x, y):
        """The training images after ``self.perturbation`` (unchanged by default)."""
        p = self.perturbation
        if p.noise_std:
            context = tf.distribute.get_replica_context()
            replica = context.replica_id_in_sync_group if context else 0
            seed = tf.stack([tf.cast(p.seed, tf.int64) * 1024 + tf.cast(replica, tf.int64),
                             tf.cast(self.optimizer.iterations, tf.int64)])
            x = x + p.noise_std * tf.random.stateless_normal(tf.shape(x), seed=seed)
        if p.adversarial_eps:
            x = self._l2_attack(x, y)
        return x

    def _l2_attack(self, x, y):
        p = self.perturbation
        low, high = (np.asarray(v, np.float32) for v in p.value_range)
        return l2_ascent(x, lambda moved: losses.cross_entropy(
            y, self.classifier(moved, training=False)), p.adversarial_eps,
            p.adversarial_steps, value_range=(low, high))

    def train_step(self, data):
        x, y = data
        x = self.perturb(x, y)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            loss, logits = self.objective(x, y)
            scaled = (loss + sum(self.classifier.losses)) / replicas
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(add_weight_decay(grads, variables, self.weight_decay / replicas),
                             variables)
        if self.weight_average is not None:
            self.weight_average.update(self.optimizer.iterations)
        return self._logs(loss, y, logits)

    def test_step(self, data):
        x, y = data
        logits = self.classifier(x, training=False)
        return self._logs(losses.cross_entropy(y, logits), y, logits)
