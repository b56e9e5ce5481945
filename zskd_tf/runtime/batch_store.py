"""Resumable batch-by-batch products (data impressions, reconstructions).

Each finished batch is one ``.npz`` under ``<run_dir>/batches/``, written atomically. A run
that is killed continues with the first unfinished batch and never rewrites a finished one;
``assemble`` concatenates the batches once all exist. A finished batch that can no longer be
read whole (a damaged file) is deleted with a warning and made again.
"""
from __future__ import annotations

import os

import numpy as np

from zskd_tf.runtime import atomic, guarded


class BatchStore:
    def __init__(self, directory: str, num_batches: int):
        self.directory = directory
        self.num_batches = num_batches

    def path(self, index: int) -> str:
        return os.path.join(self.directory, f"batch_{index:06d}.npz")

    def done(self, index: int) -> bool:
        return os.path.exists(self.path(index))

    def pending(self) -> list[int]:
        """Indices of the batches still to make; damaged finished batches are discarded."""
        out = []
        for i in range(self.num_batches):
            if self.done(i):
                try:
                    guarded.read_npz(self.path(i))
                    continue
                except guarded.DamagedFile as e:
                    guarded.discard(e.path, e.reason, "the batch is made again")
            out.append(i)
        return out

    def save(self, index: int, **arrays) -> None:
        if self.done(index):
            raise RuntimeError(f"batch {index} is finished and must not be rewritten")
        with atomic.atomic_path(self.path(index), suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())

    def assemble(self) -> dict[str, np.ndarray]:
        """All batches concatenated in index order (every batch must be finished)."""
        parts: dict[str, list] = {}
        for i in range(self.num_batches):
            for key, value in guarded.read_npz(self.path(i)).items():
                parts.setdefault(key, []).append(value)
        return {key: np.concatenate(values) for key, values in parts.items()}
