"""Steps shared by the procedures that train a classifier (train, distill, zero_shot)."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from zskd_tf import __version__, export, model_io
from zskd_tf.data import batch_streams, sampling
from zskd_tf.data import preprocess as pp
from zskd_tf.data.eval_data import load_eval_data
from zskd_tf.errors import UserError
from zskd_tf.evaluation import accuracy_report
from zskd_tf.models import complexity, teacher_channels
from zskd_tf.runtime.checkpoints import Checkpointer
from zskd_tf.runtime.fitting import fit_resumable
from zskd_tf.runtime.run_dir import RunDir


@dataclasses.dataclass
class Split:
    """Examples and how they become model inputs (``spec`` None: ``x`` already is).

    ``name`` says what a split a model is scored on holds (results record it as
    ``scored_on``): ``test``, ``holdout`` or ``train`` of a named dataset, or ``eval_data``."""
    x: np.ndarray
    y: np.ndarray
    spec: pp.InputSpec | None
    name: str = "train"


def start_student(student, cfg, teacher_model, name: str) -> None:
    """The student's first weights: ``--init_from``'s, or with ``--init_from_teacher`` the
    teacher's own weights of its most important channels (zskd_tf/models/teacher_channels.py);
    else the student keeps its fresh ones. ``teacher_model``: the teacher's Keras model, or
    None when it has none (a SavedModel, a TFLite file, no teacher)."""
    if cfg.init_from_teacher and cfg.init_from:
        raise UserError("give --init_from or --init_from_teacher, not both")
    if cfg.init_from:
        model_io.init_weights_from(student, cfg.init_from, name)
    elif cfg.init_from_teacher:
        if teacher_model is None:
            raise UserError("--init_from_teacher needs a teacher whose weights can be read: a "
                            "zskd_tf run or a .keras file")
        teacher_channels.take_teacher_channels(teacher_model, student)


def with_defaults(cfg, **defaults):
    """A copy of ``cfg`` where each flag left at None takes the procedure's default."""
    values = dict(vars(cfg))
    values.update({k: v for k, v in defaults.items() if values.get(k) is None})
    return type(cfg)(**values)


def with_config_defaults(cfg, config, names):
    """A copy of ``cfg`` where each flag of ``names`` left at None takes the typed config's
    value (flags.cfg then records it, as it did before the configs existed).

    Args:
        cfg: the flags' values.
        config: the procedure's typed config, built from ``cfg``.
        names: the flags to fill in, fields of ``config``.

    Returns:
        The new namespace.
    """
    return with_defaults(cfg, **{name: getattr(config, name) for name in names})


def limit(x, y, max_examples, seed):
    """A seeded random subset of at most ``max_examples`` examples (all when None)."""
    if max_examples is None or max_examples >= len(x):
        return x, y
    idx = sampling.seeded_subset(len(x), max_examples, seed)
    return x[idx], y[idx]


def scored_split(cfg, raw, spec: pp.InputSpec | None) -> Split:
    """The images of a named dataset that ``--split`` names, to score a model on: at most
    ``--max_test_examples`` of them (a seeded subset).

    ``test`` (the default), ``train``, or ``holdout``: the first ``--holdout_first`` training
    images, the validation split of a model trained with that flag (``train`` and ``distill``
    leave them out of their training data).

    Args:
        cfg: the flags (``split``, ``holdout_first``, ``max_test_examples``, ``seed``).
        raw: the dataset's arrays (``datasets.load_dataset``).
        spec: how the images become the scored model's inputs.
    """
    if cfg.split == "test":
        x, y = raw.test_x, raw.test_y
    elif cfg.split == "train":
        x, y = raw.train_x, raw.train_y
    elif not 0 < cfg.holdout_first < len(raw.train_x):
        raise UserError(f"--split=holdout scores the first --holdout_first training images: "
                        f"give --holdout_first between 1 and {len(raw.train_x) - 1} (the value "
                        f"the teacher was trained with)")
    else:
        x, y = raw.train_x[:cfg.holdout_first], raw.train_y[:cfg.holdout_first]
    return Split(*limit(x, y, cfg.max_test_examples, cfg.seed), spec, cfg.split)


def no_real_images(cfg, reason: str) -> None:
    """Says that no real image will score the model (``reason``: why not), or refuses when
    ``--split`` asked for a named dataset's images that do not exist."""
    if cfg.split != "test":
        raise UserError(f"--split={cfg.split} needs a named dataset's images, and there are "
                        f"none ({reason}): give --eval_data")
    print(f"no real test set to evaluate on ({reason}: give --eval_data for an accuracy)",
          flush=True)


