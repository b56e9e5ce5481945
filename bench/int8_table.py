"""Float versus int8 TFLite: test accuracy, agreement, size and latency
(bench/int8_fashion_mnist.sh).

Usage: python bench/int8_table.py --model=NAME:RUN_DIR:EXPORT_DIR[:LABEL],... [--out=table.json]

Each EXPORT_DIR is a finished ``--procedure=export --tflite --quantize=int8`` run of RUN_DIR;
or a ``--procedure=quantize --tflite`` run; several may share a model (one per calibration
source; LABEL names the source in the table, default: its kind or method).
For every model: the Keras model's and
the float TFLite model's accuracy on the real test set, then per export its int8 accuracy, its
top-1 agreement with the float model, its calibration source, and the file sizes and latencies
(one raw image per call, median of ``--repeats`` calls after a warm-up, one interpreter thread).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_MODELS = flags.DEFINE_list("model", None, "NAME:RUN_DIR:EXPORT_DIR[:LABEL] entries.")
_OUT = flags.DEFINE_string("out", None, "Write the rows as JSON here too.")
_REPEATS = flags.DEFINE_integer("repeats", 300, "Calls per latency measurement.")


def _latency_ms(runner, images, repeats: int) -> float:
    runner.outputs(images[:1])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        runner.outputs(images[i % len(images)][None])
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv):
    del argv
    from zskd_tf import model_io
    from zskd_tf.data import datasets
    from zskd_tf.tflite_runtime import TFLiteClassifier, runtime_name

    data = datasets.load_dataset("fashion_mnist")
    images, labels = data.test_x.astype(np.float32), data.test_y
    rows = []
    for entry in _MODELS.value:
        name, run, export_dir, *label = entry.split(":")
        with open(os.path.join(export_dir, "result.json"), encoding="utf-8") as f:
            result = json.load(f)
        keras_top1 = model_io.load_classifier(run).probabilities(images).argmax(1)
        float_runner = TFLiteClassifier(result["tflite"])
        float_top1 = float_runner.probabilities(images).argmax(1)
        int8_runner = TFLiteClassifier(result["tflite_int8"])
        int8_top1 = int8_runner.probabilities(images).argmax(1)
        calibration = result["quantization"]["calibration"]
        rows.append({
            "model": name,
            "calibration": label[0] if label else calibration.get("method", calibration["source"]),
            "calibration_images": calibration["num_images"],
            "keras_accuracy": float(np.mean(keras_top1 == labels)),
            "float_tflite_accuracy": float(np.mean(float_top1 == labels)),
            "int8_accuracy": float(np.mean(int8_top1 == labels)),
            "int8_agreement_with_float": float(np.mean(int8_top1 == float_top1)),
            "float_bytes": os.path.getsize(result["tflite"]),
            "int8_bytes": os.path.getsize(result["tflite_int8"]),
            "float_ms": _latency_ms(float_runner, images, _REPEATS.value),
            "int8_ms": _latency_ms(int8_runner, images, _REPEATS.value)})
    print(f"runtime {runtime_name()}, {len(labels)} test images; latency: one image per call, "
          f"median of {_REPEATS.value} calls, one thread")
    print("| model | calibration (images) | Keras | float TFLite | int8 TFLite | int8 = float "
          "(top-1) | float / int8 size | float / int8 ms per image |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['calibration']} ({r['calibration_images']}) | "
              f"{100 * r['keras_accuracy']:.2f} % | {100 * r['float_tflite_accuracy']:.2f} % | "
              f"**{100 * r['int8_accuracy']:.2f} %** | "
              f"{100 * r['int8_agreement_with_float']:.1f} % "
              f"| {r['float_bytes'] / 1e3:.0f} / {r['int8_bytes'] / 1e3:.0f} kB | "
              f"{r['float_ms']:.3f} / {r['int8_ms']:.3f} |")
    if _OUT.value:
        with open(_OUT.value, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    flags.mark_flag_as_required("model")
    app.run(main)
