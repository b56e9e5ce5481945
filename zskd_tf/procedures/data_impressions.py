"""``--procedure=data_impressions``: ZSKD data impressions of a teacher (Nayak et al. 2019).

Recipe (docs/methods/zskd.md, "Concentration matrix", "Dirichlet targets" and "Synthesising
the impressions"): concentration matrix of the teacher's final Dense layer;
for every impression a Dirichlet target ``Dir(beta * alpha^k)`` (``--betas``, equal shares per
class and beta); starting from uniform noise over the teacher's input range, Adam
(``--synthesis_lr``; TF1's epsilon 1e-8) minimises ``CE(y, softmax(teacher(x) / T))`` (plus,
if asked, sseung0703's image L2 ``--impression_l2``, a smoothness prior ``--impression_tv``,
and DeepInversion's BatchNorm feature-statistics prior ``--impression_bn_weight``;
``--impression_init=normal`` starts from his N(0, 1)) for ``--synthesis_steps`` steps per
batch of ``--synthesis_batch_size``, with a fresh optimizer state per batch and the images
clipped to the teacher's input range after every step. The ZSKD flags become one
:class:`zskd_tf.zskd.config.ImpressionConfig`, which holds their defaults (``--num_samples``:
the paper's transfer-set size for the teacher's dataset) and checks them.

Products: ``concentration.npy`` (K x K, float64), ``impressions.npz`` (the synthetic-dataset
format: ``x`` = the final impressions in the teacher's input space, ``soft_targets`` = the
teacher's softmax at T on them, ``y`` = the teacher's argmax on them — not the Dirichlet
target's class, nor the concentration row it was drawn from), ``metrics.jsonl`` (one record
per batch) and ``result.json``. Finished batches stay in ``batches/batch_NNNNNN.npz`` with, per
impression, also its Dirichlet ``targets``, ``concentration_row``, ``beta`` and final ``loss``:
a killed run continues with the next unfinished batch and makes what an uninterrupted run
makes.
"""
from __future__ import annotations

import time

import keras
import numpy as np

from zskd_tf import teacher_task
from zskd_tf.data import synthetic
from zskd_tf.errors import UserError
from zskd_tf.procedures import sharding
from zskd_tf.procedures.common import finished_result, with_config_defaults
from zskd_tf.runtime import atomic, devices, memory
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.trainers.impressions import ImpressionSynthesizer
from zskd_tf.zskd import concentration as concentration_lib
from zskd_tf.zskd import targets as targets_lib
from zskd_tf.zskd.config import PAPER_NUM_SAMPLES, ImpressionConfig  # noqa: F401  (re-export)
from zskd_tf.zskd.teacher import load_teacher

# Flags left at None that flags.cfg records filled in with the config's value (as it always
# has: a run directory made before the config existed still resumes).
RECORDED_DEFAULTS = ("temperature", "synthesis_steps", "synthesis_batch_size", "synthesis_lr")
ADAM_EPSILON = 1e-8  # TF1 / Keras 2 default used by the authors (Keras 3's is 1e-7)
IMPRESSIONS_FILE = "impressions.npz"
CONCENTRATION_FILE = "concentration.npy"


