"""SHA-256 digests of what a run produced and of what it read, to notice later changes.

``result.json`` records the digests of the run's products when it is written (the run is then
finished) and of its input paths (``--teacher``, ``--stats``, ...). Reading a finished run back,
a product whose digest differs means it was damaged: the run is finished again. An input whose
digest differs means the finished run is stale (e.g. a teacher retrained in place).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

# Written while a run works and never read as a product: not part of the digests.
WORKING_DIRS = frozenset({"checkpoints", "tensorboard", "batches"})
WORKING_FILES = frozenset({"metrics.jsonl"})


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests(directory: str, skip: frozenset = frozenset(),
            other_run: Callable[[str], bool] = lambda path: False) -> dict[str, str]:
    """{path relative to ``directory``: SHA-256} of the products under ``directory``.

    Args:
      directory: a run directory.
      skip: names left out at the top level (e.g. result.json, flags.cfg).
      other_run: whether a subdirectory is a run of its own (left out: it has its own record).

    Returns:
      The digests, without hidden entries (markers, temporaries), ``WORKING_DIRS`` and
      ``WORKING_FILES``.
    """
    out = {}
    for root, dirs, files in os.walk(directory):
        top = root == directory
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in WORKING_DIRS
                         and not other_run(os.path.join(root, d)))
        for name in sorted(files):
            if name.startswith(".") or name in WORKING_FILES or (top and name in skip):
                continue
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = file_sha256(path)
    return out


def changed(directory: str, recorded: dict[str, str]) -> list[str]:
    """The recorded products that are now missing or differ."""
    out = []
    for name, digest in sorted(recorded.items()):
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or file_sha256(path) != digest:
            out.append(name)
    return out


def path_sha256(path: str, skip: frozenset = frozenset(),
                other_run: Callable[[str], bool] = lambda p: False) -> str:
    """One digest of a file, or of a directory's products (see :func:`digests`)."""
    if os.path.isfile(path):
        return file_sha256(path)
    listing = json.dumps(digests(path, skip, other_run), sort_keys=True)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()
