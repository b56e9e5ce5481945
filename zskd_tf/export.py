"""Deployable exports of a classifier: SavedModel (raw images -> probabilities) and TFLite."""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from zskd_tf.data import preprocess as pp
from zskd_tf.runtime import atomic

EXPORT_INFO_FILE = "zskd_info.json"  # beside saved_model.pb: marks a zskd_tf export


def export_savedmodel(model: keras.Model, spec: pp.InputSpec, path: str, info: dict) -> None:
    """Writes a SavedModel whose ``serve`` signature maps raw images to class probabilities.

    Input: float32 images of the dataset's raw size in the raw range [0, 255], shape
    (N, raw_height, raw_width, channels); the resize/pad and normalisation of ``spec`` happen
    inside. Outputs: ``probabilities`` (softmax) and ``logits``. Written atomically.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        logits = model(pp.preprocess(images, spec), training=False)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits}

    signature = tf.TensorSpec([None, spec.raw_height, spec.raw_width, spec.channels],
                              tf.float32, name="images")
    archive.add_endpoint("serve", serve, input_signature=[signature])
    with atomic.atomic_path(path) as tmp:
        archive.write_out(tmp, verbose=False)
        with open(os.path.join(tmp, EXPORT_INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2, sort_keys=True)


def export_tflite(saved_model_dir: str, path: str) -> None:
    """Converts a SavedModel written by ``export_savedmodel`` to a ``.tflite`` file."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["serve"])
    atomic.write_bytes(path, converter.convert())


def tflite_probabilities(tflite_path: str, raw_images) -> "np.ndarray":
    """Runs a ``.tflite`` written by ``export_tflite`` on raw images, one batch at a time."""
    import numpy as np

    interpreter = tf.lite.Interpreter(model_path=tflite_path)
    runner = interpreter.get_signature_runner("serve")
    out = [runner(images=np.asarray(raw_images[i:i + 1], np.float32))["probabilities"]
           for i in range(len(raw_images))]
    return np.concatenate(out)


def export_classifier(classifier, out_dir: str, tflite: bool, seed: int = 0) -> dict:
    """``saved_model/`` (and ``model.tflite``) of a loaded Keras classifier in ``out_dir``.

    Checks both on random raw images against the Keras model and returns the paths and the
    largest probability differences (``saved_model_max_abs_diff``, ``tflite_max_abs_diff``).
    """
    import numpy as np

    from zskd_tf import model_io

    spec = classifier.spec
    saved_model = os.path.join(out_dir, "saved_model")
    export_savedmodel(classifier.model, spec, saved_model,
                      {**classifier.info, "input_spec": spec.to_dict()})
    probe = np.random.default_rng(seed).uniform(
        0, 255, (8, spec.raw_height, spec.raw_width, spec.channels)).astype(np.float32)
    expected = classifier.probabilities(probe)

    def max_diff(probabilities) -> float:
        return float(np.max(np.abs(np.asarray(probabilities) - expected)))

    result = {"saved_model": saved_model, "saved_model_max_abs_diff": max_diff(
        model_io.load_classifier(saved_model).probabilities(probe))}
    if tflite:
        path = os.path.join(out_dir, "model.tflite")
        export_tflite(saved_model, path)
        result["tflite"] = path
        result["tflite_max_abs_diff"] = max_diff(tflite_probabilities(path, probe))
    return result
