"""``--procedure=zero_shot``: ZSKT, a student taught by a teacher without any real training
image, through a generator trained adversarially against the student (docs/methods/zskt.md,
"One outer iteration").

The ZSKT flags become one :class:`zskd_tf.zskt.config.ZeroShotConfig`, which holds their
defaults (the paper's: docs/methods/zskt.md, "Defaults of a paper run") and checks them;
``--beta``'s attention transfer uses the WRN group outputs by default, so other models need
``--beta=0``.

The student is evaluated on the real test set of ``--dataset`` (or on ``--eval_data``, or
with ``--split=holdout --holdout_first=N`` on the first N training images, a validation split)
every N/100 iterations (metrics.jsonl); the reported accuracy is the last one, and
``scored_on`` in result.json says which images gave it. A foreign teacher
without ``--dataset`` is described by itself (:mod:`zskd_tf.teacher_task`); without
``--eval_data`` its students then have no accuracy. ``--student`` may be a ``.keras`` file
holding an untrained model. ``--seeds=0,1,2`` trains one student
per seed in ``seed_<s>/`` (each: checkpoints/, metrics.jsonl, model.keras, model_info.json,
saved_model/, generator.keras, result.json) and reports the mean and population std of
the final accuracies in the top-level result.json. Without ``--seeds`` the one seed is
``--seed``. A killed run resumes from each seed's last checkpoint.

``--mixed_bfloat16`` builds student and generator under Keras's ``mixed_bfloat16`` policy and
computes the teacher's convolution input gradients in bfloat16 (the teacher's forward stays
float32); the saved and exported student is a float32 copy. Checkpoints hold float32
variables either way.
"""
from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np

from zskd_tf import export, model_io, teacher_task
from zskd_tf.calibration import GENERATOR_FILE
from zskd_tf.data import batch_streams, datasets
from zskd_tf.errors import UserError
from zskd_tf.evaluation import accuracy_report
from zskd_tf.models import complexity, registry
from zskd_tf.models import taps as taps_lib
from zskd_tf.procedures.common import (
    Split,
    accuracy_name,
    eval_data_split,
    finished_result,
    model_info,
    no_real_images,
    scored_split,
    start_student,
    with_defaults,
)
from zskd_tf.runtime import atomic, cluster, devices, memory
from zskd_tf.runtime.checkpoints import Checkpointer
from zskd_tf.runtime.fitting import fit_resumable
from zskd_tf.runtime.run_dir import RESULT_FILE, RunDir
from zskd_tf.trainers import input_gradients
from zskd_tf.zskt import generator as generator_lib
from zskd_tf.zskt import trainer as zs
from zskd_tf.zskt.config import ZeroShotConfig, seed_dir_name

EVALUATIONS = 100  # the reference evaluates every N/100 iterations
# Flags left at None that flags.cfg records filled in with the config's value (as it always
# has: a run directory made before the config existed still resumes).
RECORDED_DEFAULTS = ("iterations", "batch_size", "beta", "temperature")


def _seeds(cfg) -> list[int]:
    if not cfg.seeds:
        return [cfg.seed]
    try:
        seeds = [int(s) for s in cfg.seeds]
    except ValueError:
        raise UserError(f"--seeds must be integers like 0,1,2, got {','.join(cfg.seeds)}") from None
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice: {','.join(cfg.seeds)}")
    return seeds


def _test_split(cfg, teacher, task) -> tuple[Split | None, list]:
    """The images the student is scored on (None: none) and the class names."""
    if cfg.eval_data:
        return eval_data_split(cfg, task.class_names, teacher.spec), list(task.class_names)
    if not task.is_named:
        no_real_images(cfg, "a teacher described by itself")
        return None, list(task.class_names)
    raw = datasets.load_dataset(task.dataset, cfg.data_dir)
    if tuple(raw.image_shape) != tuple(teacher.spec.raw_shape):
        raise UserError(f"--dataset={cfg.dataset} has {tuple(raw.image_shape)} images but the "
                        f"teacher takes {tuple(teacher.spec.raw_shape)} raw images: give the "
                        "teacher's dataset")
    model_io.check_class_count(teacher, cfg.teacher, raw.num_classes, task.dataset)
    return scored_split(cfg, raw, teacher.spec), list(raw.class_names)


def _at_taps(config: ZeroShotConfig, teacher, student) -> tuple:
    """The taps attention transfer uses (--at_taps, or the WRN group outputs), checked."""
    if not config.beta:
        return ()
    wanted = config.at_taps
    shared = taps_lib.common_spatial_taps(teacher, student)
    missing = [name for name in wanted if name not in shared]
    if missing:
        raise UserError(f"--beta={config.beta} (attention transfer) needs the feature maps "
                        f"{', '.join(wanted)} with equal spatial sizes in teacher and student "
                        f"(e.g. two WRNs); {', '.join(missing)} missing: use --beta=0")
    return wanted


