"""Per-class Gaussian statistics of a vector, and sampling from them.

See docs/methods/lopes.md, "Metadata" and "Sampling targets".

Moments are streamed in float64: per class the count, the sum and either the full
co-moment matrix (sum of x xᵀ) or, for wide vectors, the per-unit sum of squares. The
covariance is the population one, Σ = E[x xᵀ] − μ μᵀ; the standard deviation is
sqrt(max(E[x²] − μ², 0)) (clamped: the public code could take the root of a tiny negative).

Sampling is N(μ, Σ) exactly: ``μ + Z Lᵀ`` with ``L = chol(Σ + εI)`` and rows ``Z ~ N(0, I)``
(not the public code's ``Z·L`` or ``Z·Σ``). ε is ``JITTER`` times the mean variance, which
makes rank-deficient covariances (e.g. a linear map of fewer inputs than units)
factorisable. If the factorisation still fails for some class, the vector falls back to
the diagonal ``μ + Z ⊙ σ`` for every class, as the paper-era code did.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Vectors wider than this keep only the diagonal (LeNet conv1 has 4,704 units: its full
# covariances would be 4704² floats per class, ~0.9 GB for 10 classes).
MAX_FULL_COVARIANCE_UNITS = 2048
JITTER = 1e-6  # ε relative to the mean variance of the class


class ClassMoments:
    """Streaming per-class moments of (batch, units) vectors."""

    def __init__(self, num_classes: int, units: int, full: bool):
        self.full = full
        self.count = np.zeros(num_classes, np.int64)
        self.sum = np.zeros((num_classes, units))
        shape = (num_classes, units, units) if full else (num_classes, units)
        self.second = np.zeros(shape)  # sum of x xᵀ (full) or of x² (diagonal)

    def add(self, values, labels) -> None:
        values, labels = np.asarray(values), np.asarray(labels)
        for c in np.unique(labels):
            v = values[labels == c].astype(np.float64)
            self.count[c] += len(v)
            self.sum[c] += v.sum(axis=0)
            self.second[c] += v.T @ v if self.full else np.square(v).sum(axis=0)

    def _per_class(self, array):
        return array / np.maximum(self.count, 1).reshape((-1,) + (1,) * (array.ndim - 1))

    def mean(self) -> np.ndarray:
        return self._per_class(self.sum)

    def variance(self) -> np.ndarray:
        second = self._per_class(self.second)
        diag = np.diagonal(second, axis1=1, axis2=2) if self.full else second
        return np.maximum(diag - np.square(self.mean()), 0.0)

    def covariance(self) -> np.ndarray:
        """(K, n, n) population covariances (only when ``full``)."""
        mean = self.mean()
        return self._per_class(self.second) - mean[:, :, None] * mean[:, None, :]

    def gaussian(self) -> GaussianStats:
        """The statistics to store: mean, std and (when possible) Cholesky factors."""
        chol = cholesky_factors(self.covariance()) if self.full else None
        return GaussianStats(self.mean().astype(np.float32),
                             np.sqrt(self.variance()).astype(np.float32), chol)


def cholesky_factors(covariances: np.ndarray) -> np.ndarray | None:
    """Lower-triangular L[c] with L Lᵀ = Σ[c] + εI (float32), or None if any class fails."""
    factors = []
    for cov in covariances:
        cov = (cov + cov.T) / 2
        n = len(cov)
        epsilon = JITTER * max(float(np.trace(cov)) / n, 0.0) + 1e-12
        try:
            factor = np.linalg.cholesky(cov + epsilon * np.eye(n))
        except np.linalg.LinAlgError:
            return None
        if not np.isfinite(factor).all():
            return None
        factors.append(factor)
    return np.stack(factors).astype(np.float32)


@dataclasses.dataclass
class GaussianStats:
    """Per-class Gaussian of one vector: mean and std (K, n); chol (K, n, n) or None (diagonal)."""
    mean: np.ndarray
    std: np.ndarray
    chol: np.ndarray | None

    @property
    def units(self) -> int:
        return self.mean.shape[1]

    def sample(self, label: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` draws (count, n) from class ``label``'s Gaussian, as float32."""
        z = rng.standard_normal((count, self.units))
        mean = self.mean[label].astype(np.float64)
        if self.chol is None:
            return (mean + z * self.std[label]).astype(np.float32)
        return (mean + z @ self.chol[label].astype(np.float64).T).astype(np.float32)
