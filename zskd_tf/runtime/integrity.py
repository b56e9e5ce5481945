"""SHA-256 digests of what a run produced and of what it read, to notice later changes.

``result.json`` records the digests of the run's products when it is written (the run is then
finished) and of its input paths (``--teacher``, ``--stats``, ...). Reading a finished run back,
a product whose digest differs means it was damaged: the run is finished again. An input whose
digest differs means the finished run is stale (e.g. a teacher retrained in place).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from typing import Callable

import numpy as np

# Written while a run works and never read as a product: not part of the digests.
WORKING_DIRS = frozenset({"checkpoints", "tensorboard", "batches"})
WORKING_FILES = frozenset({"metrics.jsonl"})
# A SavedModel is rewritten with other bytes at every export of the same weights (its graph,
# and its variables in another order); as an input, a run directory is known by model.keras.
REBUILT_ON_EXPORT = frozenset({"saved_model.pb", "fingerprint.pb", "variables.index"})
REBUILT_PREFIX = "variables.data-"  # the variables' shards: variables.data-00000-of-00001


def rebuilt_on_export(name: str) -> bool:
    """Whether a file is one of a SavedModel's, whose bytes change at every export.

    Args:
        name: a file's path or name.

    Returns:
        True for ``REBUILT_ON_EXPORT`` and the variables' data shards.
    """
    base = os.path.basename(name)
    return base in REBUILT_ON_EXPORT or base.startswith(REBUILT_PREFIX)


def _update(digest, stream) -> None:
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)


def _bytes_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        _update(digest, f)
    return digest.hexdigest()


def _archive_sha256(path: str) -> str:
    """Digest of a zip archive's members, streamed (so zip CRCs are checked): without a .keras
    file's ``metadata.json`` (its save date), and a synthetic set's ``meta`` without its
    creation time; every other member as stored."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            digest.update(f"\0{name}\0".encode("utf-8"))
            with archive.open(name) as member:
                if name == "meta.npy":
                    meta = json.loads(str(np.load(io.BytesIO(member.read()), allow_pickle=False)))
                    if isinstance(meta, dict):
                        meta.pop("created", None)
                    digest.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
                elif name == "metadata.json":
                    member.read()  # checked, not digested
                elif name == "config.json":  # a .keras model's; Python object ids renumbered
                    digest.update(_canonical_config(member.read()))
                else:
                    _update(digest, member)
    return digest.hexdigest()


def _canonical_config(data: bytes) -> bytes:
    """A Keras config with its ``shared_object_id`` values (Python ``id()``s, which differ
    from one process to the next) replaced by their order of first appearance."""
    ids = {}

    def renumber(node):
        if isinstance(node, dict):
            return {k: (ids.setdefault(v, len(ids)) if k == "shared_object_id" else renumber(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [renumber(v) for v in node]
        return node

    return json.dumps(renumber(json.loads(data)), sort_keys=True).encode("utf-8")


def file_sha256(path: str) -> str:
    """SHA-256 of a file's content. For ``.keras`` and ``.npz`` archives: of their members
    without the save time (see :func:`_archive_sha256`), so that saving the same weights or
    arrays again gives the same digest; a damaged archive gets its bytes' digest, which
    differs from any recorded one."""
    if path.endswith((".keras", ".npz")):
        try:
            return _archive_sha256(path)
        except Exception:  # noqa: BLE001 - a damaged archive: zipfile, zlib, numpy, json errors
            pass
    return _bytes_sha256(path)


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
    """One digest of a file, or of a directory's products (see :func:`digests`; without the
    files :func:`rebuilt_on_export`), e.g. of a command's input."""
    if os.path.isfile(path):
        return file_sha256(path)
    listing = {name: digest for name, digest in digests(path, skip, other_run).items()
               if not rebuilt_on_export(name)}
    listing = json.dumps(listing, sort_keys=True)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()
