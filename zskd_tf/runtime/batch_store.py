"""Resumable batch-by-batch products (data impressions, reconstructions).

Each finished batch is one ``.npz`` under ``<run_dir>/batches/``, written atomically. A run
that is killed continues with the first unfinished batch and never rewrites a finished one;
``assemble`` concatenates the batches once all exist. A finished batch that can no longer be
read whole (a damaged file) is deleted with a warning and made again.

Sharding (``--shard=i/N``): a store restricted to shard ``i`` of ``N`` makes only the batches
whose index is ``i`` modulo ``N``; ``adopt`` copies finished batches made elsewhere (the other
shards' stores) so that ``assemble`` sees them all.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from zskd_tf.errors import UserError
from zskd_tf.runtime import atomic, guarded

WHOLE = (0, 1)  # (index, count) of an unsharded run: shard 0 of 1


def parse_shard(text: str | None) -> tuple[int, int]:
    """Reads ``--shard=i/N``.

    Args:
        text: ``"i/N"`` with 0 <= i < N, or None (the whole run).

    Returns:
        (i, N); (0, 1) for None.

    Raises:
        UserError: the text is not of that form.
    """
    if text is None:
        return WHOLE
    index, slash, count = text.partition("/")
    if not (slash and index.isdigit() and count.isdigit()):
        raise UserError(f"--shard={text}: give i/N, shard i (counted from 0) of N, e.g. 0/4")
    index, count = int(index), int(count)
    if not 0 <= index < count:
        raise UserError(f"--shard={text}: the shard index must be in 0..N-1 = 0..{count - 1}")
    return index, count


class BatchStore:
    def __init__(self, directory: str, num_batches: int, shard: tuple[int, int] = WHOLE):
        self.directory = directory
        self.num_batches = num_batches
        self.shard = shard

    def mine(self) -> list[int]:
        """Indices of the batches this store makes: those of its shard (all when unsharded)."""
        index, count = self.shard
        return list(range(index, self.num_batches, count))

    def path(self, index: int) -> str:
        return os.path.join(self.directory, f"batch_{index:06d}.npz")

    def done(self, index: int) -> bool:
        return os.path.exists(self.path(index))

    def pending(self) -> list[int]:
        """Indices of the batches still to make; damaged finished batches are discarded."""
        out = []
        for i in self.mine():
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

    def adopt(self, directories: list[str]) -> None:
        """Copies each batch missing here from the first of ``directories`` that has it.

        Args:
            directories: other stores' directories (the shards of this run).
        """
        for i in range(self.num_batches):
            if self.done(i):
                continue
            for directory in directories:
                source = os.path.join(directory, os.path.basename(self.path(i)))
                if os.path.exists(source):
                    with atomic.atomic_path(self.path(i), suffix=".npz") as tmp:
                        shutil.copyfile(source, tmp)
                    break

    def assemble(self) -> dict[str, np.ndarray]:
        """All batches concatenated in index order (every batch must be finished)."""
        parts: dict[str, list] = {}
        for i in range(self.num_batches):
            for key, value in guarded.read_npz(self.path(i)).items():
                parts.setdefault(key, []).append(value)
        return {key: np.concatenate(values) for key, values in parts.items()}
