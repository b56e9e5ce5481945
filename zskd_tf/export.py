"""Deployable exports of a classifier: SavedModel (raw images -> probabilities), TFLite, and
quantized TFLite (:mod:`zskd_tf.quantize`)."""
from __future__ import annotations

import dataclasses
import json
import os

import keras
import tensorflow as tf

from zskd_tf import model_io
from zskd_tf.data import preprocess as pp
from zskd_tf.runtime import atomic


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
        with open(os.path.join(tmp, model_io.EXPORT_INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2, sort_keys=True)


def export_tflite(saved_model_dir: str, path: str) -> None:
    """Converts a SavedModel written by ``export_savedmodel`` to a ``.tflite`` file."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["serve"])
    atomic.write_bytes(path, converter.convert())


def tflite_probabilities(tflite_path: str, raw_images):
    """Runs a ``.tflite`` written by this module (float or quantized) on raw images; returns
    the class probabilities (a NumPy array, one row per image)."""
    from zskd_tf.tflite_runtime import TFLiteClassifier

    return TFLiteClassifier(tflite_path).probabilities(raw_images)


@dataclasses.dataclass
class Quantization:
    """What ``export_classifier`` quantizes: ``mode`` "int8" or "dynamic", the signature's
    ``io`` type ("int8" or "float", int8 only) and the ``calibration`` images (int8 only)."""
    mode: str
    io: str = "int8"
    calibration: object = None  # zskd_tf.calibration.CalibrationSet


def _export_quantized(classifier, saved_model: str, out_dir: str, q: Quantization) -> dict:
    """Writes the quantized TFLite model; returns its result.json entries."""
    import numpy as np

    from zskd_tf import quantize, tflite_runtime

    content = quantize.convert(saved_model, q.mode, q.io, q.calibration)
    path = os.path.join(out_dir, quantize.file_name(q.mode))
    atomic.write_bytes(path, content)
    summary = {"mode": q.mode, "file_bytes": len(content), "runtime": tflite_runtime.runtime_name(),
               "input": quantize.input_quantization(content)}
    if q.mode == "int8":
        images = q.calibration.raw_images
        keras_top1 = classifier.probabilities(images).argmax(1)
        quantized_top1 = tflite_probabilities(path, images).argmax(1)
        summary.update(io=q.io, calibration=q.calibration.source,
                       calibration_top1_agreement=float(np.mean(keras_top1 == quantized_top1)))
    return {f"tflite_{q.mode}": path, "quantization": summary}


def export_classifier(classifier, out_dir: str, tflite: bool, seed: int = 0,
                      quantization: Quantization | None = None) -> dict:
    """``saved_model/`` (and ``model.tflite``, and a quantized TFLite model) of a loaded Keras
    classifier in ``out_dir``.

    Checks the SavedModel and the float TFLite model on random raw images against the Keras
    model and returns the paths and the largest probability differences
    (``saved_model_max_abs_diff``, ``tflite_max_abs_diff``). With ``quantization``, also writes
    ``model_int8.tflite`` or ``model_dynamic.tflite`` (key ``tflite_int8`` / ``tflite_dynamic``)
    and a ``quantization`` entry: mode, file size, runtime, input type, and for int8 the
    calibration source and the top-1 agreement with Keras on the calibration images.
    """
    import numpy as np

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
    if quantization is not None:
        result.update(_export_quantized(classifier, saved_model, out_dir, quantization))
    return result
