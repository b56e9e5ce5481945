"""``--procedure=optimize_dataset``: reconstructs a synthetic training set from ``stats.npz``
and the teacher alone (Lopes et al.: docs/methods/lopes.md, "Reconstruction loop").

Settings: ``--objective`` and the synthesis flags make a
:class:`zskd_tf.lopes.config.ReconstructionConfig`, which holds their defaults (the paper-era
code's; ``--num_samples``: 100 batches per class); Adam's epsilon is 1e-8 as TF1, with fresh
moments per batch; images start i.i.d. N(0.15, 0.1) per pixel in [0, 1] units (mapped through
the teacher's normalisation, if any), with no clipping. Batch i is drawn for class i mod K from
(``--seed``, i) alone, so batches are independent and the run resumes batch by batch.

Product: ``<objective>.npz`` in the synthetic-dataset format: ``x`` the final images, ``y``
the class each batch was sampled for, ``soft_targets`` the teacher's softmax(logits/T) on
the final images (T from the statistics). Also ``batches/``, ``metrics.jsonl`` (one record
per batch) and ``result.json``.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import keras
import numpy as np
import tensorflow as tf

from zskd_tf.data import synthetic
from zskd_tf.errors import UserError
from zskd_tf.lopes import objectives, stats_file
from zskd_tf.lopes.config import ReconstructionConfig
from zskd_tf.procedures import sharding
from zskd_tf.procedures.common import finished_result, with_defaults
from zskd_tf.runtime import devices, memory
from zskd_tf.runtime.fitting import keras_verbosity
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.trainers.reconstruction import ReconstructionSynthesizer

INIT_MEAN, INIT_STD = 0.15, 0.1
ADAM_EPSILON = 1e-8


def _adopt_stats_settings(cfg, config: ReconstructionConfig, meta: dict, stats: str):
    """Dataset, temperature and spectral keep come from the statistics; a flag that says
    otherwise is refused. Also fills in the synthesis defaults, which flags.cfg records."""
    cfg = with_defaults(cfg, synthesis_steps=config.synthesis_steps,
                        synthesis_batch_size=config.synthesis_batch_size,
                        synthesis_lr=config.synthesis_lr)
    decided = {"dataset": meta["dataset"], "temperature": meta["temperature"]}
    if meta.get("spectral"):
        decided["spectral_keep"] = meta["spectral"]["keep"]
        decided["spectral_records"] = meta["spectral"].get("records", "none")
    for name, value in decided.items():
        if name in cfg.present and getattr(cfg, name) != value:
            raise UserError(f"--{name}={getattr(cfg, name)} differs from {stats}, made with "
                            f"{value}: drop --{name} (compute_stats decides it) or compute the "
                            "statistics again")
        setattr(cfg, name, value)
    return with_defaults(cfg, num_samples=config.num_samples_for(meta["num_classes"]))


def _num_batches(config: ReconstructionConfig, replicas: int) -> int:
    if config.synthesis_batch_size % replicas:
        raise UserError(f"--synthesis_batch_size={config.synthesis_batch_size} must be "
                        f"divisible by the number of replicas ({replicas})")
    if config.num_samples % config.synthesis_batch_size:
        raise UserError(f"--num_samples={config.num_samples} must be a multiple of "
                        f"--synthesis_batch_size={config.synthesis_batch_size}")
    return config.num_samples // config.synthesis_batch_size


def initial_images(rng: np.random.Generator, count: int, spec) -> np.ndarray:
    """N(0.15, 0.1) pixels in [0, 1] units, in the teacher's input space."""
    pixels = rng.normal(INIT_MEAN, INIT_STD, (count, *spec.shape))
    return ((pixels - np.array(spec.mean)) / np.array(spec.std)).astype(np.float32)


