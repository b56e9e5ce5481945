"""What a sharded synthesis run (``--shard=i/N``) records, and how ``merge`` reads it back.

A shard is an ordinary run directory of ``data_impressions`` or ``optimize_dataset`` whose
flags.cfg holds ``--shard=i/N``: it makes the batches whose index is ``i`` modulo ``N`` (each
batch is seeded from ``(--seed, index)`` alone, so a batch is the same whichever process makes
it) and, instead of the final ``.npz``, writes a ``result.json`` that holds the shard's place
and the whole configuration of its command, from which ``merge`` rebuilds the unsharded run.
"""
from __future__ import annotations

import types

from zskd_tf.runtime.batch_store import BatchStore, parse_shard
from zskd_tf.runtime.run_dir import RunDir

SHARD_KEY = "shard"  # result.json of a shard: {"index", "count", "batches", "config", "present"}
NOT_RECORDED = ("run_dir", "shard", "overwrite")  # what differs between a run and its shards


def store_of(cfg, run_dir: RunDir, num_batches: int) -> BatchStore:
    """The batch store of a run: restricted to its shard under ``--shard``; a merged run
    (``cfg.batch_sources``, set by ``merge``) first adopts the shards' batches.

    Args:
        cfg: the run's config.
        run_dir: its run directory, already claimed.
        num_batches: batches of the whole (unsharded) run.

    Returns:
        The store.
    """
    store = BatchStore(run_dir.file("batches"), num_batches,
                       parse_shard(getattr(cfg, "shard", None)))
    sources = getattr(cfg, "batch_sources", None)
    if sources:
        store.adopt(sources)
    return store


def is_shard(cfg) -> bool:
    """Whether ``cfg`` makes one shard of a run (``--shard`` given)."""
    return getattr(cfg, "shard", None) is not None


def write_shard_result(cfg, run_dir: RunDir, store: BatchStore, **extra) -> dict:
    """Writes the ``result.json`` of a finished shard and returns it.

    Args:
        cfg: the shard's config (every flag of its command).
        run_dir: the shard's run directory.
        store: its batch store, every batch of the shard finished.
        **extra: procedure-specific entries.

    Returns:
        The result.
    """
    index, count = store.shard
    names = cfg.flag_schema.names
    record = {"index": index, "count": count, "batches": store.mine(),
              "config": {n: getattr(cfg, n, None) for n in names if n not in NOT_RECORDED},
              "present": sorted(set(cfg.present) & set(names) - set(NOT_RECORDED))}
    result = {"procedure": cfg.procedure, "num_batches": store.num_batches,
              **extra, SHARD_KEY: record}
    run_dir.write_result(result)
    print(f"shard {index}/{count} finished: {len(record['batches'])} of {store.num_batches} "
          f"batches in {run_dir.path}; merge the {count} shards with --procedure=merge",
          flush=True)
    return result


def unsharded_config(record: dict, cfg) -> types.SimpleNamespace:
    """The config of the unsharded command a shard belongs to, writing to ``cfg.run_dir``.

    Args:
        record: the shard's ``result.json[SHARD_KEY]``.
        cfg: the ``merge`` command's config: its run directory, ``--overwrite`` and
            operational flags (devices, verbosity) replace the shard's.

    Returns:
        A config for the shard's procedure, without ``--shard``.
    """
    schema = cfg.flag_schema
    values = {n: record["config"].get(n, schema.defaults[n]) for n in schema.names}
    values.update({n: getattr(cfg, n) for n in schema.operational if hasattr(cfg, n)})
    values.update(run_dir=cfg.run_dir, overwrite=cfg.overwrite, shard=None, inputs=None)
    out = types.SimpleNamespace(**values)
    out.present = set(record["present"])
    out.flag_schema = schema
    return out
