"""``--procedure=export``: SavedModel (raw images -> probabilities) and optionally TFLite."""
from __future__ import annotations

from zskd_tf import export, model_io
from zskd_tf.data import datasets
from zskd_tf.errors import UserError
from zskd_tf.procedures.common import finished_result
from zskd_tf.procedures.evaluate import dataset_for
from zskd_tf.runtime.run_dir import RunDir


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    info = model_io.read_info(cfg.model_path)
    raw_shape = None
    if "input_spec" not in info:
        raw_shape = datasets.load_dataset(dataset_for(cfg), cfg.data_dir).image_shape
    classifier = model_io.load_classifier(cfg.model_path, raw_shape)
    if classifier.model is None:
        raise UserError(f"{cfg.model_path} is a SavedModel; export needs the Keras model "
                        "(a run directory or a .keras file)")
    run_dir.claim(cfg)
    result = export.export_classifier(classifier, run_dir.path, cfg.tflite, cfg.seed)
    result["model_path"] = cfg.model_path
    run_dir.write_result(result)
    print("exported " + ", ".join(v for k, v in result.items()
                                 if k in ("saved_model", "tflite")), flush=True)
    return result
