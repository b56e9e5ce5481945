"""``--procedure=train``: trains a classifier (a teacher, or a student from scratch)."""
from __future__ import annotations

import dataclasses
import time

from zskd_tf import __version__, export, model_io
from zskd_tf.data import datasets, pipeline
from zskd_tf.data import preprocess as pp
from zskd_tf.data import sampling
from zskd_tf.errors import UserError
from zskd_tf.evaluation import accuracy_report
from zskd_tf.models import complexity, registry
from zskd_tf.runtime import devices
from zskd_tf.runtime.checkpoints import Checkpointer
from zskd_tf.runtime.fitting import fit_resumable
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.trainers import recipes
from zskd_tf.trainers.classifier import ClassifierTrainer


def limit(x, y, max_examples, seed):
    """A seeded random subset of at most ``max_examples`` examples (all when None)."""
    if max_examples is None or max_examples >= len(x):
        return x, y
    idx = sampling.seeded_subset(len(x), max_examples, seed)
    return x[idx], y[idx]


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    finished = run_dir.result() if run_dir.check(cfg) else None
    if finished:
        print(f"run already finished: test accuracy {finished['test_accuracy']:.4f} "
              f"({run_dir.path})", flush=True)
        return finished

    raw = datasets.load_dataset(cfg.dataset, cfg.data_dir)
    family = registry.model_family(cfg.model)
    input_shape = registry.default_input_shape(cfg.model, raw.image_shape[-1])
    spec = pp.input_spec_for(cfg.dataset, family, input_shape)
    recipe = recipes.resolve(cfg, cfg.model, cfg.dataset)
    if cfg.holdout_first >= len(raw.train_x):
        raise UserError(f"--holdout_first={cfg.holdout_first} leaves no training images "
                        f"({len(raw.train_x)} in {cfg.dataset})")
    train_x, train_y = limit(raw.train_x[cfg.holdout_first:], raw.train_y[cfg.holdout_first:],
                             cfg.max_train_examples, cfg.seed)
    test_x, test_y = limit(raw.test_x, raw.test_y, cfg.max_test_examples, cfg.seed)
    augment = pp.default_augmentation(cfg.dataset, family) if cfg.augment == "auto" else cfg.augment

    strategy = devices.make_strategy(cfg.strategy)
    devices.check_global_batch(recipe.batch_size, strategy)
    steps_per_epoch = pipeline.steps_per_epoch(len(train_x), recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    with strategy.scope():
        model = registry.build_model(cfg.model, num_classes=raw.num_classes,
                                     input_shape=input_shape, conv=cfg.conv, block=cfg.block)
        optimizer = recipes.make_optimizer(recipe, total_steps)
        trainer = ClassifierTrainer(model, weight_decay=recipe.weight_decay)
        trainer.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
    run_dir.claim(cfg)  # every input is valid: from here on the directory is this run's
    checkpointer = Checkpointer(run_dir.file("checkpoints"), cfg.checkpoint_every_secs,
                                model=model, optimizer=optimizer)
    if checkpointer.restore():
        print(f"resuming at step {int(optimizer.iterations.numpy())} of {total_steps}",
              flush=True)
    print(f"training {cfg.model} on {cfg.dataset} ({len(train_x)} images from {raw.source}; "
          f"{recipe.epochs} epochs x {steps_per_epoch} steps of {recipe.batch_size}, "
          f"{strategy.num_replicas_in_sync} replica(s))", flush=True)

    def make_dataset(start_step, num_steps):
        return pipeline.train_batches(train_x, train_y, spec, recipe.batch_size, cfg.seed,
                                      start_step, num_steps, augment)

    started = time.monotonic()
    fit_resumable(trainer, run_dir, checkpointer, make_dataset, total_steps, steps_per_epoch,
                  recipe.batch_size, pipeline.eval_batches(test_x, test_y, spec, 500),
                  cfg.verbose)
    train_seconds = time.monotonic() - started

    info = {"model": cfg.model, "conv": cfg.conv, "block": cfg.block, "dataset": cfg.dataset,
            "num_classes": raw.num_classes, "class_names": list(raw.class_names),
            "input_spec": spec.to_dict(), "zskd_tf_version": __version__}
    loaded = model_io.LoadedClassifier(run_dir.path, model, spec, info)
    report = accuracy_report(loaded.probabilities(test_x), test_y, raw.class_names)
    model_io.save_classifier(run_dir.path, model, info)
    export.export_savedmodel(model, spec, run_dir.file("saved_model"), info)
    result = {"test_accuracy": report["accuracy"],
              "per_class_accuracy": report["per_class_accuracy"],
              "num_test_examples": report["num_examples"],
              "num_train_examples": len(train_x), "steps": total_steps,
              "epochs": recipe.epochs, "recipe": dataclasses.asdict(recipe),
              "augment": augment, "trainable_params": complexity.count_trainable_params(model),
              "data_source": raw.source, "train_seconds_this_session": round(train_seconds, 1),
              "model": cfg.model, "dataset": cfg.dataset}
    run_dir.write_result(result)
    print(f"test accuracy {result['test_accuracy']:.4f} on {report['num_examples']} images; "
          f"products in {run_dir.path}", flush=True)
    return result
