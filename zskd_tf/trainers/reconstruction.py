"""Lopes et al.'s input reconstruction: images optimised so that the frozen teacher's recorded
activations match targets drawn from its per-class statistics (docs/methods/lopes.md,
"Reconstruction loop" and "Objectives").

The objective (``zskd_tf.lopes.objectives``) says which layers are compared and how they
are weighted; the targets of a batch arrive as one (batch, units) array, drawn once per
batch and fixed for all its steps.
"""
from __future__ import annotations

import keras

from zskd_tf.lopes import objectives, recording
from zskd_tf.trainers.synthesis import ImageSynthesizer


class ReconstructionSynthesizer(ImageSynthesizer):
    def __init__(self, teacher: keras.Model, batch_shape, segments, temperature: float,
                 **kwargs):
        super().__init__(teacher, batch_shape, **kwargs)
        self.segments = tuple(segments)
        self.temperature = float(temperature)
        self.recorder = recording.recorder(teacher, [s.layer for s in self.segments])
        self.recorder.trainable = False

    def activations(self, images) -> dict:
        return recording.record(self.recorder, images, self.temperature)

    def synthesis_loss(self, images, targets, rows=None):
        return objectives.reconstruction_loss(self.activations(images), targets, self.segments)
