"""``--procedure=compute_stats``: the metadata of Lopes et al. (docs/methods/lopes.md,
"Metadata" and "Spectral objectives").

From ``--teacher`` and its training data (``--dataset``, default: the dataset the teacher
was trained on; ``--holdout_first`` and ``--max_train_examples`` select the images), per
class: mean, std and Cholesky factor of every recorded layer (the teacher's pre-ReLU taps
and logits/T, ``--temperature``), and the spectral coefficients of the fully connected chain
with their kept sets (``--spectral_keep``); both flags make a
:class:`zskd_tf.lopes.config.StatsConfig`, which holds their defaults.

Products: ``stats.npz`` (layout in ``zskd_tf.lopes.stats_file``), ``stats_summary.json``
(sizes in bytes per class), ``result.json``. Two inference passes over the data: minutes at
most, so an interrupted run simply starts again.
"""
from __future__ import annotations

import functools
import os
import time

import numpy as np

from zskd_tf import model_io
from zskd_tf.data import batch_streams, datasets
from zskd_tf.errors import UserError
from zskd_tf.lopes import metadata as metadata_lib
from zskd_tf.lopes import stats_file
from zskd_tf.lopes.config import StatsConfig
from zskd_tf.procedures.common import finished_result, limit, with_defaults
from zskd_tf.runtime import atomic
from zskd_tf.runtime.run_dir import RunDir

INFERENCE_BATCH = 500


def _dataset(cfg, trained_on: str | None) -> str:
    """The teacher's own dataset unless --dataset is given; a different one is refused."""
    if "dataset" not in cfg.present and trained_on:
        return trained_on
    if trained_on and cfg.dataset != trained_on:
        raise UserError(f"--teacher={cfg.teacher} was trained on {trained_on}, not "
                        f"--dataset={cfg.dataset}: statistics must come from the teacher's "
                        "training data (drop --dataset)")
    return cfg.dataset


def _training_examples(cfg, raw):
    if cfg.holdout_first >= len(raw.train_x):
        raise UserError(f"--holdout_first={cfg.holdout_first} leaves no training images "
                        f"({len(raw.train_x)} in {raw.name})")
    x, y = limit(raw.train_x[cfg.holdout_first:], raw.train_y[cfg.holdout_first:],
                 cfg.max_train_examples, cfg.seed)
    missing = np.flatnonzero(np.bincount(y, minlength=raw.num_classes) == 0)
    if len(missing):
        raise UserError(f"class(es) {', '.join(map(str, missing))} have no image among the "
                        f"{len(y)} used: raise --max_train_examples")
    return x, y


def _record_arrays(graph: metadata_lib.SpectralStats) -> tuple:
    records = graph.records
    return () if records is None else (records.indices, records.values)


def summary(path: str, metadata: metadata_lib.Metadata) -> dict:
    """stats_summary.json: what the file costs, in bytes per class, layer by layer."""
    num_classes = len(metadata.counts)

    def per_class(*arrays):
        return int(sum(a.nbytes for a in arrays if a is not None) // num_classes)

    layers = {name: {"units": g.units,
                     "covariance": "diagonal" if g.chol is None else "full",
                     "bytes_per_class": per_class(g.mean, g.std, g.chol)}
              for name, g in metadata.layers.items()}
    graphs = {graph_id: {"layers": s.layers, "nodes": len(s.eigenvalues),
                         "kept": int(s.kept.shape[1]),
                         "bytes_per_class": per_class(
                             s.kept, s.coefficients.mean, s.coefficients.std,
                             s.coefficients.chol, *_record_arrays(s))}
              for graph_id, s in metadata.graphs.items()}
    parts = [v["bytes_per_class"] for v in (*layers.values(), *graphs.values())]
    file_bytes = os.path.getsize(path)
    return {"file_bytes": file_bytes, "file_bytes_per_class": file_bytes // num_classes,
            "bytes_per_class": sum(parts), "num_classes": num_classes,
            "class_counts": [int(c) for c in metadata.counts], "layers": layers,
            "spectral_graphs": graphs,
            "note": "bytes_per_class: uncompressed arrays of one class (with "
                    "--spectral_records=examples, a class's share of the records); file_bytes: "
                    "the compressed stats.npz, shared parts (eigenvalues, meta) included"}


def run(cfg) -> dict:
    config = StatsConfig.from_flags(cfg)
    cfg = with_defaults(cfg, temperature=config.temperature)  # flags.cfg records it
    cfg.dataset = _dataset(cfg, model_io.read_info(cfg.teacher).get("dataset"))
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    raw = datasets.load_dataset(cfg.dataset, cfg.data_dir)
    teacher = stats_file.load_teacher(cfg.teacher, cfg.dataset)
    if teacher.model.output_shape[-1] != raw.num_classes:
        raise UserError(f"--teacher={cfg.teacher} predicts {teacher.model.output_shape[-1]} "
                        f"classes but {cfg.dataset} has {raw.num_classes}")
    x, y = _training_examples(cfg, raw)
    run_dir.claim(cfg)
    print_fn = functools.partial(print, flush=True)
    print_fn(f"computing the statistics of {cfg.teacher} on {len(x)} {cfg.dataset} training "
             f"images (T={config.temperature:g}, spectral keep {config.spectral_keep:g})")
    started = time.monotonic()
    metadata = metadata_lib.compute(
        teacher.model, lambda: batch_streams.eval_batches(x, y, teacher.spec, INFERENCE_BATCH),
        raw.num_classes, config.temperature, config.spectral_keep, len(x), print_fn,
        records=config.spectral_records == "examples")
    path = run_dir.file(stats_file.FILE_NAME)
    stats_file.save(path, metadata, teacher=stats_file.teacher_fingerprint(teacher),
                    dataset=cfg.dataset,
                    extra={"teacher_path": cfg.teacher, "holdout_first": cfg.holdout_first,
                           "num_train_examples": len(x), "seed": cfg.seed})
    sizes = summary(path, metadata)
    atomic.write_json(run_dir.file("stats_summary.json"), sizes)
    result = {"teacher": cfg.teacher, "dataset": cfg.dataset, "stats": path,
              "num_train_examples": len(x), "temperature": config.temperature,
              "spectral_keep": config.spectral_keep if metadata.graphs else None,
              "spectral_records": stats_file.records_kind(metadata) if metadata.graphs else None,
              "spectral_graphs": {g: s.layers for g, s in metadata.graphs.items()},
              "stats_file_bytes": sizes["file_bytes"],
              "stats_bytes_per_class": sizes["bytes_per_class"],
              "seconds": round(time.monotonic() - started, 1)}
    run_dir.write_result(result)
    print_fn(f"wrote {path} ({sizes['file_bytes'] / 1e6:.1f} MB, "
             f"{sizes['bytes_per_class'] / 1e6:.2f} MB of statistics per class)")
    return result
