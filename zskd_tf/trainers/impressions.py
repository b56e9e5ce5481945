"""ZSKD data impressions: images whose teacher softmax at temperature T matches a target.

For a batch of sampled Dirichlet targets y, the images x (the only trainable variable) minimise
the paper's cross-entropy ``mean_i CE(y_i, softmax(teacher(x_i) / T))`` with the teacher frozen
and in inference mode (zskd.md §1.5, §4.4; T = 20). Everything else — fresh Adam state per
batch, images kept in the teacher's input range after each step, several replicas — is
:class:`ImageSynthesizer`'s.
"""
from __future__ import annotations

from zskd_tf import losses
from zskd_tf.trainers.synthesis import ImageSynthesizer

PAPER_TEMPERATURE = 20.0


class ImpressionSynthesizer(ImageSynthesizer):
    def __init__(self, teacher, batch_shape, temperature: float = PAPER_TEMPERATURE,
                 value_range=None, **kwargs):
        super().__init__(teacher, batch_shape, value_range=value_range, **kwargs)
        self.temperature = float(temperature)

    def synthesis_loss(self, images, targets):
        logits = self.teacher(images, training=False)
        return losses.soft_cross_entropy(targets, logits, self.temperature)
