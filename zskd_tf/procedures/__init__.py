"""One module per ``--procedure``; each exposes ``run(cfg) -> dict`` (the result)."""
import importlib
import json
import os

from zskd_tf.runtime import cluster, devices, run_dir

_MODULES = {
    "train": "zskd_tf.procedures.train",
    "evaluate": "zskd_tf.procedures.evaluate",
    "export": "zskd_tf.procedures.export",
    "distill": "zskd_tf.procedures.distill",
    "data_impressions": "zskd_tf.procedures.data_impressions",
    "compute_stats": "zskd_tf.procedures.compute_stats",
    "optimize_dataset": "zskd_tf.procedures.optimize_dataset",
    "zero_shot": "zskd_tf.procedures.zero_shot",
    "transition_curves": "zskd_tf.procedures.transition_curves",
    "pipeline": "zskd_tf.procedures.pipeline",
    "quantize": "zskd_tf.procedures.quantize",
    "merge": "zskd_tf.procedures.merge",
}


def run(cfg) -> dict:
    """Sets up devices (before TensorFlow starts) and runs the procedure ``cfg.procedure``."""
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
        result = importlib.import_module(_MODULES[cfg.procedure]).run(cfg)
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
