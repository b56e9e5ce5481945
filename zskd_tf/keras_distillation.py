"""zskd_tf's distillation losses for ``keras.distillation`` (Keras 3.12+).

A user who already trains with ``keras.distillation.Distiller`` can plug in our objectives
and our synthetic data sets (``SyntheticDataset.to_tf_dataset()``):

* :class:`ElementMeanKD` is the KD term of the FewShot / Moonshine / ZSKT code:
  ``2 T^2 KL(softmax(t/T) || softmax(s/T))`` averaged over the batch *and the classes*
  (PyTorch's ``kl_div`` mean), which Keras' ``LogitsDistillation`` (batch-mean KL) is not.
* :class:`SoftTargetCrossEntropy` is ZSKD's student loss ``scale * CE(softmax(t/T),
  softmax(s/T))`` with the teacher run online.
* :class:`AttentionTransferLoss` is Zagoruyko and Komodakis' attention-transfer loss for one
  pair of feature maps; give it to ``keras.distillation.FeatureDistillation`` with the layer
  names of the two maps (in zoo models, the ``tap_<name>`` layers).

:func:`kd_at_losses` assembles them so that the Distiller's loss equals ``distill``'s
``(1 - alpha) CE + 2 alpha T^2 KL + beta * sum AT`` exactly.

Differences that remain: when features are distilled, the Distiller runs the student a second
time, in training mode, to read them (``distill`` reads logits and taps in one pass), so a step
costs one more student forward and BatchNorm's moving statistics move twice per step. And the
Distiller trains one student on a given dataset, so the data-free *generators* (ZSKT's
adversarial loop, whose generator learns from the
teacher-student disagreement) and the image synthesis (data impressions, Lopes et al.) stay
procedures of their own; their products are what a Distiller consumes.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from zskd_tf import losses
from zskd_tf.models import taps as taps_lib
from zskd_tf.trainers.distill_config import DEFAULTS as _DISTILL


class ElementMeanKD(keras.distillation.DistillationLoss):
    """``2 T^2 KL`` averaged over batch and classes, on the final logits.

    Args:
        temperature: the softmax temperature T (FewShot/Moonshine: 4).
    """

    def __init__(self, temperature: float = _DISTILL.temperature):
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return 2.0 * self.temperature ** 2 * losses.kl_element_mean(
            teacher_outputs, student_outputs, self.temperature)


class SoftTargetCrossEntropy(keras.distillation.DistillationLoss):
    """ZSKD's student loss, ``scale * mean CE(softmax(t/T), softmax(s/T))``.

    Args:
        temperature: T (ZSKD: 20).
        scale: the factor in front (ZSKD's code: T^2 = 400).
    """

    def __init__(self, temperature: float = 20.0, scale: float = 400.0):
        self.temperature = float(temperature)
        self.scale = float(scale)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        targets = tf.nn.softmax(teacher_outputs / self.temperature)
        return self.scale * losses.soft_cross_entropy(targets, student_outputs,
                                                      self.temperature)


class AttentionTransferLoss(keras.losses.Loss):
    """The squared difference of two feature maps' normalised attention maps, averaged over
    positions (per example); the Loss's batch mean then equals ``losses.attention_transfer``
    for one pair of maps. The maps need the same spatial size, not the same channels."""

    def __init__(self, name: str = "attention_transfer", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        teacher = losses.attention_map(tf.cast(y_true, tf.float32))
        student = losses.attention_map(tf.cast(y_pred, tf.float32))
        return tf.reduce_mean(tf.square(student - teacher), axis=-1)


def kd_at_losses(alpha: float = _DISTILL.alpha, temperature: float = _DISTILL.temperature,
                 beta: float = _DISTILL.beta, at_taps=()) -> dict:
    """Keyword arguments for ``keras.distillation.Distiller`` that reproduce ``distill``'s
    KD + attention-transfer objective.

    Args:
        alpha: the KD weight in ``(1 - alpha) CE + alpha * KD`` (0 < alpha <= 1).
        temperature: the KD temperature.
        beta: the attention-transfer weight (not scaled by alpha, as in ``distill``).
        at_taps: the zoo tap names to transfer attention at (e.g. ``group1, group2,
            group3`` of two WRNs); the layers are ``tap_<name>`` in both models.

    Returns:
        ``distillation_losses``, ``distillation_loss_weights`` and ``student_loss_weight``:
        pass them with ``teacher`` and ``student`` to ``Distiller`` and compile it with
        ``loss=SparseCategoricalCrossentropy(from_logits=True)``.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1] (the Distiller weighs every distillation "
                         f"term by alpha), got {alpha}")
    terms = [ElementMeanKD(temperature)]
    weights = [1.0]
    for name in at_taps:  # the Distiller multiplies its terms by alpha: undo it for beta
        terms.append(keras.distillation.FeatureDistillation(
            AttentionTransferLoss(), teacher_layer_name=taps_lib.tap(name),
            student_layer_name=taps_lib.tap(name)))
        weights.append(beta / alpha)
    return {"distillation_losses": terms, "distillation_loss_weights": weights,
            "student_loss_weight": 1.0 - alpha}
