"""The four reconstruction objectives of Lopes et al. (docs/methods/lopes.md, "Objectives" and
"Spectral objectives").

An objective is a list of *segments*: (recorded layer, weight) pairs whose targets sit side
by side in one (batch, total units) target array, drawn once per batch. The loss of every
objective is the same sum over segments (ReLU on both sides, as in the paper's code):

    loss = Σ_segments weight · mean over (batch, units) of (ReLU(target) − ReLU(activation))²

* ``top_layer``: the logits/T segment, weight 1; targets from its per-class Gaussian.
* ``all_layers``: every recorded layer, weight 1/n_l (the paper's per-layer normalisation).
* ``spectral_all_layers``: the layers of the fully connected chain get their targets from
  the ``all`` graph: ŝ ~ N(m_c, C_c) on the kept set I_c, s̄ = U[:, I_c] ŝ split per layer;
  the other layers (LeNet's convs) keep the all_layers statistics targets. Weights 1/n_l.
* ``spectral_layer_pairs``: the same with one independent target per adjacent pair of the
  chain (``pair<i>`` graphs), so an inner layer appears in two segments.

With statistics computed with ``--spectral_records=examples``, the two spectral objectives
draw their chain targets from real examples instead: each image of a batch of class c gets
one training example of class c, drawn at random, and the chain's target is that example's
signal rebuilt from its own kept coefficients (every graph of the objective from the same
example, so the two targets of an inner layer agree).
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from zskd_tf.errors import UserError
from zskd_tf.lopes import recording, spectral
from zskd_tf.lopes.metadata import Metadata, SpectralStats
from zskd_tf.lopes.statistics import GaussianStats

OBJECTIVES = ("top_layer", "all_layers", "spectral_all_layers", "spectral_layer_pairs")
SPECTRAL = ("spectral_all_layers", "spectral_layer_pairs")


@dataclasses.dataclass(frozen=True)
class Segment:
    layer: str
    offset: int  # first column of its targets
    units: int
    weight: float


def reconstruction_loss(activations: dict, targets, segments) -> tf.Tensor:
    """The objective's loss (mean over the rows given) for flattened ``activations``."""
    total = 0.0
    for s in segments:
        target = targets[:, s.offset:s.offset + s.units]
        difference = tf.nn.relu(target) - tf.nn.relu(activations[s.layer])
        total += s.weight * tf.reduce_mean(tf.square(difference))
    return total


class _LayerTargets:
    """Targets of one layer drawn from its per-class Gaussian."""

    def __init__(self, layer: str, stats: GaussianStats):
        self.layers, self.units, self.stats = [layer], [stats.units], stats

    def sample(self, label, count, rng):
        return self.stats.sample(label, count, rng)


class _SpectralTargets:
    """Targets of a graph's layers: kept coefficients drawn, then back to the node domain."""

    def __init__(self, stats: SpectralStats, basis: np.ndarray, units: list[int]):
        self.layers, self.units, self.stats = stats.layers, units, stats
        self.kept_basis = [basis[:, kept].astype(np.float32) for kept in stats.kept]

    def sample(self, label, count, rng):
        return self.stats.coefficients.sample(label, count, rng) @ self.kept_basis[label].T


class _RecordTargets:
    """Targets of the graphs' layers rebuilt from the records of one drawn example per image."""

    def __init__(self, graphs: list[SpectralStats], bases: list[np.ndarray],
                 units: list[list[int]], labels: np.ndarray):
        self.graphs, self.bases = graphs, bases
        self.layers = [layer for g in graphs for layer in g.layers]
        self.units = [n for graph_units in units for n in graph_units]
        self.examples = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]

    def sample(self, label, count, rng):
        chosen = rng.choice(self.examples[label], count)
        return np.concatenate([
            spectral.rebuild(g.records.indices[chosen], g.records.values[chosen], basis)
            for g, basis in zip(self.graphs, self.bases)], axis=1)


@dataclasses.dataclass
class Objective:
    name: str
    segments: tuple
    sources: list  # each with .layers, .units and .sample(label, count, rng) -> (count, Σ units)

    def sample_targets(self, label: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """One batch's targets (count, Σ segment units), float32, drawn in source order."""
        return np.concatenate([source.sample(label, count, rng) for source in self.sources],
                              axis=1).astype(np.float32)


def build(name: str, metadata: Metadata, teacher: keras.Model, where: str) -> Objective:
    """The objective ``name`` for ``teacher`` from its statistics (``where``: for messages)."""
    if name not in OBJECTIVES:
        raise UserError(f"unknown --objective={name}; use one of {', '.join(OBJECTIVES)}")
    if name == "top_layer":
        sources = [_LayerTargets(recording.LOGITS, metadata.layers[recording.LOGITS])]
        return _assemble(name, sources, weight=lambda units: 1.0)
    graphs = _graphs_for(name, metadata, where) if name in SPECTRAL else []
    graph_layers = {layer for g in graphs for layer in g.layers}
    sources = [_LayerTargets(layer, stats) for layer, stats in metadata.layers.items()
               if layer not in graph_layers]
    bases = [_verified_basis(g, metadata, teacher, where) for g in graphs]
    units = [[metadata.layers[layer].units for layer in g.layers] for g in graphs]
    if metadata.record_labels is not None:
        sources.append(_RecordTargets(graphs, bases, units, metadata.record_labels))
    else:
        sources += [_SpectralTargets(g, basis, n) for g, basis, n in zip(graphs, bases, units)]
    return _assemble(name, sources, weight=lambda units: 1.0 / units)


def _assemble(name, sources, weight) -> Objective:
    segments, offset = [], 0
    for source in sources:
        for layer, units in zip(source.layers, source.units):
            segments.append(Segment(layer, offset, units, weight(units)))
            offset += units
    return Objective(name, tuple(segments), sources)


def _graphs_for(name: str, metadata: Metadata, where: str) -> list[SpectralStats]:
    if not metadata.graphs:
        raise UserError(f"{where} has no spectral part, needed by --objective={name}: the "
                        "teacher has no chain of fully connected layers, or the file was made "
                        "without it; run compute_stats again (it always computes it when it can)")
    if name == "spectral_all_layers":
        return [metadata.graphs[spectral.ALL]]
    return [g for graph_id, g in metadata.graphs.items() if graph_id != spectral.ALL]


def _verified_basis(graph: SpectralStats, metadata: Metadata, teacher, where: str) -> np.ndarray:
    """The graph basis recomputed from the teacher, checked against the stored coefficients.

    The class-mean coefficients equal the class-mean signal projected on the kept
    eigenvectors; a basis that does not reproduce them (another teacher, or a numerical
    library that orders/signs eigenvectors differently) would give meaningless targets.
    """
    eigenvalues, basis = spectral.graph_basis(teacher, graph.layers)
    mean_signal = np.concatenate([metadata.layers[layer].mean for layer in graph.layers], axis=1)
    expected = graph.coefficients.mean
    got = np.stack([mean_signal[c].astype(np.float64) @ basis[:, kept]
                    for c, kept in enumerate(graph.kept)])
    scale = np.abs(expected).max() + 1e-12
    if (eigenvalues.shape != graph.eigenvalues.shape
            or np.abs(got - expected).max() > 1e-3 * scale):
        raise UserError(f"the spectral basis recomputed from the teacher does not reproduce the "
                        f"coefficients in {where} (another teacher, or another numerical "
                        "library?): run compute_stats again on this machine")
    return basis
