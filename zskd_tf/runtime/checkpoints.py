"""Periodic training checkpoints (tf.train.Checkpoint) and their restoration on resume."""
from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from zskd_tf.errors import UserError


class Checkpointer:
    """Saves ``trackables`` at least every ``every_secs`` seconds and at each call of ``save``.

    The CheckpointManager updates its index file only after a checkpoint is fully written,
    so a kill during a save leaves the previous checkpoint as the latest one.
    """

    def __init__(self, directory: str, every_secs: float = 120, **trackables):
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        self.every_secs = every_secs
        self._last = time.monotonic()

    def restore(self) -> bool:
        """Restores the latest checkpoint if there is one; returns whether it did."""
        path = self.manager.latest_checkpoint
        if not path:
            return False
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise UserError(f"the checkpoint {path} does not fit this model/optimizer "
                            f"({str(e).splitlines()[0][:120]}); use --overwrite to start "
                            "again") from None
        return True

    def save(self, step: int) -> None:
        self.manager.save(checkpoint_number=step)
        self._last = time.monotonic()

    def due(self) -> bool:
        """Whether ``every_secs`` have passed since the last save."""
        return time.monotonic() - self._last >= self.every_secs


class CheckpointCallback(keras.callbacks.Callback):
    """Keras hook: a time-based checkpoint during epochs and one at every epoch end.

    Before each save the losses in ``logs`` (running means, so one NaN/Inf batch taints them)
    must be finite; otherwise training stops with a UserError and the broken weights are
    never stored: the run keeps its last good checkpoint and products. Checking only when
    saving keeps the training loop free of a per-step host sync."""

    def __init__(self, checkpointer: Checkpointer, step_variable):
        super().__init__()
        self.checkpointer = checkpointer
        self.step_variable = step_variable

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.step_variable))

    def on_train_batch_end(self, batch, logs=None):
        if self.checkpointer.due():
            self._save(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._save(logs)

    def _save(self, logs) -> None:
        step = self._step()
        for name, value in (logs or {}).items():
            if "loss" in name or name.endswith("_kl"):
                value = float(keras.ops.convert_to_numpy(value))
                if not math.isfinite(value):
                    raise UserError(
                        f"training stopped: {name} became {value} by step {step} (the last "
                        "checkpoint and every finished product are kept); lower the learning "
                        "rate and start again with --overwrite or a new --run_dir")
        self.checkpointer.save(step)