def eval_data_split(cfg, class_names, spec: pp.InputSpec) -> Split:
    """``--eval_data``'s images (at most ``--max_test_examples``), to score a model taking
    ``spec``'s inputs on."""
    x, y = load_eval_data(cfg.eval_data, class_names, spec.raw_shape)
    return Split(*limit(x, y, cfg.max_test_examples, cfg.seed), spec, "eval_data")


def model_info(name: str, cfg, dataset: str, class_names, spec: pp.InputSpec) -> dict:
    """model_info.json: what is needed to use the classifier without zskd_tf's flags."""
    return {"model": name, "conv": cfg.conv, "block": cfg.block, "dataset": dataset,
            "num_classes": len(class_names), "class_names": [str(c) for c in class_names],
            "input_spec": spec.to_dict(), "zskd_tf_version": __version__}


def train_and_export(cfg, run_dir: RunDir, *, trainer, model, optimizer, recipe,
                     train: Split, test: Split | None, augment: str, total_steps: int,
                     steps_per_epoch: int, info: dict, result: dict) -> dict:
    """Trains resumably, then evaluates the final model and writes every product.

    Products: model.keras + model_info.json, saved_model/, result.json (written last: its
    presence marks the run finished). ``result`` holds procedure-specific entries.
    """
    average = trainer.weight_average
    checkpointer = Checkpointer(run_dir.file("checkpoints"), cfg.checkpoint_every_secs,
                                model=model, optimizer=optimizer, weight_average=average)
    if checkpointer.restore():
        print(f"resuming at step {int(optimizer.iterations.numpy())} of {total_steps}",
              flush=True)

    def make_dataset(start_step, num_steps):
        return batch_streams.train_batches(train.x, train.y, train.spec, recipe.batch_size,
                                           cfg.seed, start_step, num_steps, augment)

    validation = batch_streams.eval_batches(test.x, test.y, test.spec, 500) if test else None
    started = time.monotonic()
    fit_resumable(trainer, run_dir, checkpointer, make_dataset, total_steps, steps_per_epoch,
                  recipe.batch_size, validation, cfg.verbose, cfg.eval_every_epochs)
    if average is not None:  # the model kept is the average (the checkpoint keeps both)
        average.copy_to_model()
    result = {**result, "steps": total_steps, "epochs": recipe.epochs,
              "recipe": dataclasses.asdict(recipe), "augment": augment,
              "ema_momentum": average.momentum if average is not None else 0.0,
              "num_train_examples": len(train.x),
              "trainable_params": complexity.count_trainable_params(model),
              "train_seconds_this_session": round(time.monotonic() - started, 1)}
    spec = pp.InputSpec.from_dict(info["input_spec"])
    if test is not None:
        scores = model_io.LoadedClassifier(
            run_dir.path, model, test.spec, info).probabilities(test.x)
        report = accuracy_report(scores, test.y, info["class_names"])
        result.update(test_accuracy=report["accuracy"],
                      per_class_accuracy=report["per_class_accuracy"],
                      num_test_examples=report["num_examples"], scored_on=test.name)
    model_io.save_classifier(run_dir.path, model, info)
    export.export_savedmodel(model, spec, run_dir.file("saved_model"), info)
    run_dir.write_result(result)
    accuracy = result.get("test_accuracy")
    print((f"{accuracy_name(result)} {accuracy:.4f}; " if accuracy is not None else "")
          + f"products in {run_dir.path}", flush=True)
    return result


def finished_result(run_dir: RunDir, cfg) -> dict | None:
    """Checks the run directory; returns the stored result if this same run finished."""
    result = run_dir.result() if run_dir.check(cfg) else None
    if result is not None:
        accuracy = result.get("test_accuracy")
        print("run already finished"
              + (f": {accuracy_name(result)} {accuracy:.4f}" if accuracy is not None else "")
              + f" ({run_dir.path})", flush=True)
    return result


def accuracy_name(result: dict) -> str:
    """How a result's ``test_accuracy`` is named in output: ``holdout accuracy`` when it was
    measured on the held-out training images (results from before ``scored_on``: test)."""
    split = result.get("scored_on", "test")
    return "test accuracy" if split in ("test", "eval_data") else f"{split} accuracy"