def batch_inputs(seed: int, index: int, num_classes: int, batch_size: int, spec, objective):
    """(class, initial images, targets) of batch ``index``: a function of (seed, index) only."""
    label = index % num_classes
    rng = np.random.default_rng([seed % 2**63, index])
    images = initial_images(rng, batch_size, spec)
    return label, images, objective.sample_targets(label, batch_size, rng)


class _Reconstruction:
    """The per-batch loop: optimise, check, store, log."""

    def __init__(self, cfg, config: ReconstructionConfig, run_dir, synthesizer, objective, spec,
                 num_classes, store):
        self.cfg, self.config, self.run_dir, self.synthesizer = cfg, config, run_dir, synthesizer
        self.objective, self.spec, self.num_classes = objective, spec, num_classes
        self.store = store
        self.print = functools.partial(print, flush=True)
        self.verbose = 1 if keras_verbosity(cfg.verbose) == 1 else 0

    def loss(self, images, targets) -> float:
        return float(self.synthesizer.synthesis_loss(tf.constant(images), tf.constant(targets)))

    def soft_targets(self, images) -> np.ndarray:
        logits = self.synthesizer.teacher(tf.constant(images), training=False)
        return keras.ops.convert_to_numpy(tf.nn.softmax(logits / self.cfg.temperature))

    def run_batch(self, index: int) -> dict:
        """Optimises, checks and stores batch ``index``; returns its metrics record."""
        cfg, config = self.cfg, self.config
        label, start_images, targets = batch_inputs(cfg.seed, index, self.num_classes,
                                                    config.synthesis_batch_size, self.spec,
                                                    self.objective)
        started = time.monotonic()
        initial_loss = self.loss(start_images, targets)
        images = self.synthesizer.optimise(start_images, targets, config.synthesis_steps,
                                           verbose=self.verbose)
        final_loss = self.loss(images, targets)
        seconds = time.monotonic() - started
        if not (np.isfinite(images).all() and np.isfinite(final_loss)):
            raise UserError(f"batch {index} (class {label}) diverged: its images or loss became "
                            f"NaN/Inf during optimisation; lower --synthesis_lr (now "
                            f"{config.synthesis_lr:g}) in a new --run_dir (finished batches are "
                            f"kept in {self.store.directory})")
        self.store.save(index, x=images, y=np.full(len(images), label, np.int64),
                        soft_targets=self.soft_targets(images),
                        loss=np.array([[initial_loss, final_loss]]), seconds=np.array([seconds]))
        record = {"step": index + 1, "batch": index, "class": label,
                  "initial_loss": initial_loss, "loss": final_loss, "seconds": round(seconds, 3),
                  "image_steps_per_sec": round(config.synthesis_steps * len(images) / seconds,
                                               1)}
        self.run_dir.append_metrics(record)
        return record

    def run(self) -> None:
        pending = self.store.pending()
        total = self.store.num_batches
        mine = len(self.store.mine())
        if len(pending) < mine:
            self.print(f"resuming: {mine - len(pending)} of {mine} batches already done")
        spent = 0.0
        for done, index in enumerate(pending, 1):
            r = self.run_batch(index)
            spent += r["seconds"]
            left = spent / done * (len(pending) - done)
            self.print(f"batch {index + 1}/{total} (class {r['class']}): loss "
                       f"{r['initial_loss']:.4g} -> {r['loss']:.4g} in {r['seconds']:.1f} s "
                       f"({r['image_steps_per_sec']:.0f} image-steps/s), about "
                       + (f"{left / 60:.0f} min left" if left >= 60 else f"{left:.0f} s left"))


