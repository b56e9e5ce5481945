"""Computing the "metadata" of a teacher from its training data (docs/methods/lopes.md,
"Metadata" and "Spectral objectives").

Two passes of the frozen teacher over the data:

1. per class and recorded layer, the Gaussian moments of the activation; per class and
   spectral graph, the mean |ŝ| of the graph Fourier coefficients ŝ = Uᵀ s of every example
   (and, with ``records``, each example's own largest coefficients);
2. (spectral only) the kept sets I_c are now known: the Gaussian moments of ŝ[I_c].
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from zskd_tf.errors import UserError
from zskd_tf.lopes import recording, spectral
from zskd_tf.lopes.statistics import MAX_FULL_COVARIANCE_UNITS, ClassMoments, GaussianStats


@dataclasses.dataclass
class SpectralRecords:
    """Every training example's own compression in one graph: the indices (M, k) of its k
    coefficients largest in |ŝ| and their values (M, k). Row m is the example of label m of
    :attr:`Metadata.record_labels`."""
    indices: np.ndarray
    values: np.ndarray


@dataclasses.dataclass
class SpectralStats:
    """One graph's metadata: its layers, Laplacian eigenvalues (N,), kept sets (K, k), the
    per-class Gaussian of the kept coefficients, and (``--spectral_records=examples``) the
    examples' own records."""
    layers: list[str]
    eigenvalues: np.ndarray
    kept: np.ndarray
    coefficients: GaussianStats
    records: SpectralRecords | None = None


@dataclasses.dataclass
class Metadata:
    """Per-class statistics of every recorded layer, plus the spectral graphs' (may be {})."""
    temperature: float
    keep: float
    counts: np.ndarray
    layers: dict[str, GaussianStats]
    graphs: dict[str, SpectralStats]
    record_labels: np.ndarray | None = None  # (M,) the class of each spectral record


def _full(units: int) -> bool:
    return units <= MAX_FULL_COVARIANCE_UNITS


class _Progress:
    """One line every ``every`` seconds: pass, images done, rate."""

    def __init__(self, label: str, total: int, print_fn, every: float = 10.0):
        self.label, self.total, self.print_fn, self.every = label, total, print_fn, every
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            self.print_fn(f"{self.label}: {self.done}/{self.total} images ({rate:.0f}/s)")


def compute(model: keras.Model, batches, num_classes: int, temperature: float, keep: float,
            num_examples: int, print_fn=print, records: bool = False) -> Metadata:
    """``batches()`` yields (model inputs, labels) over the training data (called per pass).

    With ``records``, every example's own largest coefficients in every graph are kept too
    (:class:`SpectralRecords`).
    """
    units = recording.layer_units(model)
    tapped = recording.recorder(model, units)
    graphs = spectral.graph_layers(spectral.dense_chain(model))
    if graphs:
        print_fn("spectral graphs: " + ", ".join(
            f"{g} ({'-'.join(layers)}: {sum(units[name] for name in layers)} nodes)"
            for g, layers in graphs.items()) + "; computing their bases")
    bases = {g: spectral.graph_basis(model, layers) for g, layers in graphs.items()}

    def activations():
        for x, y in batches():
            acts = recording.record(tapped, x, temperature)
            yield {k: keras.ops.convert_to_numpy(v) for k, v in acts.items()}, np.asarray(y)

    passes = 2 if graphs else 1
    moments = {name: ClassMoments(num_classes, n, _full(n)) for name, n in units.items()}
    abs_sums = {g: np.zeros((num_classes, len(bases[g][0]))) for g in graphs}
    basis32 = {g: bases[g][1].astype(np.float32) for g in graphs}
    kept_records = {g: [] for g in graphs} if records and graphs else {}
    labels = []
    progress = _Progress(f"pass 1/{passes} (statistics)", num_examples, print_fn)
    for acts, y in activations():
        for name, m in moments.items():
            m.add(acts[name], y)
        for g, layers in graphs.items():
            coefficients = spectral.signal(acts, layers) @ basis32[g]
            for c in np.unique(y):
                abs_sums[g][c] += np.abs(coefficients[y == c]).sum(axis=0)
            if kept_records:
                kept_records[g].append(spectral.largest_coefficients(coefficients, keep))
        if kept_records:
            labels.append(y)
        progress.update(len(y))
    broken = [name for name, m in moments.items() if not np.isfinite(m.sum).all()]
    if broken:
        raise UserError(f"the teacher's activations of {', '.join(broken)} are NaN or Inf on "
                        "the training data: is it a trained, working model?")
    counts = moments[recording.LOGITS].count
    kept = {g: spectral.kept_indices(abs_sums[g] / np.maximum(counts, 1)[:, None], keep)
            for g in graphs}
    coefficients = _coefficient_pass(activations, graphs, bases, kept, num_classes,
                                     _Progress("pass 2/2 (spectral coefficients)",
                                               num_examples, print_fn))
    return Metadata(temperature, keep, counts,
                    {name: m.gaussian() for name, m in moments.items()},
                    {g: SpectralStats(layers, bases[g][0], kept[g], coefficients[g],
                                      _stacked(kept_records.get(g)))
                     for g, layers in graphs.items()},
                    np.concatenate(labels).astype(np.int64) if kept_records else None)


def _stacked(parts) -> SpectralRecords | None:
    """One graph's records from its per-batch (indices, values) pairs (None: not recorded)."""
    if not parts:
        return None
    return SpectralRecords(np.concatenate([i for i, _ in parts]),
                           np.concatenate([v for _, v in parts]))


def _coefficient_pass(activations, graphs, bases, kept, num_classes, progress) -> dict:
    """Graph -> per-class Gaussian of the kept coefficients ŝ[I_c] ({} without graphs)."""
    if not graphs:
        return {}
    moments = {g: ClassMoments(num_classes, kept[g].shape[1], _full(kept[g].shape[1]))
               for g in graphs}
    kept_bases = {g: [bases[g][1][:, k].astype(np.float32) for k in kept[g]] for g in graphs}
    for acts, y in activations():
        for g, layers in graphs.items():
            s = spectral.signal(acts, layers)
            for c in np.unique(y):
                moments[g].add(s[y == c] @ kept_bases[g][c], np.full(int(np.sum(y == c)), c))
        progress.update(len(y))
    return {g: m.gaussian() for g, m in moments.items()}
