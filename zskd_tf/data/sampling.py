"""Seeded subsets of a dataset, as sorted indices into it."""
from __future__ import annotations

import numpy as np

from zskd_tf.errors import UserError


def sample_per_class(labels, m: int, seed: int) -> np.ndarray:
    """Exactly ``m`` random examples of every class present in ``labels``: sorted true indices.

    Unlike the replication's loader (docs/methods/zskt.md, "Few-shot subsets"), the indices
    are positions in ``labels``, so the subset really is class-balanced.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UserError(f"labels must be 1-D, got shape {labels.shape}")
    if m < 1:
        raise UserError(f"the number of examples per class must be at least 1, got {m}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if m > len(members):
            raise UserError(f"cannot take {m} examples of class {c}: it has only {len(members)}; "
                            f"ask for at most {len(members)} per class")
        chosen.append(rng.choice(members, m, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def seeded_subset(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``range(n)`` drawn at random; all of them when ``k >= n``."""
    if k < 0:
        raise UserError(f"a subset size cannot be negative, got {k}")
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
