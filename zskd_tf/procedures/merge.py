"""``--procedure=merge``: joins the N shards of a sharded synthesis run into the run one
process would have made.

``--inputs`` names the shards' run directories (``--shard=0/N`` ... ``--shard=N-1/N`` of one
``data_impressions`` or ``optimize_dataset`` command; glob patterns are expanded). They must
all be finished, come from the same command (every flag alike but ``--shard``, ``--run_dir``
and the operational flags, and the same input files), and hold each index once. ``--run_dir``
then becomes that command's unsharded run: its batches are copied from the shards and it is
finished as a single process finishes, so its ``impressions.npz`` / ``<objective>.npz`` holds
the same arrays, bit for bit. Running the unsharded command on it afterwards reports it
finished. Every check is made before anything is written.
"""
from __future__ import annotations

import glob
import importlib
import os

from zskd_tf.errors import UserError
from zskd_tf.procedures import registry, sharding
from zskd_tf.runtime.run_dir import INTEGRITY_KEY, RunDir, flag_lines

PROCEDURE_MODULES = {name: registry.get(name).module for name in registry.SHARDED}


def run(cfg) -> dict:
    shards = _read_shards(_expand(cfg.inputs))
    _check_same_command(shards, cfg)
    _check_complete(shards)
    out = os.path.abspath(cfg.run_dir)
    if out in shards:
        raise UserError(f"--run_dir={cfg.run_dir} is one of the --inputs: merge into a new "
                        "directory")
    record = next(iter(shards.values()))[sharding.SHARD_KEY]
    merged = sharding.unsharded_config(record, cfg)
    merged.batch_sources = [os.path.join(path, "batches") for path in shards]
    procedure = next(iter(shards.values()))["procedure"]
    print(f"merging {len(shards)} shards of {procedure} into {out}", flush=True)
    return importlib.import_module(PROCEDURE_MODULES[procedure]).run(merged)


def _expand(inputs: list[str]) -> list[str]:
    """The directories ``--inputs`` names, glob patterns expanded, in the order given."""
    paths = []
    for entry in inputs:
        if glob.has_magic(entry):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise UserError(f"--inputs: {entry} matches no directory")
            paths += matches
        else:
            paths.append(entry)
    return [os.path.abspath(p) for p in paths]


def _read_shards(paths: list[str]) -> dict[str, dict]:
    """{directory: its result.json} of every shard; refuses what is not a finished shard."""
    shards = {}
    for path in paths:
        if path in shards:
            raise UserError(f"--inputs names {path} twice")
        if not os.path.isdir(path):
            raise UserError(f"--inputs: {path} is not a directory")
        result = RunDir(path).result()
        if result is None:
            raise UserError(f"--inputs: {path} is not a finished run (no result.json): finish "
                            "that shard first (run its command again: it resumes)")
        if sharding.SHARD_KEY not in result or result.get("procedure") not in PROCEDURE_MODULES:
            raise UserError(f"--inputs: {path} is not a shard of data_impressions or "
                            "optimize_dataset (made without --shard)")
        shards[path] = result
    return shards


def _check_same_command(shards: dict[str, dict], cfg) -> None:
    """Refuses shards of different commands or made from different input files."""
    first_path, first = next(iter(shards.items()))

    def identity(result):
        cmd = sharding.unsharded_config(result[sharding.SHARD_KEY], cfg)
        lines = {n: v for n, v in flag_lines(cmd).items() if n not in cfg.flag_schema.operational}
        return lines, (result.get(INTEGRITY_KEY) or {}).get("inputs")

    first_lines, first_inputs = identity(first)
    for path, result in shards.items():
        lines, inputs = identity(result)
        differ = sorted(n for n in set(lines) | set(first_lines)
                        if lines.get(n) != first_lines.get(n))
        if differ:
            shown = ", ".join(f"{lines.get(n) or 'no --' + n} (in {first_path}: "
                              f"{first_lines.get(n) or 'unset'})" for n in differ[:3])
            raise UserError(f"--inputs: {path} is a shard of another command: {shown}")
        if inputs != first_inputs:
            raise UserError(f"--inputs: {path} and {first_path} read different input files "
                            "(teacher or statistics): they are shards of different runs")


def _check_complete(shards: dict[str, dict]) -> None:
    """Refuses a count that differs, an index claimed twice or a missing index."""
    owner: dict[int, str] = {}
    counts = {r[sharding.SHARD_KEY]["count"] for r in shards.values()}
    if len(counts) > 1:
        raise UserError(f"--inputs: the shards split the run in different numbers of parts "
                        f"({', '.join(map(str, sorted(counts)))})")
    count = counts.pop()
    for path, result in shards.items():
        index = result[sharding.SHARD_KEY]["index"]
        if index in owner:
            raise UserError(f"--inputs: {owner[index]} and {path} are both shard "
                            f"{index}/{count}")
        owner[index] = path
    missing = [f"{i}/{count}" for i in range(count) if i not in owner]
    if missing:
        raise UserError(f"--inputs: shard(s) {', '.join(missing)} missing (give all {count})")
