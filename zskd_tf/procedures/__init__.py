"""One module per ``--procedure``; each exposes ``run(cfg) -> dict`` (the result).

The procedures, their modules and their flags are listed in :mod:`zskd_tf.procedures.registry`.
"""
import importlib
import os

from zskd_tf.procedures import registry
from zskd_tf.runtime import cluster, run_dir


def run(cfg) -> dict:
    """Sets up devices (before TensorFlow starts) and runs the procedure ``cfg.procedure``."""
    from zskd_tf.runtime import devices  # loads TensorFlow: not when the flags are defined
    devices.configure(cfg.logical_cpus, cfg.deterministic, cfg.seed)
    member = None
    if getattr(cfg, "strategy", None) == "multi_worker":
        member = cluster.join(cfg.procedure, cfg.run_dir,
                              getattr(cfg, "cluster_wait_secs", cluster.DEFAULT_WAIT_SECS))
    try:
        if member is None:
            return importlib.import_module(registry.get(cfg.procedure).module).run(cfg)
        return _run_in_cluster(cfg, member)
    finally:
        run_dir.release_locks()  # in-process callers (the Python API, tests) run many
        cluster.leave()


def _run_in_cluster(cfg, member: cluster.Member) -> dict:
    """Runs the procedure on one process of a cluster; a lost peer becomes a UserError."""
    try:
        if _chief_finished(cfg, member):
            if not member.is_chief:
                print(f"run already finished ({member.run_dir}); {member.name} has nothing "
                      "to do", flush=True)
                return cluster.chiefs_record(os.path.join(member.run_dir, run_dir.RESULT_FILE))
        elif not member.is_chief:
            cfg = _with_run_dir(cfg, member.scratch_dir)
        result = importlib.import_module(registry.get(cfg.procedure).module).run(cfg)
    except Exception as e:  # noqa: BLE001 - only TensorFlow's cluster errors are translated
        failure = cluster.peer_failure(e)
        if failure is None:
            raise
        raise failure from None
    if not member.is_chief:
        print(f"{member.name} done; the products are the chief's, in {member.run_dir}",
              flush=True)
    return result


def _with_run_dir(cfg, path: str):
    """A copy of ``cfg`` writing into ``path`` (a non-chief worker's scratch directory)."""
    return type(cfg)(**{**vars(cfg), "run_dir": path})


def _chief_finished(cfg, member: cluster.Member) -> bool:
    """Whether the chief's run directory holds this run, finished; every process gets the
    chief's answer (a worker that decided alone, e.g. from a damaged result.json, could wait
    for a chief that is done, or leave a chief that needs it).

    The chief checks the directory as the procedure will (a wrong directory is its
    ``error:``, and the workers report the chief stopped)."""
    finished = False
    if member.is_chief and os.path.exists(os.path.join(cfg.run_dir, run_dir.RESULT_FILE)):
        directory = run_dir.RunDir(cfg.run_dir)
        finished = directory.check(cfg) and directory.result() is not None
    return cluster.chief_decides(finished)
