"""Which Dirichlet target each data impression gets, batch by batch (docs/methods/zskd.md,
"Dirichlet targets").

Impressions are split equally among the classes and, within a class, among the betas
(default 1.0 and 0.1: half of all impressions each). Impression ``j`` belongs to group
``j // per_group``; groups run class-major, beta-minor, as in sseung0703's loop (class k, then
each beta). Its target is a draw from ``Dir(beta * alpha^k)``, alpha^k being row k of the
concentration matrix: beta scales alpha and nothing re-normalises it afterwards (the official
code's re-normalisation cancels beta: docs/methods/zskd.md, "Dirichlet targets").

Everything a batch needs is a function of ``(seed, batch index)`` only, so a resumed run makes
the same batches as an uninterrupted one. Sampling is float64 numpy; a draw containing NaN
(all gamma variates underflowing for tiny alphas) is redrawn.

Note (same section): the argmax of a target drawn for class k is k only 40-65 % of the time,
so k is not a label of the impression.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from zskd_tf import constants, typed_config
from zskd_tf.errors import UserError

_TARGET_STREAM, _IMAGE_STREAM = 0, 1
_MAX_REDRAWS = 100


def parse_betas(values) -> tuple[float, ...]:
    """``--betas`` (a list of strings) as positive floats; UserError naming the bad entry."""
    betas = typed_config.parse_numbers("betas", values, "positive numbers like 1.0,0.1")
    for value, beta in zip(values or (), betas):
        if not (math.isfinite(beta) and beta > 0):
            raise UserError(f"--betas must be positive numbers like 1.0,0.1; got {value}")
    if not betas:
        raise UserError("--betas needs at least one Dirichlet scale, e.g. --betas=1.0,0.1")
    return tuple(betas)


def check_seed(seed: int) -> None:
    if seed < 0:
        raise UserError(f"--seed must be >= 0 to make data impressions, got {seed}")


def batch_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one batch's targets (stream 0) or initial images (stream 1)."""
    check_seed(seed)
    return np.random.default_rng([seed, index, stream])


def step_seed(seed: int, index: int) -> int:
    """The seed of batch ``index``'s random synthesis steps (``--impression_jitter``,
    ``--impression_flip``): like :func:`batch_rng`, a function of ``(seed, index)`` only, so a
    resumed run repeats it."""
    check_seed(seed)
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


INITS = constants.IMPRESSION_INITS


def initial_images(seed: int, index: int, shape, low, high, init: str = "uniform") -> np.ndarray:
    """Batch ``index``'s starting images, float32, per channel of the range [low, high].

    ``uniform``: U[low, high]; for a teacher fed x/255 this is U[0, 1], the official
    initialisation (docs/methods/zskd.md, "Synthesising the impressions"). ``normal``:
    sseung0703's N(0, 1) around ``low`` scaled by the range's width, i.e. N(0, 1) for [0, 1],
    clipped to the range: about half the pixels start at ``low``, as dark as a real MNIST
    background.
    """
    rng = batch_rng(seed, index, _IMAGE_STREAM)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}")
    u = rng.random(tuple(shape)) if init == "uniform" else rng.standard_normal(tuple(shape))
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return np.clip(low + u * (high - low), low, high).astype(np.float32)


def sample_dirichlet(rng: np.random.Generator, alpha, n: int) -> np.ndarray:
    """``n`` float64 draws from Dir(alpha); rows containing NaN are redrawn."""
    draws = rng.dirichlet(np.asarray(alpha, np.float64), size=n)
    for _ in range(_MAX_REDRAWS):
        bad = ~np.isfinite(draws).all(axis=1)
        if not bad.any():
            return draws
        draws[bad] = rng.dirichlet(alpha, size=int(bad.sum()))
    raise RuntimeError(f"Dirichlet draws keep containing NaN for alpha={alpha}")


@dataclasses.dataclass(frozen=True)
class ImpressionPlan:
    """``num_samples`` impressions, balanced over classes x betas, in batches of ``batch_size``."""
    num_samples: int
    num_classes: int
    betas: tuple[float, ...]
    batch_size: int

    def __post_init__(self):
        groups = self.num_classes * len(self.betas)
        if self.num_samples % groups:
            example = groups * max(1, self.num_samples // groups)
            raise UserError(
                f"--num_samples={self.num_samples} must be a multiple of {self.num_classes} "
                f"classes x {len(self.betas)} betas = {groups}, so that every class and beta "
                f"gets the same number of impressions (e.g. {example})")
        if self.num_samples % self.batch_size:
            raise UserError(f"--synthesis_batch_size={self.batch_size} must divide "
                            f"--num_samples={self.num_samples} (every batch has the same size)")

    @property
    def per_group(self) -> int:
        """Impressions per (class, beta)."""
        return self.num_samples // (self.num_classes * len(self.betas))

    @property
    def num_batches(self) -> int:
        return self.num_samples // self.batch_size

    def groups(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(class, beta index) of each impression of batch ``index``."""
        rows = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        return np.divmod(rows // self.per_group, len(self.betas))

    def targets(self, index: int, concentration: np.ndarray, seed: int) -> np.ndarray:
        """Batch ``index``'s Dirichlet targets (batch_size, K), float64."""
        classes, beta_index = self.groups(index)
        rng = batch_rng(seed, index, _TARGET_STREAM)
        out = np.empty((self.batch_size, self.num_classes))
        for k, b in dict.fromkeys(zip(classes.tolist(), beta_index.tolist())):
            rows = (classes == k) & (beta_index == b)
            out[rows] = sample_dirichlet(rng, self.betas[b] * concentration[k], int(rows.sum()))
        return out
