"""Post-training quantization of an exported classifier to TFLite.

* ``int8``: full-integer. Weights and activations are int8 (biases int32), every activation's
  range measured on calibration images (:mod:`zskd_tf.calibration`). ``io="int8"`` makes the
  signature's ends int8 too (the input is the raw pixel minus 128: scale 1, zero point -128);
  ``io="float"`` keeps float32 ends with a QUANTIZE / DEQUANTIZE op behind / before them.
  A model that the converter rejects, or in which it leaves any op computing in float32, is a
  UserError naming the ops and suggesting ``dynamic``.
* ``dynamic``: dynamic-range quantization, int8 weights with float32 activations; needs no
  calibration data.
"""
from __future__ import annotations

import re

import numpy as np

from zskd_tf import tflite_runtime
from zskd_tf.calibration import CalibrationSet
from zskd_tf.errors import UserError

MODES = ("int8", "dynamic")
IO_TYPES = ("int8", "float")


def file_name(mode: str) -> str:
    """The quantized model's file name in an export directory, e.g. ``model_int8.tflite``."""
    return f"model_{mode}.tflite"


def _representative(calibration: CalibrationSet):
    """One image at a time; the first has a black and a white pixel so that the input's range
    is exactly [0, 255] (int8 input = pixel - 128), whatever the source's extremes."""
    images = calibration.raw_images

    def generate():
        for i in range(len(images)):
            image = images[i:i + 1].copy()
            if i == 0:
                image[0, 0, 0], image[0, 0, -1] = 0.0, 255.0
            yield {"images": image}
    return generate


def _ops_in(message: str) -> list[str]:
    names = re.findall(r"'tfl?\.([A-Za-z0-9_]+)'", message)
    return sorted(set(names))


def convert(saved_model_dir: str, mode: str, io: str = "int8",
            calibration: CalibrationSet | None = None) -> bytes:
    """The quantized ``.tflite`` of a SavedModel written by ``export.export_savedmodel``.

    Args:
        saved_model_dir: the SavedModel (its ``serve`` signature is converted).
        mode: ``"int8"`` (full-integer) or ``"dynamic"`` (int8 weights only).
        io: ``"int8"`` or ``"float"`` signature ends (``int8`` mode only).
        calibration: the calibration images (``int8`` mode only).

    Returns:
        The model's bytes.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise UserError(f"unknown quantization {mode!r}; use one of {', '.join(MODES)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["serve"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        if calibration is None or len(calibration.raw_images) == 0:
            raise UserError("full-integer quantization needs calibration images; the "
                            "calibration set is empty")
        converter.representative_dataset = _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io == "int8":
            converter.inference_input_type = converter.inference_output_type = tf.int8
    try:
        with tflite_runtime.quiet_deprecation():
            content = converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter's errors come in many classes
        if mode != "int8":
            raise
        ops = _ops_in(str(e))
        what = f"the op(s) {', '.join(ops)}" if ops else "an op of the model"
        raise UserError(f"--quantize=int8: the TFLite converter has no int8 kernel for {what} "
                        f"({str(e).strip().splitlines()[0][:160]}); use --quantize=dynamic "
                        "(int8 weights, float activations)") from None
    if mode == "int8":
        left = tflite_runtime.float_ops(content)
        if left:
            shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
            raise UserError(f"--quantize=int8: the TFLite converter has no int8 kernel for "
                            f"{len(left)} op(s) of this model and leaves them in float: "
                            f"{shown}; use --quantize=dynamic (int8 weights, float activations)")
    return content


def input_quantization(content: bytes) -> dict:
    """Dtype, scale and zero point of the ``images`` input of a ``.tflite`` model."""
    interpreter = tflite_runtime.load_interpreter(content=content)
    detail = interpreter.get_signature_runner(tflite_runtime.SIGNATURE).get_input_details()
    images = detail["images"]
    scale, zero_point = images["quantization"]
    return {"dtype": np.dtype(images["dtype"]).name, "scale": float(scale),
            "zero_point": int(zero_point)}
