"""The spectral side of Lopes et al.: a graph over the fully connected layers and its basis.

The public code never implemented it (docs/methods/lopes.md, "Spectral objectives"); this is
our concrete design.

Graph. One node per unit of the recorded fully connected layers at the top of the network
(the paper: "treat the network's fully connected layers as a graph"): the chain of ``Dense``
taps that feed each other through element-wise layers only (ReLU, dropout), ending with the
logits. Hinton nets: fc1, fc2, logits (2,410 nodes); LeNet: fc1, fc2, logits (214 nodes; the
conv layers keep the plain statistics loss). Input pixels are not nodes. The edge between
unit i of layer a and unit j of the next layer b weighs ``W_b[i, j]``, b's kernel, in both
directions (the directed graph is nilpotent: same section).

Basis. The eigenvectors of the signed Laplacian ``L = D − A`` with ``D = diag(Σ_j |A_ij|)``
(PSD; frequency-ordered). The adjacency itself is the spec's first suggestion, but its
eigenvalue 0 is hugely degenerate (1,190 of the 1,210 nodes of the fc2-logits pair of a
Hinton net), so its eigenbasis is arbitrary there and could not be recomputed from the
weights to match stored coefficients; the Laplacian's eigenvalues are generically distinct.
Eigenvectors are sorted by eigenvalue and their signs fixed (largest-magnitude entry
positive) so that anybody holding the teacher recomputes the same basis.

Graphs of an objective. ``all``: one graph over the whole chain (spectral_all_layers);
``pair<i>``: one graph per pair of adjacent layers of the chain (spectral_layer_pairs).
"""
from __future__ import annotations

import keras
import numpy as np

from zskd_tf.lopes import recording
from zskd_tf.models import taps as taps_lib

# Layers a signal may cross between two Dense layers and still count as "connected".
_ELEMENTWISE = (keras.layers.ReLU, keras.layers.Dropout, keras.layers.Activation,
                keras.layers.Identity)
ALL = "all"


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    return model.get_layer(name if name == recording.LOGITS else taps_lib.tap(name))


def _dense_source(layer: keras.layers.Layer):
    """The Dense layer whose output reaches ``layer`` through element-wise layers, or None."""
    tensor = layer.input
    while True:
        source = tensor._keras_history.operation
        if isinstance(source, keras.layers.Dense):
            return source
        flat_identity = (isinstance(source, keras.layers.Flatten)
                         and len(source.input.shape) == 2)
        if not (isinstance(source, _ELEMENTWISE) or flat_identity):
            return None
        tensor = source.input


def dense_chain(model: keras.Model) -> list[str]:
    """Recorded layers of the top fully connected chain, bottom to top (may be just logits)."""
    by_layer = {_layer(model, name).name: name for name in recording.recorded_layers(model)}
    chain = [recording.LOGITS]
    layer = _layer(model, recording.LOGITS)
    while isinstance(layer, keras.layers.Dense):
        source = _dense_source(layer)
        if source is None or source.name not in by_layer:
            break
        chain.insert(0, by_layer[source.name])
        layer = source
    return chain


def graph_layers(chain: list[str]) -> dict[str, list[str]]:
    """Graph id -> its layers: ``all`` and ``pair0``, ``pair1``, ... ({} for a chain of one)."""
    if len(chain) < 2:
        return {}
    graphs = {ALL: list(chain)}
    graphs.update({f"pair{i}": [a, b] for i, (a, b) in enumerate(zip(chain, chain[1:]))})
    return graphs


def kernels(model: keras.Model, layers: list[str]) -> list[np.ndarray]:
    """The weight matrices (n_a, n_b) linking consecutive ``layers`` of the chain."""
    return [np.asarray(_layer(model, b).kernel.numpy(), np.float64)
            for b in layers[1:]]


def signed_laplacian(weights: list[np.ndarray]) -> np.ndarray:
    """``D − A`` of the undirected layered graph whose consecutive layers ``weights`` link."""
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    offsets = np.cumsum([0] + sizes)
    adjacency = np.zeros((offsets[-1], offsets[-1]))
    for i, w in enumerate(weights):
        rows, cols = slice(offsets[i], offsets[i + 1]), slice(offsets[i + 1], offsets[i + 2])
        adjacency[rows, cols] = w
        adjacency[cols, rows] = w.T
    return np.diag(np.abs(adjacency).sum(axis=1)) - adjacency


def fourier_basis(laplacian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues ascending, orthonormal eigenvectors as columns with canonical signs)."""
    eigenvalues, vectors = np.linalg.eigh(laplacian)
    largest = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[largest, np.arange(vectors.shape[1])])
    return eigenvalues, vectors * np.where(signs == 0, 1.0, signs)


def graph_basis(model: keras.Model, layers: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The Fourier basis of the graph over ``layers`` of ``model``."""
    return fourier_basis(signed_laplacian(kernels(model, layers)))


def signal(activations: dict, layers: list[str]) -> np.ndarray:
    """The graph signal: the layers' flattened activations side by side (batch, nodes)."""
    return np.concatenate([np.asarray(activations[name]) for name in layers], axis=1)


def kept_count(nodes: int, keep: float) -> int:
    """How many of a graph's ``nodes`` coefficients ``--spectral_keep=keep`` keeps: ceil(keep·N)."""
    return min(nodes, max(1, int(np.ceil(keep * nodes - 1e-9))))


def kept_indices(mean_abs_coefficients: np.ndarray, keep: float) -> np.ndarray:
    """Per class, the ``ceil(keep·N)`` coefficients largest in mean |ŝ|, sorted: (K, k)."""
    k = kept_count(mean_abs_coefficients.shape[1], keep)
    order = np.argsort(-mean_abs_coefficients, axis=1, kind="stable")[:, :k]
    return np.sort(order, axis=1).astype(np.int32)


def largest_coefficients(coefficients: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row (one example), its ``ceil(keep·N)`` coefficients largest in |ŝ|: the signal's own
    compression. Returns (indices int32, values float32), both (rows, k), indices sorted."""
    k = kept_count(coefficients.shape[1], keep)
    order = np.sort(np.argpartition(-np.abs(coefficients), k - 1, axis=1)[:, :k], axis=1)
    return order.astype(np.int32), np.take_along_axis(coefficients, order, 1).astype(np.float32)


def rebuild(indices: np.ndarray, values: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Signals (rows, N) from kept coefficients: Σ_k values[:, k] · basis[:, indices[:, k]]."""
    coefficients = np.zeros((len(indices), basis.shape[1]), np.float64)
    np.put_along_axis(coefficients, indices, values, axis=1)
    return coefficients @ basis.T
