"""Transition curves and the mean transition error (MTE) of ZSKT: the maths of
``--procedure=transition_curves`` (docs/methods/zskt.md, "Transition curves and mean
transition error (MTE)").

For an image x with dataset label y on which network A (the attacked student) and network B
(the teacher) predict the same class, and for each of the C-1 target classes
j = (y + c + 1) mod C, x is moved by K steps of plain gradient descent on A's cross-entropy
towards j: ``x <- x - xi * dCE(A(x), j)/dx`` (no sign, no clipping, no projection, in the
normalised input space). Before each step, p_j of A and of B are recorded, so step 0 is the
clean image. MTE is the flat mean of |p_j^B - p_j^A| over images, targets and steps.

Everything is independent per (image, target), so the attack runs on a batch of N x (C-1)
copies at once; both networks are in inference mode, so rows do not interact.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from zskd_tf.errors import UserError


def agreeing_indices(pred_a: np.ndarray, pred_b: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The first ``count`` indices, in a seeded random order, where both predictions agree
    (correctness is not required, as in the reference).

    Args:
        pred_a: (N,) classes predicted by the attacked network.
        pred_b: (N,) classes predicted by the watched network (the teacher).
        count: how many indices to return.
        seed: seeds the order.

    Returns:
        (count,) indices into the predictions; UserError when fewer agree.
    """
    order = np.random.default_rng(seed).permutation(len(pred_a))
    agreeing = order[np.asarray(pred_a)[order] == np.asarray(pred_b)[order]]
    if len(agreeing) < count:
        raise UserError(f"the two networks agree on only {len(agreeing)} of the {len(pred_a)} "
                        f"test images, fewer than --num_images={count}: ask for at most "
                        f"{len(agreeing)}")
    return agreeing[:count]


def target_classes(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Every class but the label, starting after it: (y + c + 1) mod C.

    Args:
        labels: (N,) dataset labels.
        num_classes: C.

    Returns:
        (N, C-1) int64 target classes.
    """
    labels = np.asarray(labels, np.int64).reshape(-1, 1)
    return (labels + np.arange(1, num_classes)) % num_classes


class TransitionAttack:
    """Runs the attack on net A, watching net B; both are logits models on the same inputs."""

    def __init__(self, net_a: keras.Model, net_b: keras.Model, steps: int, step_size: float):
        self.net_a, self.net_b = net_a, net_b
        self.steps, self.step_size = int(steps), float(step_size)

    @tf.function(reduce_retracing=True)
    def _step(self, x, targets):
        """p_j of both nets at x, and x after one step (each row its own CE gradient)."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            logits_a = self.net_a(x, training=False)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits_a)
            total = tf.reduce_sum(ce)  # a sum, so that each row gets the gradient of its own CE
        grad = tape.gradient(total, x)
        logits_b = self.net_b(x, training=False)
        p_a = tf.gather(tf.nn.softmax(logits_a), targets, batch_dims=1)
        p_b = tf.gather(tf.nn.softmax(logits_b), targets, batch_dims=1)
        return x - self.step_size * grad, p_a, p_b

    def curves(self, images: np.ndarray, labels: np.ndarray, num_classes: int):
        """(p_j of A, p_j of B), each (N, C-1, K), for model inputs ``images`` (N, H, W, C)."""
        targets = target_classes(labels, num_classes)
        n, k = targets.shape
        x = tf.constant(np.repeat(np.asarray(images, np.float32), k, axis=0))
        flat_targets = tf.constant(targets.reshape(-1).astype(np.int32))
        p_a, p_b = [], []
        for _ in range(self.steps):
            x, a, b = self._step(x, flat_targets)
            p_a.append(a.numpy())
            p_b.append(b.numpy())
        return (np.stack(p_a, -1).reshape(n, k, self.steps),
                np.stack(p_b, -1).reshape(n, k, self.steps))


def mean_transition_error(p_a: np.ndarray, p_b: np.ndarray) -> float:
    """Mean of |p_B - p_A| over every image, target and step (paper Eq. 2).

    Args:
        p_a: the attacked network's probabilities of the target classes, any shape.
        p_b: the watched network's, the same shape.

    Returns:
        The mean transition error, a float in [0, 1].
    """
    return float(np.mean(np.abs(np.asarray(p_b, np.float64) - np.asarray(p_a, np.float64))))
