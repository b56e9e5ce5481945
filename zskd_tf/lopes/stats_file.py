"""``stats.npz``: the metadata a data owner shares instead of the data
(layout: README.md, Lopes section).

Arrays (K = number of classes; every per-class array has the class as first axis):

``count`` int64 (K,): training examples per class;
``layer/<name>/mean``, ``layer/<name>/std`` float32 (K, n): per recorded layer (taps and
``logits``, the latter of logits/T), flattened row-major;
``layer/<name>/chol`` float32 (K, n, n): lower Cholesky factor of Σ + εI (only for layers
whose ``covariance`` is ``full`` in meta);
``spectral/<graph>/eigenvalues`` float64 (N,), ``spectral/<graph>/kept`` int32 (K, k),
``spectral/<graph>/mean``, ``.../std`` float32 (K, k), ``.../chol`` float32 (K, k, k);
with ``--spectral_records=examples`` also ``spectral/<graph>/record_indices`` int32 (M, k) and
``.../record_values`` float32 (M, k), every training example's own kept coefficients, and
``spectral_record_labels`` int64 (M,), their classes;
``meta``: JSON string (format, teacher fingerprint, dataset, temperature, layers, graphs).
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np

from zskd_tf import model_io
from zskd_tf.data.datasets import IMAGE_SHAPES
from zskd_tf.errors import UserError
from zskd_tf.lopes import recording
from zskd_tf.lopes.metadata import Metadata, SpectralRecords, SpectralStats
from zskd_tf.lopes.statistics import GaussianStats
from zskd_tf.runtime import atomic, guarded

FORMAT = "zskd_tf.lopes_stats/1"
FILE_NAME = "stats.npz"
RECORD_LABELS = "spectral_record_labels"


def records_kind(metadata: Metadata) -> str:
    """``--spectral_records`` of ``metadata``: ``examples`` if it holds records, else ``none``."""
    return "none" if metadata.record_labels is None else "examples"


def fingerprint(model: keras.Model, model_name: str, input_spec: dict) -> dict:
    """What identifies a teacher: architecture name, recorded layers, input mapping, and a
    SHA-256 over all its weights (in order, raw bytes)."""
    return {"model": model_name, "weights_sha256": model_io.weights_sha256(model),
            "input_spec": input_spec, "layers": recording.layer_units(model)}


def _gaussian_arrays(prefix: str, g: GaussianStats) -> dict:
    arrays = {f"{prefix}/mean": g.mean, f"{prefix}/std": g.std}
    if g.chol is not None:
        arrays[f"{prefix}/chol"] = g.chol
    return arrays


def save(path: str, metadata: Metadata, *, teacher: dict, dataset: str, extra: dict) -> dict:
    """Writes ``path`` atomically; returns the meta it stored."""
    arrays = {"count": metadata.counts.astype(np.int64)}
    layers = {}
    for name, g in metadata.layers.items():
        arrays.update(_gaussian_arrays(f"layer/{name}", g))
        layers[name] = {"units": g.units, "covariance": "diagonal" if g.chol is None else "full"}
    graphs = {}
    for graph_id, s in metadata.graphs.items():
        prefix = f"spectral/{graph_id}"
        arrays[f"{prefix}/eigenvalues"] = s.eigenvalues
        arrays[f"{prefix}/kept"] = s.kept
        arrays.update(_gaussian_arrays(prefix, s.coefficients))
        if s.records is not None:
            arrays[f"{prefix}/record_indices"] = s.records.indices
            arrays[f"{prefix}/record_values"] = s.records.values
        graphs[graph_id] = {"layers": s.layers, "nodes": len(s.eigenvalues),
                            "kept": int(s.kept.shape[1]),
                            "covariance": "diagonal" if s.coefficients.chol is None else "full"}
    if metadata.record_labels is not None:
        arrays[RECORD_LABELS] = metadata.record_labels
    meta = {"format": FORMAT, "teacher": teacher, "dataset": dataset,
            "num_classes": len(metadata.counts), "temperature": metadata.temperature,
            "layers": layers,
            "spectral": {"keep": metadata.keep, "basis": "signed_laplacian",
                         "records": records_kind(metadata), "graphs": graphs} if graphs else None,
            **extra}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic.atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    return meta


def resolve_path(stats: str) -> str:
    """``--stats``: a stats.npz file, or the compute_stats run directory holding one."""
    path = os.path.join(stats, FILE_NAME) if os.path.isdir(stats) else stats
    if not os.path.isfile(path):
        raise UserError(f"--stats={stats}: no {FILE_NAME} there; give the file or the run "
                        "directory of a finished --procedure=compute_stats")
    return path


def read_meta(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:  # the meta member alone: quick
            meta = json.loads(str(npz["meta"]))
    except Exception as e:  # noqa: BLE001 - whatever the reason, it is not our stats file
        raise UserError(f"{path} is not a stats file made by compute_stats ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a stats file made by compute_stats (format "
                        f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                        f"expected {FORMAT})")
    return meta


def _gaussian(arrays: dict, prefix: str) -> GaussianStats:
    chol = arrays.get(f"{prefix}/chol")
    return GaussianStats(arrays[f"{prefix}/mean"], arrays[f"{prefix}/std"], chol)


def load(path: str, meta: dict) -> Metadata:
    """The statistics in ``path`` (every member read and checked); UserError if damaged."""
    try:
        arrays = guarded.read_npz(path)
    except guarded.DamagedFile as e:
        raise guarded.damaged_input(e, "run compute_stats again") from None
    with_records = (meta.get("spectral") or {}).get("records") == "examples"
    try:
        layers = {name: _gaussian(arrays, f"layer/{name}") for name in meta["layers"]}
        graphs = {}
        for graph_id, info in ((meta.get("spectral") or {}).get("graphs") or {}).items():
            prefix = f"spectral/{graph_id}"
            graphs[graph_id] = SpectralStats(
                info["layers"], arrays[f"{prefix}/eigenvalues"], arrays[f"{prefix}/kept"],
                _gaussian(arrays, prefix), _records(arrays, prefix) if with_records else None)
        counts = arrays["count"]
        record_labels = arrays.get(RECORD_LABELS) if with_records else None
        if with_records:
            _check_record_labels(record_labels, len(counts))
            for graph_id, g in graphs.items():
                _check_records(graph_id, g, len(record_labels))
    except (KeyError, OSError, ValueError) as e:
        raise UserError(f"{path} is damaged or incomplete ({e}): run compute_stats again") from None
    keep = (meta.get("spectral") or {}).get("keep")
    return Metadata(meta["temperature"], keep, counts, layers, graphs, record_labels)


def _check_record_labels(labels, num_classes: int) -> None:
    """ValueError unless every class has records and every label is a class."""
    if labels is None:
        raise ValueError(f"{RECORD_LABELS} is missing")
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= num_classes or len(
            np.unique(labels)) != num_classes:
        raise ValueError(f"{RECORD_LABELS} does not give every one of the {num_classes} "
                         "classes its records")


def _check_records(graph_id: str, graph: SpectralStats, count: int) -> None:
    """ValueError unless ``graph`` has one record per label, each of valid coefficient indices."""
    records, nodes = graph.records, len(graph.eigenvalues)
    if records is None:
        raise ValueError(f"graph {graph_id} has no spectral records")
    if (records.indices.shape != records.values.shape or len(records.indices) != count
            or records.indices.min(initial=0) < 0 or records.indices.max(initial=0) >= nodes):
        raise ValueError(f"graph {graph_id}'s spectral records do not fit its {nodes} nodes "
                         f"and {count} labels")


def _records(arrays: dict, prefix: str) -> SpectralRecords | None:
    if f"{prefix}/record_indices" not in arrays:
        return None
    return SpectralRecords(arrays[f"{prefix}/record_indices"], arrays[f"{prefix}/record_values"])


def check_teacher(meta: dict, path: str, teacher_print: dict, teacher_dataset: str | None,
                  teacher_arg: str) -> None:
    """UserError unless ``path``'s statistics were computed from this teacher and its dataset."""
    stored = meta["teacher"]
    redo = f"run compute_stats with --teacher={teacher_arg}"
    if teacher_dataset and teacher_dataset != meta["dataset"]:
        raise UserError(f"{path} holds statistics of {meta['dataset']} but --teacher="
                        f"{teacher_arg} was trained on {teacher_dataset}: {redo}")
    if stored["model"] != teacher_print["model"] or stored["layers"] != teacher_print["layers"]:
        raise UserError(f"{path} holds statistics of a {stored['model']} but --teacher="
                        f"{teacher_arg} is a {teacher_print['model']}: {redo}")
    if stored["weights_sha256"] != teacher_print["weights_sha256"]:
        raise UserError(f"{path} was computed from another {stored['model']} (its weights "
                        f"differ from --teacher={teacher_arg}): {redo}")
    if stored["input_spec"] != teacher_print["input_spec"]:
        raise UserError(f"{path} was computed with another input mapping than --teacher="
                        f"{teacher_arg} uses: {redo}")


def load_teacher(path: str, dataset: str):
    """The teacher as a Keras model (taps are read from it) with its input mapping."""
    return model_io.load_keras_classifier(path, "--teacher", IMAGE_SHAPES.get(dataset),
                                          why="whose recorded layers cannot be read")


def teacher_fingerprint(teacher) -> dict:
    """``fingerprint`` of a loaded teacher (model_io.LoadedClassifier)."""
    return fingerprint(teacher.model, teacher.info.get("model") or teacher.model.name,
                       teacher.spec.to_dict())