def run(cfg) -> dict:
    config = ImpressionConfig.from_flags(cfg)  # every ZSKD flag, defaulted and checked
    cfg = with_config_defaults(cfg, config, RECORDED_DEFAULTS)
    # --num_classes, --class_names, --input_range: foreign teachers only (zskd_tf/teacher_task.py)
    description = teacher_task.description_of(cfg)
    targets_lib.check_seed(cfg.seed)
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    strategy = devices.make_strategy(cfg.strategy)
    teacher = load_teacher(cfg.teacher, dataset=cfg.dataset, dataset_given="dataset" in cfg.present,
                           final_layer=config.final_layer, input_range=description.input_range,
                           strategy=strategy, num_classes=description.num_classes,
                           class_names=description.class_names)
    num_samples = config.num_samples_for(teacher.dataset)
    plan = targets_lib.ImpressionPlan(num_samples, teacher.num_classes, config.betas,
                                      min(config.synthesis_batch_size, num_samples))
    replicas = strategy.num_replicas_in_sync
    if plan.batch_size % replicas:
        raise UserError(f"--synthesis_batch_size={plan.batch_size} must be divisible by the "
                        f"number of replicas ({replicas})")
    memory.check_batch_fits("synthesis_batch_size", plan.batch_size,
                            memory.activations_per_example(teacher.logits_model))
    concentration = concentration_lib.concentration_matrix(teacher.kernel)
    with strategy.scope():
        synthesizer = ImpressionSynthesizer(teacher.logits_model,
                                            (plan.batch_size, *teacher.spec.shape),
                                            config.temperature, teacher.value_range,
                                            fast_input_gradient=cfg.fast_input_gradient,
                                            bfloat16_input_gradient=cfg.bfloat16_input_gradient,
                                            image_l2=config.image_l2,
                                            image_tv=config.impression_tv,
                                            jitter=config.impression_jitter,
                                            flip=config.impression_flip,
                                            bn_weight=config.impression_bn_weight)
        optimizer = keras.optimizers.Adam(config.synthesis_lr, epsilon=ADAM_EPSILON)
        synthesizer.compile(optimizer=optimizer)
        optimizer.build([synthesizer.images])
    run_dir.claim(cfg)  # every input is valid: from here on the directory is this run's
    with atomic.atomic_path(run_dir.file(CONCENTRATION_FILE), ".npy") as tmp:  # cheap: always
        np.save(tmp, concentration)
    store = sharding.store_of(cfg, run_dir, plan.num_batches)
    pending = store.pending()
    print(f"data impressions of {cfg.teacher} ({teacher.dataset}, {teacher.num_classes} "
          f"classes, final layer {teacher.final_layer}, logits: {teacher.logits_from}): "
          f"{num_samples} in {plan.num_batches} batches of {plan.batch_size}, betas "
          f"{','.join(map(str, config.betas))}, T={config.temperature:g}, "
          f"{config.synthesis_steps} Adam steps at lr {config.synthesis_lr:g} ({config.priors}), "
          f"{replicas} replica(s), "
          f"{'bfloat16' if cfg.bfloat16_input_gradient else 'fast'} input gradient "
          f"through {synthesizer.accelerated_layers or 'no layer'}; "
          f"{len(pending)} batch(es) to make"
          + (f" (shard {cfg.shard})" if sharding.is_shard(cfg) else ""), flush=True)
    started = time.monotonic()
    for index in pending:
        _make_batch(cfg, config, index, plan, teacher, concentration, synthesizer, store,
                    run_dir)
    if sharding.is_shard(cfg):
        return sharding.write_shard_result(cfg, run_dir, store, teacher=cfg.teacher,
                                           products=[CONCENTRATION_FILE])
    result = _finish(cfg, config, run_dir, store, plan, teacher)
    result["seconds_this_session"] = round(time.monotonic() - started, 1)
    run_dir.write_result(result)
    print(f"mean loss {result['mean_loss']:.4f}, teacher argmax = target argmax for "
          f"{result['teacher_matches_target']:.1%}; products in {run_dir.path}", flush=True)
    return result


def _teacher_outputs(teacher, x, targets, temperature):
    """(logits, softmax at T, per-impression CE against ``targets``) of the teacher on ``x``."""
    logits = keras.ops.convert_to_numpy(teacher.logits_model(x, training=False)).astype(np.float64)
    z = logits / temperature
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    return logits, np.exp(log_p), -(targets * log_p).sum(axis=1)


