"""One module per ``--procedure``; each exposes ``run(cfg) -> dict`` (the result).

The procedures, their modules and their flags are listed in :mod:`zskd_tf.procedures.registry`.
"""
import importlib
import json
import os

from zskd_tf.procedures import registry
from zskd_tf.runtime import cluster, run_dir


def run(cfg) -> dict:
    """Sets up devices (before TensorFlow starts) and runs the procedure ``cfg.procedure``."""
    from zskd_tf.runtime import devices  # loads TensorFlow: not when the flags are defined
    devices.configure(cfg.logical_cpus, cfg.deterministic, cfg.seed)
    member = None
    if getattr(cfg, "strategy", None) == "multi_worker":
        member = cluster.join(cfg.procedure, cfg.run_dir)
    try:
        if member is not None and not member.is_chief:
            finished = _chief_result(member)
            if finished is not None:
                return finished
            cfg = _with_run_dir(cfg, member.scratch_dir)
        result = importlib.import_module(registry.get(cfg.procedure).module).run(cfg)
        if member is not None and not member.is_chief:
            print(f"{member.name} done; the products are the chief's, in {member.run_dir}",
                  flush=True)
        return result
    finally:
        run_dir.release_locks()  # in-process callers (the Python API, tests) run many
        cluster.leave()


def _with_run_dir(cfg, path: str):
    """A copy of ``cfg`` writing into ``path`` (a non-chief worker's scratch directory)."""
    return type(cfg)(**{**vars(cfg), "run_dir": path})


def _chief_result(member: cluster.Member) -> dict | None:
    """The result of the chief's finished run, if any: a worker then has nothing to do (the
    chief returns at once, and a worker training alone would wait for it forever)."""
    path = os.path.join(member.run_dir, run_dir.RESULT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    print(f"run already finished ({member.run_dir}); {member.name} has nothing to do",
          flush=True)
    return result