def _policy(config: ZeroShotConfig) -> str:
    """The Keras dtype policy student and generator compute with (--mixed_bfloat16)."""
    return "mixed_bfloat16" if config.mixed_bfloat16 else "float32"


def _build_student(cfg, spec, num_classes, policy="float32"):
    with devices.dtype_policy(policy):
        return registry.build_student(cfg.student, num_classes=num_classes,
                                      input_shape=spec.shape, conv=cfg.conv, block=cfg.block)


def _build_networks(cfg, config: ZeroShotConfig, spec, num_classes, teacher_model):
    policy = _policy(config)
    student = _build_student(cfg, spec, num_classes, policy)
    start_student(student, cfg, teacher_model, cfg.student)
    output_range = spec.value_range if config.generator_range == "teacher" else None
    with devices.dtype_policy(policy):
        generator = generator_lib.generator(spec.shape, config.z_dim, output_range=output_range,
                                            width=config.generator_width)
    return student, generator


def _deployable(setup, student, spec, num_classes):
    """The student to evaluate, save and export: itself, or under --mixed_bfloat16 a float32
    copy (same float32 weights), so that the saved model computes in float32 everywhere."""
    cfg = setup.cfg
    if _policy(setup.config) == "float32":
        return student
    twin = _build_student(cfg, spec, num_classes)
    twin.set_weights(student.get_weights())
    return twin


@dataclasses.dataclass
class _Setup:
    """What every seed shares."""
    cfg: object
    config: ZeroShotConfig
    strategy: object
    teacher: model_io.LoadedClassifier
    test: Split | None
    info: dict