def _make_batch(cfg, config: ImpressionConfig, index, plan, teacher, concentration,
                synthesizer, store, run_dir):
    start = time.monotonic()
    targets = plan.targets(index, concentration, cfg.seed)
    rows, beta_index = plan.groups(index)
    x0 = targets_lib.initial_images(cfg.seed, index, synthesizer.images.shape,
                                    *teacher.value_range, init=config.impression_init)
    _, _, initial_loss = _teacher_outputs(teacher, x0, targets, config.temperature)
    x = synthesizer.optimise(x0, targets.astype(np.float32), config.synthesis_steps,
                             seed=targets_lib.step_seed(cfg.seed, index))
    logits, soft, loss = _teacher_outputs(teacher, x, targets, config.temperature)
    where = f"batch {index + 1}/{plan.num_batches}"
    if not (np.isfinite(x).all() and np.isfinite(logits).all()):
        kept = plan.num_batches - len(store.pending())
        raise UserError(f"{where}: the impressions or the teacher's logits became NaN/Inf "
                        f"during optimisation ({kept} finished batch(es) kept in "
                        f"{store.directory}); try a smaller --synthesis_lr in a new run "
                        "(another --run_dir, or --overwrite)")
    store.save(index, x=x, targets=targets.astype(np.float32),
               soft_targets=soft.astype(np.float32), y=logits.argmax(axis=1),
               concentration_row=rows, beta=np.asarray(plan.betas)[beta_index].astype(np.float32),
               loss=loss.astype(np.float32))
    seconds = time.monotonic() - start
    record = {"batch": index + 1, "initial_loss": float(initial_loss.mean()),
              "loss": float(loss.mean()), "seconds": round(seconds, 2),
              "image_steps_per_sec": round(plan.batch_size * config.synthesis_steps / seconds,
                                           1)}
    run_dir.append_metrics(record)
    if cfg.verbose != "quiet":
        print(f"{where}: loss {record['initial_loss']:.4f} -> {record['loss']:.4f} "
              f"({seconds:.1f} s)", flush=True)


def _finish(cfg, config: ImpressionConfig, run_dir, store, plan, teacher) -> dict:
    """Assembles the batches into the products; returns the result."""
    parts = store.assemble()
    extra = {"teacher": cfg.teacher, "final_layer": teacher.final_layer,
             "logits": teacher.logits_from, "class_names": list(teacher.class_names),
             "betas": list(config.betas), "temperature": config.temperature,
             "synthesis_steps": config.synthesis_steps, "synthesis_lr": config.synthesis_lr,
             "synthesis_batch_size": plan.batch_size, "seed": cfg.seed,
             "init": targets_lib.INITS[config.impression_init],
             "image_l2": config.impression_l2,
             "image_l2_mix": list(config.impression_l2_mix), "image_tv": config.impression_tv,
             "jitter": config.impression_jitter, "flip": config.impression_flip,
             "bn_weight": config.impression_bn_weight,
             "bfloat16_input_gradient": cfg.bfloat16_input_gradient,
             "y": "argmax of the teacher's logits on the final impression",
             "soft_targets": f"teacher softmax at T={config.temperature:g} on the final "
                             "impression"}
    synthetic.save_synthetic(run_dir.file(IMPRESSIONS_FILE), parts["x"], parts["y"],
                             parts["soft_targets"], input_spec=teacher.spec,
                             dataset=teacher.dataset, method="zskd_data_impressions",
                             extra=extra, teacher=teacher.fingerprint,
                             class_names=teacher.class_names)
    targets, soft = parts["targets"], parts["soft_targets"]
    entropy = -(targets * np.log(np.maximum(targets, 1e-30))).sum(axis=1)
    return {"teacher": cfg.teacher, "dataset": teacher.dataset,
            "class_names": list(teacher.class_names), "final_layer": teacher.final_layer,
            "logits": teacher.logits_from, "num_impressions": plan.num_samples,
            "num_batches": plan.num_batches, "betas": list(config.betas),
            "temperature": config.temperature, "synthesis_steps": config.synthesis_steps,
            "synthesis_lr": config.synthesis_lr, "synthesis_batch_size": plan.batch_size,
            "impression_init": config.impression_init, "impression_l2": config.impression_l2,
            "impression_l2_mix": list(config.impression_l2_mix),
            "impression_tv": config.impression_tv,
            "impression_jitter": config.impression_jitter,
            "impression_flip": config.impression_flip,
            "impression_bn_weight": config.impression_bn_weight,
            "bfloat16_input_gradient": cfg.bfloat16_input_gradient,
            "mean_loss": float(parts["loss"].mean()),
            "mean_kl_target_to_teacher": float((parts["loss"] - entropy).mean()),
            "teacher_matches_target": float(np.mean(soft.argmax(1) == targets.argmax(1))),
            "y_counts": np.bincount(parts["y"], minlength=plan.num_classes).tolist(),
            "products": [IMPRESSIONS_FILE, CONCENTRATION_FILE]}
