"""The losses of ZSKT's adversarial game that no other method uses; none is in the paper.

* :func:`logit_l1`: what generator and student fight over with ``--matching_loss=l1``
  instead of the paper's KL;
* :func:`class_imbalance` and :func:`teacher_uncertainty`: two opt-in terms of the
  generator's loss (``--generator_balance_weight``, ``--generator_confidence_weight``).

The losses shared with other methods (the KL, attention transfer, the BatchNorm prior) are in
:mod:`zskd_tf.losses`. Like those, each returns a mean over the examples it is given.
"""
from __future__ import annotations

import tensorflow as tf


def logit_l1(teacher_logits, student_logits):
    """Mean absolute difference of the logits over all B x C elements (PyTorch ``F.l1_loss``;
    the matching loss of DFAD, Fang et al. 2019, an alternative to ZSKT's KL).

    Args:
        teacher_logits: (B, C) logits of the teacher.
        student_logits: (B, C) logits of the student on the same images.

    Returns:
        A scalar: the mean of ``|teacher_logits - student_logits|``.
    """
    return tf.reduce_mean(tf.abs(teacher_logits - student_logits))


def class_imbalance(logits):
    """How far the batch's mean predicted distribution is from uniform: ``log C - H(p_bar)``
    with ``p_bar`` the mean over the batch of ``softmax(logits)`` and H its entropy in nats.
    0 when every class is predicted equally often on average, ``log C`` when one class takes
    all (DAFL's information-entropy loss, Chen et al. 2019, shifted to be >= 0).

    Args:
        logits: (B, C) logits of the teacher on a batch of generated images.

    Returns:
        A float32 scalar in [0, log C].
    """
    mean_probs = tf.reduce_mean(tf.nn.softmax(tf.cast(logits, tf.float32)), axis=0)
    entropy = -tf.reduce_sum(mean_probs * tf.math.log(mean_probs + 1e-12))
    return tf.math.log(tf.cast(tf.shape(mean_probs)[0], tf.float32)) - entropy


def teacher_uncertainty(logits):
    """Mean cross-entropy of ``softmax(logits)`` against its own argmax: 0 when the teacher is
    certain of every image, large when it hesitates (DAFL's one-hot loss, Chen et al. 2019).

    Args:
        logits: (B, C) logits of the teacher on a batch of generated images.

    Returns:
        A float32 scalar >= 0.
    """
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.argmax(logits, axis=-1), logits=logits))