def _train(trainer, seed_dir: RunDir, checkpointer: Checkpointer, setup: _Setup, seed: int):
    """Fits until the last iteration; one Keras epoch per evaluation interval of N/100
    iterations, the test set scored after each."""
    config, n = setup.config, setup.config.iterations

    def noise(start, count):
        return zs.noise_dataset(seed, start, start + count, config.batch_size,
                                config.noise_draws, config.z_dim)

    test = setup.test
    fit_resumable(trainer, seed_dir, checkpointer, noise, n, max(1, n // EVALUATIONS),
                  config.batch_size,
                  batch_streams.eval_batches(test.x, test.y, test.spec, 500) if test else None,
                  setup.cfg.verbose, eval_every_epochs=1, step_variable=trainer.iteration)


def _finished_seed(seed_dir: RunDir) -> dict | None:
    """The seed's result if it already finished, else None.

    On a cluster (``--strategy=multi_worker``) the chief's run directory decides for every
    process: a worker's own ``seed_dir`` is in its fresh scratch directory and never holds a
    result, and a worker that trained a seed the chief skips would wait in collective
    operations the chief never joins (a restarted ``--seeds`` run failed on the worker with a
    collective type mismatch). The worker reports the chief's result of a skipped seed."""
    finished = seed_dir.result()
    if not cluster.chief_decides(finished is not None):
        return None
    return finished if finished is not None else cluster.chiefs_record(
        seed_dir.file(RESULT_FILE))


def _run_seed(setup: _Setup, run_dir: RunDir, seed: int) -> dict:
    cfg, config = setup.cfg, setup.config
    seed_dir = RunDir(run_dir.file(seed_dir_name(seed)))
    finished = _finished_seed(seed_dir)
    if finished is not None:
        print(f"seed {seed}: already finished{_accuracy_text(finished)}", flush=True)
        return finished
    keras.utils.set_random_seed(seed)
    with setup.strategy.scope():
        student, generator = _build_networks(cfg, config, setup.teacher.spec,
                                             len(setup.info["class_names"]),
                                             setup.teacher.model)
        trainer = zs.ZeroShotTrainer(setup.teacher.model, student, generator, setup.config,
                                     seed=seed, input_spec=setup.teacher.spec)
        trainer.compile(*zs.make_optimizers(setup.config))
    os.makedirs(seed_dir.path, exist_ok=True)
    checkpointer = Checkpointer(seed_dir.file("checkpoints"), cfg.checkpoint_every_secs,
                                student=student, generator=generator,
                                student_optimizer=trainer.student_optimizer,
                                generator_optimizer=trainer.generator_optimizer,
                                iteration=trainer.iteration,
                                weight_average=trainer.weight_average)
    if checkpointer.restore():
        print(f"seed {seed}: resuming at iteration {int(trainer.iteration.numpy())}", flush=True)
    print(f"seed {seed}: {config.iterations} iterations of {config.n_generator_steps} "
          f"generator + {config.n_student_steps} student steps on batches of "
          f"{config.batch_size} ({config.variant} variant, beta {config.beta}); products in "
          f"{seed_dir.path}", flush=True)
    started = time.monotonic()
    _train(trainer, seed_dir, checkpointer, setup, seed)
    seconds = time.monotonic() - started
    if trainer.weight_average is not None:  # the student kept is the average
        trainer.weight_average.copy_to_model()
    spec = setup.teacher.spec
    student = _deployable(setup, student, spec, len(setup.info["class_names"]))
    result = {"seed": seed, "iterations": config.iterations,
              "ema_momentum": config.ema_momentum,
              "train_seconds_this_session": round(seconds, 1)}
    if setup.test is not None:
        scores = model_io.LoadedClassifier(seed_dir.path, student, spec,
                                           setup.info).probabilities(setup.test.x)
        report = accuracy_report(scores, setup.test.y, setup.info["class_names"])
        result.update(test_accuracy=report["accuracy"],
                      per_class_accuracy=report["per_class_accuracy"],
                      num_test_examples=report["num_examples"], scored_on=setup.test.name)
    model_io.save_classifier(seed_dir.path, student, setup.info)
    export.export_savedmodel(student, spec, seed_dir.file("saved_model"), setup.info)
    with atomic.atomic_path(seed_dir.file(GENERATOR_FILE), suffix=".keras") as tmp:
        generator.save(tmp)
    seed_dir.write_result(result)
    print(f"seed {seed}: done{_accuracy_text(result)}", flush=True)
    return result


def _accuracy_text(result: dict) -> str:
    accuracy = result.get("test_accuracy")
    return "" if accuracy is None else f", {accuracy_name(result)} {accuracy:.4f}"


def run(cfg) -> dict:
    config = ZeroShotConfig.from_flags(cfg)  # every ZSKT flag, defaulted and checked
    cfg = with_defaults(cfg, **{name: getattr(config, name) for name in RECORDED_DEFAULTS})
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    seeds = _seeds(cfg)
    strategy = devices.make_strategy(cfg.strategy)
    devices.check_global_batch(config.batch_size, strategy)
    with strategy.scope():  # the teacher's variables must live where the replicas run
        teacher, task = teacher_task.resolve(
            cfg.teacher, dataset=cfg.dataset if "dataset" in cfg.present else None,
            description=teacher_task.description_of(cfg), differentiable=True)
    if "dataset" in cfg.present:  # the test set asked for, also for a zskd_tf teacher
        task = dataclasses.replace(task, dataset=cfg.dataset)
    if config.mixed_bfloat16:  # the generator step's gradient through the frozen teacher
        input_gradients.accelerate_input_gradients(teacher.model, block_form=False,
                                                   gradient_dtype="bfloat16")
    test, class_names = _test_split(cfg, teacher, task)
    student, generator = _build_networks(cfg, config, teacher.spec, len(class_names),
                                         teacher.model)  # checks the shapes and weights
    memory.check_batch_fits("batch_size", config.batch_size,
                            memory.activations_per_example(student, teacher.model, generator))
    config = dataclasses.replace(config, at_taps=_at_taps(config, teacher.model, student))
    if config.generator_bn_weight:  # a UserError now, not after the run directory is claimed
        taps_lib.batchnorm_layers(teacher.model)
    setup = _Setup(cfg, config, strategy, teacher, test,
                   model_info(cfg.student, cfg, task.dataset, class_names, teacher.spec))
    t_params = complexity.count_trainable_params(teacher.model)  # before the trainer freezes it
    run_dir.claim(cfg)
    per_seed = [_run_seed(setup, run_dir, seed) for seed in seeds]
    result = {"seeds": seeds, "teacher": cfg.teacher, "student": cfg.student,
              "dataset": task.dataset}
    if test is not None:
        accuracies = np.array([r["test_accuracy"] for r in per_seed])
        t_scores = teacher.probabilities(test.x)
        result.update(test_accuracy=float(accuracies.mean()),
                      test_accuracy_std=float(accuracies.std()),  # population std
                      per_seed_test_accuracy=accuracies.tolist(),
                      teacher_test_accuracy=float(np.mean(t_scores.argmax(-1) == test.y)),
                      num_test_examples=len(test.y), scored_on=test.name)
    result |= {"student_trainable_params": complexity.count_trainable_params(student),
              "generator_trainable_params": complexity.count_trainable_params(generator),
              "teacher_trainable_params": t_params,
              "zero_shot": {**dataclasses.asdict(config), "at_taps": list(config.at_taps)}}
    run_dir.write_result(result)
    accuracy = (f"{accuracy_name(result)} {result['test_accuracy']:.4f} +- "
                f"{result['test_accuracy_std']:.4f}" if test is not None else "no test set")
    print(f"zero-shot {accuracy} over seeds {','.join(map(str, seeds))}; "
          f"products in {run_dir.path}", flush=True)
    return result
