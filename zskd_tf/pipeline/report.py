"""The pipeline's report: ``report.html`` + ``report.json`` + PNGs in ``<run_dir>/report/``.

For the teacher and each student: test accuracy (from its run's result.json: the full real test
set, final weights), the paper's figure where one exists, trainable parameters, size on disk
(model.keras, SavedModel directory, TFLite file) and CPU latency per image (batch of one,
median of ``repeats`` calls after a warm-up) of the SavedModel and of the TFLite model, and the
TFLite model's top-1 agreement with the Keras model on real test images; and of the int8 TFLite
model (calibrated without real images): its accuracy on the full real test set, its top-1
agreement with the Keras model there, its size and its latency. Figures: the ZSKD
concentration matrix, grids of data impressions, of reconstructions and of generator samples,
and the ZSKT transition curves.
"""
from __future__ import annotations

import html
import json
import os
import statistics
import time

import numpy as np

from zskd_tf.calibration import GENERATOR_FILE
from zskd_tf.pipeline import steps as steps_lib
from zskd_tf.runtime import atomic
from zskd_tf.zskd import figures
from zskd_tf.zskt import transition_figure

REPORT_DIR = "report"
# Published Fashion-MNIST figures (LeNet-5 teacher, LeNet-5-half student): docs/methods/zskd.md,
# "Published results".
PAPER = {"teacher": ("90.84 %", "Nayak et al. 2019, LeNet-5 teacher"),
         "ZSKD (Nayak et al. 2019)": ("79.62 %", "48,000 DIs, with augmentation")}
NO_PAPER_FIGURE = ("-", "no Fashion-MNIST figure published")


