"""The class-similarity (concentration) matrix of ZSKD (docs/methods/zskd.md, "Concentration
matrix").

Each class's column of the final Dense kernel (Keras ``Dense.kernel`` is (features, K)) is a
class template. ``C = cosine(w_i, w_j)``; each ROW is min-max normalised to [0, 1] (the row
maximum is the diagonal 1, the row minimum becomes 0), and ``EPSILON`` (the authors' 1e-4) is
added so that every Dirichlet concentration is positive. Row k is alpha^k, the concentration
of class k (scaled by beta when sampling, see :mod:`zskd_tf.zskd.targets`).

Not copied from the public ports: da2so's column-wise normalisation (a broadcasting bug) and
the global min-max of the official ``dirichmat.py`` / Sharpiless (same section).
"""
from __future__ import annotations

import numpy as np

from zskd_tf.errors import UserError

# The official code's epsilon (docs/methods/zskd.md, "Concentration matrix"): keeps alpha > 0
# at the row minimum.
EPSILON = 1e-4


def class_similarity(kernel) -> np.ndarray:
    """Cosine similarity of the kernel's columns: (features, K) -> (K, K), float64."""
    w = np.asarray(kernel, np.float64)
    if w.ndim != 2 or w.shape[1] < 2:
        raise UserError(f"the final Dense kernel has shape {w.shape}; expected (features, K) "
                        "with K >= 2 classes")
    if not np.isfinite(w).all():
        raise UserError("the teacher's final Dense kernel contains NaN or Inf")
    norms = np.linalg.norm(w, axis=0)
    dead = np.flatnonzero(norms == 0)
    if dead.size:
        raise UserError(f"the final Dense kernel has all-zero weights for class(es) "
                        f"{dead.tolist()}: their similarity to other classes is undefined")
    unit = w / norms
    return unit.T @ unit


def concentration_matrix(kernel, epsilon: float = EPSILON) -> np.ndarray:
    """Row-wise min-max normalised class similarity plus ``epsilon`` (K, K), float64."""
    similarity = class_similarity(kernel)
    low = similarity.min(axis=1, keepdims=True)
    high = similarity.max(axis=1, keepdims=True)
    if np.any(high - low <= 0):
        raise UserError("the final Dense kernel gives some class the same similarity to every "
                        "class (identical class columns?): no concentration can be derived")
    return (similarity - low) / (high - low) + epsilon