def run(cfg) -> dict:
    stats_path = stats_file.resolve_path(cfg.stats)
    meta = stats_file.read_meta(stats_path)
    config = ReconstructionConfig.from_flags(cfg)
    cfg = _adopt_stats_settings(cfg, config, meta, stats_path)
    config = dataclasses.replace(config, num_samples=cfg.num_samples)
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    metadata = stats_file.load(stats_path, meta)
    strategy = devices.make_strategy(cfg.strategy)
    num_batches = _num_batches(config, strategy.num_replicas_in_sync)
    with strategy.scope():  # the teacher's variables must live where the replicas run
        teacher = stats_file.load_teacher(cfg.teacher, meta["dataset"])
    stats_file.check_teacher(meta, stats_path, stats_file.teacher_fingerprint(teacher),
                             teacher.info.get("dataset"), cfg.teacher)
    objective = objectives.build(config.objective, metadata, teacher.model, stats_path)
    memory.check_batch_fits("synthesis_batch_size", config.synthesis_batch_size,
                            memory.activations_per_example(teacher.model))
    spec = teacher.spec
    with strategy.scope():
        synthesizer = ReconstructionSynthesizer(
            teacher.model, (config.synthesis_batch_size, *spec.shape), objective.segments,
            cfg.temperature, fast_input_gradient=cfg.fast_input_gradient,
            bfloat16_input_gradient=cfg.bfloat16_input_gradient)
        optimizer = keras.optimizers.Adam(learning_rate=config.synthesis_lr,
                                          epsilon=ADAM_EPSILON)
        synthesizer.compile(optimizer=optimizer)
        optimizer.build([synthesizer.images])
    run_dir.claim(cfg)
    store = sharding.store_of(cfg, run_dir, num_batches)
    print(f"reconstructing {config.num_samples} images for --objective={config.objective} "
          f"from {stats_path}: {num_batches} batches of {config.synthesis_batch_size}, "
          f"{config.synthesis_steps} steps each, {strategy.num_replicas_in_sync} replica(s)"
          + (f", shard {cfg.shard}" if sharding.is_shard(cfg) else ""), flush=True)
    _Reconstruction(cfg, config, run_dir, synthesizer, objective, spec, meta["num_classes"],
                    store).run()
    if sharding.is_shard(cfg):
        return sharding.write_shard_result(cfg, run_dir, store, objective=config.objective)
    return _finish(cfg, config, run_dir, store, spec, meta, stats_path, objective)


def _finish(cfg, config: ReconstructionConfig, run_dir, store, spec, meta, stats_path,
            objective) -> dict:
    data = store.assemble()
    path = run_dir.file(f"{config.objective}.npz")
    settings = {"objective": config.objective, "teacher": cfg.teacher, "stats": stats_path,
                "teacher_fingerprint": meta["teacher"], "temperature": cfg.temperature,
                "synthesis_steps": config.synthesis_steps,
                "synthesis_batch_size": config.synthesis_batch_size,
                "synthesis_lr": config.synthesis_lr, "seed": cfg.seed,
                "bfloat16_input_gradient": cfg.bfloat16_input_gradient,
                "segments": [[s.layer, s.units, s.weight] for s in objective.segments]}
    synthetic.save_synthetic(
        path, data["x"], data["y"], data["soft_targets"], input_spec=spec,
        dataset=meta["dataset"], method=f"lopes_{config.objective}", teacher=meta["teacher"],
        extra={**settings, "y": "the class whose statistics the image's batch was drawn from",
               "soft_targets": f"teacher softmax(logits/{cfg.temperature:g}) on the final images"})
    seconds = float(data["seconds"].sum())
    image_steps = len(data["x"]) * config.synthesis_steps
    result = {**settings, "dataset": meta["dataset"], "synthetic_dataset": path,
              "num_images": len(data["x"]), "num_batches": store.num_batches,
              "mean_initial_loss": float(data["loss"][:, 0].mean()),
              "mean_final_loss": float(data["loss"][:, 1].mean()),
              "optimisation_seconds": round(seconds, 1),
              "image_steps_per_sec": round(image_steps / max(seconds, 1e-9), 1)}
    run_dir.write_result(result)
    print(f"wrote {path}: {len(data['x'])} images, mean loss {result['mean_initial_loss']:.4g} "
          f"-> {result['mean_final_loss']:.4g}, {result['image_steps_per_sec']:.0f} "
          "image-steps/s", flush=True)
    return result
