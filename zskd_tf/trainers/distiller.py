"""Knowledge distillation from a frozen teacher: KD, soft-target CE, attention transfer."""
from __future__ import annotations

import keras
import tensorflow as tf

from zskd_tf import losses
from zskd_tf.models import taps as taps_lib
from zskd_tf.trainers.classifier import ClassifierTrainer, l2_ascent
from zskd_tf.trainers.distill_config import DistillConfig


class Distiller(ClassifierTrainer):
    """Trains ``student`` against a frozen ``teacher`` (always in inference mode).

    ``teacher`` may be None when nothing needs it: alpha = beta = 0 (the no-teacher
    baseline, plain CE) or stored soft targets (batches of ``(x, soft_targets)``).
    ``config`` is read for its objective (``distill_config.OBJECTIVE_FIELDS``), with
    ``at_taps`` already resolved to tap names when ``beta > 0``, and ``hint_taps`` when
    ``hint_weight > 0``; ``hint_channels`` then gives, per hint tap, the teacher's channels
    the student's stand for (``teacher_channels.kept_channels``; None: all). With
    ``config.disagreement_eps`` > 0, the first half of every batch is moved towards where
    student and teacher disagree (:meth:`perturb`) before the loss.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model | None,
                 config: DistillConfig, weight_decay: float = 0.0, hint_channels=None,
                 **kwargs):
        super().__init__(student, weight_decay=weight_decay, **kwargs)
        self.config = config
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        at_taps = config.at_taps if config.beta else ()
        hint_taps = config.hint_taps if config.hint_weight else ()
        self.tap_names = list(dict.fromkeys((*at_taps, *hint_taps)))
        self.hint_channels = [(hint_channels or {}).get(name) for name in hint_taps]
        if self.tap_names:
            self.student_taps = taps_lib.with_taps(student, self.tap_names)
            self.teacher_taps = taps_lib.with_taps(teacher, self.tap_names)
        self.anchors = ([keras.Variable(keras.ops.convert_to_numpy(v), trainable=False,
                                        name=f"anchor_{i}")
                         for i, v in enumerate(student.trainable_variables)]
                        if config.anchor_weight else [])

    def perturb(self, x, y):
        """Disagreement views (docs/methods/extensions.md, "Disagreement views"): the first
        half of the batch moved by L2 PGD, radius ``disagreement_eps`` per image, to raise the
        KL divergence of the student's scores from the teacher's; the teacher scores the moved
        images like the others."""
        x = super().perturb(x, y)
        eps = self.config.disagreement_eps
        if not eps:
            return x
        half = tf.shape(x)[0] // 2
        moved = l2_ascent(x[:half], self._disagreement, eps, self.config.disagreement_steps)
        return tf.concat([moved, x[half:]], axis=0)

    def _disagreement(self, x):
        return losses.kl_element_mean(self.teacher(x, training=False),
                                      self.classifier(x, training=False))

    def _forward(self, x):
        """Student logits (with gradient), teacher logits (constant), and their taps
        ({name: tensor})."""
        training = not self.config.freeze_bn
        if self.tap_names:
            s_logits, s_taps = self.student_taps(x, training=training)
            t_logits, t_taps = self.teacher_taps(x, training=False)
            return s_logits, tf.stop_gradient(t_logits), s_taps, {
                name: tf.stop_gradient(t) for name, t in t_taps.items()}
        s_logits = self.classifier(x, training=training)
        t_logits = (tf.stop_gradient(self.teacher(x, training=False))
                    if self.teacher is not None else None)
        return s_logits, t_logits, {}, {}

    def objective(self, x, y):
        c = self.config
        s_logits, t_logits, s_taps, t_taps = self._forward(x)
        if c.loss == "soft_ce":
            targets = y if y.shape.rank == 2 else tf.nn.softmax(t_logits / c.temperature)
            loss = c.soft_ce_scale * losses.soft_cross_entropy(targets, s_logits, c.temperature)
        elif c.alpha > 0:
            loss = losses.kd(y, s_logits, t_logits, c.alpha, c.temperature)
        else:
            loss = losses.cross_entropy(y, s_logits)
        if c.beta:
            loss += c.beta * losses.attention_transfer([s_taps[n] for n in c.at_taps],
                                                       [t_taps[n] for n in c.at_taps])
        if c.hint_weight:
            loss += c.hint_weight * losses.channel_hint([s_taps[n] for n in c.hint_taps],
                                                        [t_taps[n] for n in c.hint_taps],
                                                        self.hint_channels)
        if c.anchor_weight:
            loss += c.anchor_weight * losses.l1_anchor(self.classifier.trainable_variables,
                                                       self.anchors)
        return loss, s_logits
