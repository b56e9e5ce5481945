"""Periodic training checkpoints (tf.train.Checkpoint) and their restoration on resume."""
from __future__ import annotations

import glob
import math
import os
import sys
import time

import keras
import tensorflow as tf

from zskd_tf.errors import UserError
from zskd_tf.runtime import cluster, guarded


def _first_words(text: str, limit: int = 160) -> str:
    """The first line of ``text``, cut at a word boundary to at most ``limit`` characters."""
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def _unreadable(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` cannot be read whole (None if it can): every tensor is
    read, so TensorFlow checks the lengths and CRC32C checksums of the data files."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - OpError, IndexError, ... : the files are damaged
        return _first_words(f"{type(e).__name__}: {e}")
    return None


def _delete_checkpoint(prefix: str, problem: str) -> None:
    files = glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*")
    print(f"warning: the checkpoint {prefix} is damaged ({problem}); it is deleted and an "
          "older one tried", file=sys.stderr, flush=True)
    for path in files:
        os.remove(path)


class Checkpointer:
    """Saves ``trackables`` at least every ``every_secs`` seconds and at each call of ``save``.

    The CheckpointManager updates its index file only after a checkpoint is fully written,
    so a kill during a save leaves the previous checkpoint as the latest one. A checkpoint
    damaged later is noticed on restore (every tensor is read and its checksum checked first)
    and the older kept one is used; without any usable one, training starts again.

    A non-chief worker of a cluster (``--strategy=multi_worker``) saves into its scratch
    directory but restores the chief's checkpoints, and never deletes them.

    A trackable given as None is an optional part of the training state that this run does
    not have (e.g. no weight average): it is left out.
    """

    def __init__(self, directory: str, every_secs: float = 120, **trackables):
        self.checkpoint = tf.train.Checkpoint(
            **{name: value for name, value in trackables.items() if value is not None})
        self.directory = directory
        self.restore_directory = cluster.shared_path(directory)
        self.manager = self._manager(directory)
        self.every_secs = every_secs
        self._last = time.monotonic()

    def _manager(self, directory: str) -> tf.train.CheckpointManager:
        try:
            return tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        except Exception as e:  # noqa: BLE001 - a damaged state file: parse or decode errors
            state = os.path.join(directory, "checkpoint")
            guarded.discard(state, str(e).splitlines()[0][:120] if str(e) else type(e).__name__,
                            "the checkpoints are found by their file names")
            return tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)

    def _candidates(self) -> list[str]:
        """Checkpoint prefixes on disk, newest first (the state file may be damaged or stale)."""
        numbered = {}
        for index in glob.glob(os.path.join(self.restore_directory, "ckpt-*.index")):
            prefix = index[:-len(".index")]
            number = prefix.rsplit("-", 1)[-1]
            if number.isdigit():
                numbered[int(number)] = prefix
        return [numbered[n] for n in sorted(numbered, reverse=True)]

    def restore(self) -> bool:
        """Restores the newest readable checkpoint; returns whether one was restored.

        A damaged checkpoint is deleted with a warning and the next older one tried; if none
        is left, training starts from the beginning (said on stderr)."""
        candidates = self._candidates()
        for path in candidates:
            problem = _unreadable(path)
            if problem:
                if self.restore_directory == self.directory:  # never another process's files
                    _delete_checkpoint(path, problem)
                continue
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise UserError(f"the checkpoint {path} does not fit this model/optimizer "
                                f"({_first_words(str(e))}); use --overwrite to start "
                                "again") from None
            if path != candidates[0]:
                print(f"warning: resuming from the older checkpoint {path}", file=sys.stderr,
                      flush=True)
            return True
        if candidates:
            print(f"warning: no usable checkpoint left in {self.directory}: training starts "
                  "again from the beginning", file=sys.stderr, flush=True)
        return False

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