def _read(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def _median_ms(call, images, repeats: int) -> float:
    call(images[:1])
    times = []
    for i in range(repeats):
        image = images[i % len(images)][None]
        start = time.perf_counter()
        call(image)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _deployment(model_dir: str, export_dir: str, images, repeats: int) -> dict:
    """Sizes, latencies and TFLite agreement of one classifier run (and its export run)."""
    import tensorflow as tf

    from zskd_tf import model_io
    from zskd_tf.tflite_runtime import TFLiteClassifier

    saved_model = os.path.join(export_dir, "saved_model")
    row = {"keras_bytes": _size(os.path.join(model_dir, model_io.MODEL_FILE)),
           "saved_model_bytes": _size(saved_model)}
    # Keep the loaded object referenced while serving (docs/methods/keras_notes.md,
    # "SavedModels").
    loaded = tf.saved_model.load(saved_model)
    row["saved_model_ms"] = _median_ms(lambda x: loaded.serve(tf.constant(x)), images, repeats)
    tflite = os.path.join(export_dir, "model.tflite")
    if os.path.exists(tflite):
        row["tflite_bytes"] = _size(tflite)
        runner = TFLiteClassifier(tflite)
        row["tflite_ms"] = _median_ms(runner.outputs, images, repeats)
        keras_top1 = model_io.load_classifier(model_dir).probabilities(images).argmax(1)
        tflite_top1 = runner.probabilities(images).argmax(1)
        row["tflite_top1_agreement"] = float(np.mean(keras_top1 == tflite_top1))
    return row


def _int8(model_dir: str, int8_dir: str, test, repeats: int) -> dict:
    """Accuracy on the real test set ``(x, y)``, top-1 agreement with the Keras model, size,
    latency and calibration source of the int8 export in ``int8_dir`` ({} if absent)."""
    from zskd_tf import model_io
    from zskd_tf.quantize import file_name
    from zskd_tf.tflite_runtime import TFLiteClassifier

    path = os.path.join(int8_dir, file_name("int8"))
    if not os.path.exists(path):
        return {}
    x, y = test
    runner = TFLiteClassifier(path)
    int8_top1 = runner.probabilities(x).argmax(1)
    keras_top1 = model_io.load_classifier(model_dir).probabilities(x).argmax(1)
    calibration = _read(os.path.join(int8_dir, "result.json"))["quantization"]["calibration"]
    return {"int8_test_accuracy": float(np.mean(int8_top1 == y)),
            "int8_top1_agreement": float(np.mean(int8_top1 == keras_top1)),
            "int8_bytes": _size(path), "int8_ms": _median_ms(runner.outputs, x, repeats),
            "int8_calibration": calibration.get("method", calibration["source"])}


def _generator_samples(student_dir: str, teacher_dir: str, out: str, seed: int = 0) -> None:
    """A grid of the ZSKT generator's images, titled with the teacher's top-2 classes."""
    import keras

    import zskd_tf.models.layers  # noqa: F401  (registers the generator's layers)
    from zskd_tf import model_io
    from zskd_tf.data import preprocess as pp

    generator = keras.models.load_model(os.path.join(student_dir, GENERATOR_FILE),
                                        compile=False)
    teacher = model_io.load_classifier(teacher_dir)
    z = np.random.default_rng(seed).standard_normal((40, generator.input_shape[-1]))
    x = keras.ops.convert_to_numpy(generator(z.astype(np.float32), training=True))
    probabilities = keras.ops.convert_to_numpy(
        keras.ops.softmax(teacher.model(x, training=False)))
    names = teacher.info["class_names"]
    images = pp.unprocess(x, teacher.spec).numpy()
    tiles = [(images[i], [f"{names[c]} {probabilities[i, c]:.2f}"
                          for c in np.argsort(-probabilities[i])[:2]]) for i in range(len(x))]
    figures.write_png(out, figures.image_grid(
        tiles, 8, 112, title="ZSKT generator samples (batch statistics, as in training); "
                             "titles = the teacher's top-2"))


def _figures(root: str, out_dir: str, teacher_dir: str, seed: int) -> list[tuple[str, str]]:
    """Draws every figure whose inputs exist; returns (file name, caption) pairs."""
    drawn = []

    def draw(name, caption, make):
        make(os.path.join(out_dir, name))
        drawn.append((name, caption))

    impressions = os.path.join(root, "zskd_impressions")
    result = _read(os.path.join(impressions, "result.json"))
    matrix = np.load(os.path.join(impressions, "concentration.npy"))
    draw("concentration.png", "ZSKD concentration matrix of the teacher's final layer "
         "(row k = the Dirichlet concentration of class k, before beta)",
         lambda p: figures.write_png(p, figures.heatmap(matrix, result["class_names"],
                                                        "Concentration matrix")))
    draw("impressions.png", "ZSKD data impressions (rows: the teacher's argmax)",
         lambda p: figures.write_png(p, figures.synthetic_grid(
             os.path.join(impressions, "impressions.npz"), per_class=6, tile=96)))
    reconstruction = os.path.join(root, "lopes_dataset", f"{steps_lib.LOPES_OBJECTIVE}.npz")
    draw("reconstructions.png", "Lopes et al. reconstructions (rows: the class each batch was "
         "made for)", lambda p: figures.write_png(
             p, figures.synthetic_grid(reconstruction, per_class=6, tile=96)))
    draw("generator_samples.png", "ZSKT generator samples at the end of training",
         lambda p: _generator_samples(os.path.join(root, steps_lib.zskt_seed_dir(seed)),
                                      teacher_dir, p))
    draw("transition_curves.png", "ZSKT transition curves: the attacked student (red) and the "
         "teacher (blue), mean +- 2 standard errors",
         lambda p: transition_figure.plot([os.path.join(root, "zskt_curves")], p))
    return drawn


def write(root: str, preset: steps_lib.Preset, teacher_dir: str, repeats: int = 200,
          seed: int = 0, student_init: str = "teacher") -> dict:
    """Writes the report of a finished pipeline under ``root`` (run with ``--seed=seed`` and
    ``--student_init=student_init``); returns report.json's content."""
    from zskd_tf.data import datasets

    out_dir = os.path.join(root, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    data = datasets.load_dataset(steps_lib.DATASET)
    test_images = data.test_x[:1000].astype(np.float32)
    test = (data.test_x.astype(np.float32), data.test_y)
    teacher = _read(os.path.join(teacher_dir, "result.json"))
    rows = [{"name": "teacher", "model": steps_lib.TEACHER_MODEL,
             "test_accuracy": teacher["test_accuracy"],
             "num_test_examples": teacher.get("num_test_examples"),
             "trainable_params": _params(teacher_dir, teacher),
             "paper": PAPER["teacher"], "run": teacher_dir,
             **_deployment(teacher_dir, os.path.join(root, "teacher_export"), test_images,
                           repeats),
             **_int8(teacher_dir, os.path.join(root, steps_lib.INT8_EXPORTS["teacher"]), test,
                     repeats)}]
    for name, (run, export_run, int8_run) in steps_lib.students(seed).items():
        result = _read(os.path.join(root, run, "result.json"))
        rows.append({"name": name, "model": steps_lib.STUDENT_MODEL,
                     "test_accuracy": result["test_accuracy"],
                     "num_test_examples": result.get("num_test_examples"),
                     "trainable_params": _params(os.path.join(root, run), result),
                     "paper": PAPER.get(name, NO_PAPER_FIGURE),
                     "run": os.path.join(root, run),
                     **_deployment(os.path.join(root, run), os.path.join(root, export_run),
                                   test_images, repeats),
                     **_int8(os.path.join(root, run), os.path.join(root, int8_run), test,
                             repeats)})
    curves = _read(os.path.join(root, "zskt_curves", "result.json"))
    drawn = _figures(root, out_dir, teacher_dir, seed)
    report = {"preset": preset.name, "settings": vars_of(preset), "student_init": student_init,
              "rows": rows,
              "zskt_mte": curves["mte"], "figures": [name for name, _ in drawn],
              "latency": f"CPU, batch of one raw image, median of {repeats} calls"}
    atomic.write_json(os.path.join(root, "report.json"), report)
    atomic.write_text(os.path.join(root, "report.html"), _html(report, drawn))
    return report


def vars_of(preset) -> dict:
    return {k: v for k, v in vars(preset).items() if k not in ("name", "extra")}


def _params(run_dir: str, result: dict) -> int:
    if "trainable_params" in result:
        return int(result["trainable_params"])
    from zskd_tf import model_io
    model = model_io.load_classifier(run_dir).model
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _int8_cells(r: dict) -> list[str]:
    if "int8_test_accuracy" not in r:
        return ["-"] * 4
    return [f"{100 * r['int8_test_accuracy']:.2f} %<br><small>calibrated on "
            f"{html.escape(r['int8_calibration'])}</small>",
            f"{100 * r['int8_top1_agreement']:.1f} %", _mb(r["int8_bytes"]),
            f"{r['int8_ms']:.3f}"]


HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>zskd_tf pipeline report</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.4em 0.7em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; }
figure { margin: 1.5em 0; } img { max-width: 100%; border: 1px solid #ddd; }
small { color: #666; }
</style></head><body>"""  # the reports' page head (shared with any_report.py)


def _html(report: dict, drawn) -> str:
    e = html.escape
    head = ["model", "test accuracy", "paper", "parameters", "model.keras", "SavedModel",
            "TFLite", "SavedModel ms/image", "TFLite ms/image", "TFLite = Keras (top-1)",
            "int8 TFLite accuracy", "int8 = Keras (top-1)", "int8 TFLite", "int8 ms/image"]
    body = []
    for r in report["rows"]:
        paper, note = r["paper"]
        cells = [f"<b>{e(r['name'])}</b><br><small>{e(r['model'])}</small>",
                 f"{100 * r['test_accuracy']:.2f} %<br><small>{r['num_test_examples'] or '?'} "
                 "test images</small>", f"{e(paper)}<br><small>{e(note)}</small>",
                 f"{r['trainable_params']:,}", _mb(r["keras_bytes"]),
                 _mb(r["saved_model_bytes"]), _mb(r.get("tflite_bytes")),
                 f"{r['saved_model_ms']:.2f}",
                 f"{r['tflite_ms']:.3f}" if "tflite_ms" in r else "-",
                 f"{100 * r['tflite_top1_agreement']:.1f} %"
                 if "tflite_top1_agreement" in r else "-", *_int8_cells(r)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    settings = ", ".join(f"{k} {v}" for k, v in report["settings"].items())
    start = (" Each student started from the teacher's own weights of its most important "
             "channels (<code>--student_init=teacher</code>)." if report["student_init"] ==
             "teacher" else " Each student started from random weights.")
    figs = "".join(f'<figure><img src="{REPORT_DIR}/{e(name)}" alt="{e(name)}">'
                   f"<figcaption>{e(caption)}</figcaption></figure>" for name, caption in drawn)
    return f"""{HTML_HEAD}
<h1>Data-free students of a LeNet-5 Fashion-MNIST teacher</h1>
<p>Preset <b>{e(report['preset'])}</b> ({e(settings)}). Accuracies are on the real
Fashion-MNIST test set with the final weights (no selection on the test set); no training image
was used by any student.{start} The int8 TFLite models are full-integer, calibrated without
real images (the teacher and the ZSKD student on the data impressions, the Lopes student on its
reconstruction, the ZSKT student on its generator's samples); their accuracy is on the full
test set. Latency: {e(report['latency'])}. ZSKT mean transition error of the zero-shot
student: <b>{report['zskt_mte']:.3f}</b>.</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>
{''.join(body)}
</table>
{figs}
</body></html>
"""
