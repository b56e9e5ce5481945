"""``--procedure=train``: trains a classifier (a teacher, or a student from scratch)."""
from __future__ import annotations

from zskd_tf.data import batch_streams, datasets
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.models import registry
from zskd_tf.procedures.common import (
    Split,
    finished_result,
    limit,
    model_info,
    scored_split,
    train_and_export,
)
from zskd_tf.runtime import devices, memory
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.trainers import recipes
from zskd_tf.trainers.classifier import ClassifierTrainer, InputPerturbation
from zskd_tf.trainers.train_config import TrainConfig


def run(cfg) -> dict:
    config = TrainConfig.from_flags(cfg)  # every training flag, defaulted and checked
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished

    raw = datasets.load_dataset(cfg.dataset, cfg.data_dir)
    family = registry.model_family(config.model)
    input_shape = registry.default_input_shape(config.model, raw.image_shape[-1])
    spec = pp.input_spec_for(cfg.dataset, family, input_shape)
    recipe = recipes.resolve(config, config.model, cfg.dataset)
    if cfg.holdout_first >= len(raw.train_x):
        raise UserError(f"--holdout_first={cfg.holdout_first} leaves no training images "
                        f"({len(raw.train_x)} in {cfg.dataset})")
    train = Split(*limit(raw.train_x[cfg.holdout_first:], raw.train_y[cfg.holdout_first:],
                         cfg.max_train_examples, cfg.seed), spec)
    test = scored_split(cfg, raw, spec)
    perturbation = InputPerturbation(
        noise_std=config.input_noise, adversarial_eps=config.adversarial_eps,
        adversarial_steps=config.adversarial_train_steps, value_range=spec.value_range,
        seed=cfg.seed)
    augment = (pp.default_augmentation(cfg.dataset, family) if config.augment == "auto"
               else config.augment)

    strategy = devices.make_strategy(cfg.strategy)
    devices.check_global_batch(recipe.batch_size, strategy)
    steps_per_epoch = batch_streams.steps_per_epoch(len(train.x), recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    with strategy.scope():
        model = registry.build_model(config.model, num_classes=raw.num_classes,
                                     input_shape=input_shape, conv=cfg.conv, block=cfg.block)
        optimizer = recipes.make_optimizer(recipe, total_steps)
        trainer = ClassifierTrainer(model, weight_decay=recipe.weight_decay,
                                    perturbation=perturbation,
                                    ema_momentum=config.ema_momentum)
        trainer.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
    memory.check_batch_fits("batch_size", recipe.batch_size,
                            memory.activations_per_example(model))
    run_dir.claim(cfg)  # every input is valid: from here on the directory is this run's
    print(f"training {config.model} on {cfg.dataset} ({len(train.x)} images from {raw.source}; "
          f"{recipe.epochs} epochs x {steps_per_epoch} steps of {recipe.batch_size}, "
          f"{strategy.num_replicas_in_sync} replica(s))", flush=True)
    return train_and_export(
        cfg, run_dir, trainer=trainer, model=model, optimizer=optimizer, recipe=recipe,
        train=train, test=test, augment=augment, total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        info=model_info(config.model, cfg, cfg.dataset, raw.class_names, spec),
        result={"model": config.model, "dataset": cfg.dataset, "data_source": raw.source,
                "input_noise": perturbation.noise_std,
                "adversarial_eps": perturbation.adversarial_eps,
                "adversarial_train_steps": perturbation.adversarial_steps})

