"""One module per ``--procedure``; each exposes ``run(cfg) -> dict`` (the result)."""
import importlib

from zskd_tf.runtime import devices, run_dir

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
    module = importlib.import_module(_MODULES[cfg.procedure])
    try:
        return module.run(cfg)
    finally:
        run_dir.release_locks()  # in-process callers (the Python API, tests) run many
