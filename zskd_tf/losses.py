"""Losses, each with the reduction the original papers' code used.

All functions return the mean over the examples they are given (per replica); trainers
divide by the number of replicas before taking gradients (see ecosystem.md §0.3).
"""
from __future__ import annotations

import tensorflow as tf


def cross_entropy(labels, logits):
    """Mean softmax cross-entropy with integer labels (PyTorch ``F.cross_entropy``)."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per_example)
