"""``--procedure=export``: SavedModel (raw images -> probabilities) and optionally TFLite."""
from __future__ import annotations

import numpy as np

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
    spec = classifier.spec
    info = {**info, "input_spec": spec.to_dict()}
    saved_model = run_dir.file("saved_model")
    export.export_savedmodel(classifier.model, spec, saved_model, info)
    # Self-check on random raw images: the exports must reproduce the Keras model.
    rng = np.random.default_rng(cfg.seed)
    probe = rng.uniform(0, 255, (8, spec.raw_height, spec.raw_width, spec.channels))
    probe = probe.astype(np.float32)
    expected = classifier.probabilities(probe)
    result = {"saved_model": saved_model, "model_path": cfg.model_path,
              "saved_model_max_abs_diff": _max_diff(
                  model_io.load_classifier(saved_model).probabilities(probe), expected)}
    if cfg.tflite:
        tflite_path = run_dir.file("model.tflite")
        export.export_tflite(saved_model, tflite_path)
        result["tflite"] = tflite_path
        result["tflite_max_abs_diff"] = _max_diff(
            export.tflite_probabilities(tflite_path, probe), expected)
    run_dir.write_result(result)
    print("exported " + ", ".join(v for k, v in result.items()
                                 if k in ("saved_model", "tflite")), flush=True)
    return result


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
