"""Losses, each with the reduction the original papers' code used.

All functions return the mean over the examples they are given (per replica); trainers
divide by the number of replicas before taking gradients (see docs/methods/keras_notes.md,
"Loss scaling with several replicas"). The losses only ZSKT uses are in
:mod:`zskd_tf.zskt.adversarial_losses`.
"""
from __future__ import annotations

import tensorflow as tf


def cross_entropy(labels, logits):
    """Mean softmax cross-entropy with integer labels (PyTorch ``F.cross_entropy``)."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per_example)


def kl_element_mean(teacher_logits, student_logits, temperature=1.0):
    """KL(softmax(t/T) || softmax(s/T)) averaged over all B x C elements.

    This is PyTorch's ``F.kl_div(log_softmax(s/T), softmax(t/T))`` with its default
    ``reduction='mean'`` as used by the ZSKT, FewShot and Moonshine code: the batch-mean KL
    divided by the number of classes C (not Keras' batch-mean ``KLDivergence``).
    """
    t = teacher_logits / temperature
    s = student_logits / temperature
    p_t = tf.nn.softmax(t)
    return tf.reduce_mean(p_t * (tf.nn.log_softmax(t) - tf.nn.log_softmax(s)))


def kd(labels, student_logits, teacher_logits, alpha, temperature):
    """FewShot/Moonshine KD: ``(1-alpha)*CE + 2*alpha*T^2*KL_elementmean``
    (docs/methods/kd_at_moonshine.md, "The KD loss")."""
    loss = 2.0 * alpha * temperature ** 2 * kl_element_mean(teacher_logits, student_logits,
                                                           temperature)
    if alpha < 1.0:
        loss += (1.0 - alpha) * cross_entropy(labels, student_logits)
    return loss


def soft_cross_entropy(target_probs, student_logits, temperature=1.0):
    """Batch mean of ``-sum_c p_c log softmax(s/T)_c`` against given soft targets (Lopes, ZSKD)."""
    log_p_s = tf.nn.log_softmax(student_logits / temperature)
    return tf.reduce_mean(-tf.reduce_sum(target_probs * log_p_s, axis=-1))


def attention_map(features):
    """Zagoruyko's attention map: channel mean of squared activations, flattened to (B, H*W),
    L2-normalised per sample (PyTorch ``F.normalize`` with eps 1e-12 on the norm)."""
    a = tf.reduce_mean(tf.square(features), axis=-1)
    a = tf.reshape(a, [tf.shape(a)[0], -1])
    return tf.math.l2_normalize(a, axis=1, epsilon=1e-24)  # TF's eps bounds the squared norm


def attention_transfer(student_features, teacher_features):
    """Sum over the taps of the mean over batch and positions of the squared map difference."""
    total = 0.0
    for s, t in zip(student_features, teacher_features):
        total += tf.reduce_mean(tf.square(attention_map(s) - attention_map(t)))
    return total


def channel_hint(student_features, teacher_features, channels):
    """Sum over the taps of the mean over batch, positions and channels of the squared
    difference between the student's features and the teacher's on the channels the student
    stands for (``channels``: one index array per tap, or None for all of them)."""
    total = 0.0
    for s, t, kept in zip(student_features, teacher_features, channels):
        if kept is not None:
            t = tf.gather(t, kept, axis=-1)
        total += tf.reduce_mean(tf.square(tf.cast(s, tf.float32) - tf.cast(t, tf.float32)))
    return total


def batchnorm_statistics(features, moving_mean, moving_variance):
    """How far a batch is from the statistics a BatchNormalization layer learnt on real data
    (DeepInversion's feature-statistics prior, Yin et al. 2020): the L2 norm over channels of
    (batch mean - moving mean) plus that of (batch variance - moving variance), with the
    batch's (biased) moments over every axis but the last."""
    features = tf.cast(features, tf.float32)
    mean, variance = tf.nn.moments(features, axes=list(range(len(features.shape) - 1)))
    return tf.norm(mean - moving_mean) + tf.norm(variance - moving_variance)


def batchnorm_prior(features, layers):
    """Sum of :func:`batchnorm_statistics` over BatchNormalization ``layers``, ``features``
    holding each layer's input on the batch (``taps.with_batchnorm_inputs``)."""
    return tf.add_n([batchnorm_statistics(x, layer.moving_mean, layer.moving_variance)
                     for x, layer in zip(features, layers)])


def l1_anchor(variables, anchors):
    """Sum over tensors of mean |w - w0|: the pull of ZSKT fine-tuning to the zero-shot weights
    (docs/methods/zskt.md, "Fine-tuning with M real images per class")."""
    return tf.add_n([tf.reduce_mean(tf.abs(v - a)) for v, a in zip(variables, anchors)])
