"""Resumable ``fit``: continues from the optimizer's step with the same data order."""
from __future__ import annotations

import sys
import time

import keras

from zskd_tf.runtime.checkpoints import CheckpointCallback, Checkpointer
from zskd_tf.runtime.run_dir import RunDir


def keras_verbosity(verbose: str) -> int:
    if verbose == "quiet":
        return 0
    if verbose == "bar" or (verbose == "auto" and sys.stdout.isatty()):
        return 1
    return 2


class MetricsLogger(keras.callbacks.Callback):
    """Appends one JSON record per epoch to metrics.jsonl (step, losses, lr, images/s)."""

    def __init__(self, run: RunDir, step_variable, batch_size: int):
        super().__init__()
        self.run = run
        self.step_variable = step_variable
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._start_step = self._step()
        self._start = self._last_batch = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self._last_batch = time.monotonic()

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.step_variable))

    def on_epoch_end(self, epoch, logs=None):
        step = self._step()
        seconds = max(self._last_batch - self._start, 1e-9)
        record = {"epoch": epoch + 1, "step": step, "train_seconds": round(seconds, 3),
                  "images_per_sec": round((step - self._start_step) * self.batch_size / seconds, 1)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        lr = getattr(self.model.optimizer, "learning_rate", None)
        if lr is not None:
            record["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        self.run.append_metrics(record)


# The final score counts as collapsed when it is this far below the run's best, in accuracy
# and as a share of the best (the second keeps the noise of small validation sets out).
COLLAPSE_POINTS = 0.15
COLLAPSE_SHARE = 0.8


def collapse_warning(records: list[dict]) -> str | None:
    """A warning when the last validation accuracy fell far below the run's best, else None.

    Args:
        records: metrics.jsonl's records, in order (``val_accuracy`` where one was scored).

    Returns:
        One sentence naming both scores and their epochs; the model kept is the last one.
    """
    scored = [(r["val_accuracy"], r.get("epoch")) for r in records
              if isinstance(r.get("val_accuracy"), (int, float))]
    if not scored:
        return None
    (last, last_epoch), (best, best_epoch) = scored[-1], max(scored, key=lambda s: s[0])
    if best - last < COLLAPSE_POINTS or last > COLLAPSE_SHARE * best:
        return None
    return (f"the validation accuracy fell from {best:.2%} (epoch {best_epoch}) to {last:.2%} "
            f"(epoch {last_epoch}), and the model kept is the last one: training may have "
            "diverged (a lower learning rate, or a recipe made for this model, may help)")


def fit_resumable(trainer: keras.Model, run: RunDir, checkpointer: Checkpointer, make_dataset,
                  total_steps: int, steps_per_epoch: int, batch_size: int,
                  validation_data=None, verbose: str = "auto",
                  eval_every_epochs: int | None = None, step_variable=None) -> None:
    """Trains until ``step_variable`` (default: the optimizer's step count) is ``total_steps``.

    ``make_dataset(start_step, num_steps)`` returns the batches of those global steps. An
    epoch cut by an interruption is finished first, then whole epochs follow, then a short
    last epoch if ``total_steps`` is not a multiple of ``steps_per_epoch``. The validation
    set is scored every ``eval_every_epochs`` epochs (default: about 50 times per run).
    """
    step_variable = trainer.optimizer.iterations if step_variable is None else step_variable
    step = int(keras.ops.convert_to_numpy(step_variable))
    run.truncate_metrics(step)
    callbacks = [CheckpointCallback(checkpointer, step_variable),
                 MetricsLogger(run, step_variable, batch_size),
                 keras.callbacks.TensorBoard(run.file("tensorboard"), write_graph=False)]
    total_epochs = -(-total_steps // steps_per_epoch)
    eval_every_epochs = eval_every_epochs or max(1, total_epochs // 50)
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        if offset or total_steps - step < steps_per_epoch:  # interrupted, or the short last
            end = min((epoch + 1) * steps_per_epoch, total_steps)
            epochs, steps = epoch + 1, end - step
        else:  # every whole epoch left
            end = step + (total_steps - step) // steps_per_epoch * steps_per_epoch
            epochs, steps = epoch + (end - step) // steps_per_epoch, steps_per_epoch
        trainer.fit(make_dataset(step, end - step), epochs=epochs, initial_epoch=epoch,
                    steps_per_epoch=steps, validation_data=validation_data,
                    validation_freq=eval_every_epochs,
                    callbacks=callbacks, verbose=keras_verbosity(verbose), shuffle=False)
        step = int(keras.ops.convert_to_numpy(step_variable))
    checkpointer.save(step)
    warning = collapse_warning(run.metrics())
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
