"""The report of ``--procedure=pipeline --teacher=MODEL``: ``report.html`` + ``report.json``.

For the teacher and each student: accuracy on ``--eval_data`` (when given; otherwise the report
says that no real-data accuracy exists), each student's top-1 agreement with the teacher on
held-out data impressions (without ``--eval_data``), trainable parameters, sizes, CPU latency
of the SavedModel and TFLite exports, and the int8 TFLite model's accuracy (or agreement) and
size. Methods left out are listed with the reason. The best student is the most accurate one
(without ``--eval_data``: the one agreeing most with the teacher).
"""
from __future__ import annotations

import html
import os

import numpy as np

from zskd_tf.pipeline import any_teacher
from zskd_tf.pipeline.report import HTML_HEAD, REPORT_DIR, _deployment, _int8, _mb, _params, _read
from zskd_tf.runtime import atomic
from zskd_tf.zskd import figures


def _holdout(root: str):
    """(inputs, raw images, teacher labels) of the held-out impressions, or None."""
    from zskd_tf.data import preprocess as pp
    from zskd_tf.data import synthetic

    path = os.path.join(root, "holdout_impressions", "impressions.npz")
    if not os.path.exists(path):
        return None
    data = synthetic.load_synthetic(path)
    return data.x, pp.unprocess(data.x, data.input_spec).numpy(), data.y


def _agreement(model_dir: str, inputs: np.ndarray, teacher_labels: np.ndarray) -> float:
    from zskd_tf import model_io

    model = model_io.load_classifier(model_dir).model
    predictions = np.argmax(model.predict(inputs, batch_size=500, verbose=0), axis=-1)
    return float(np.mean(predictions == teacher_labels))


def write(root: str, preset_name: str, teacher: any_teacher.Teacher, student: str, methods,
          left_out: dict, eval_data: tuple | None, repeats: int = 100, seed: int = 0,
          student_init: str = "random") -> dict:
    """Writes the report of a finished pipeline under ``root``.

    Args:
        root: the pipeline's run directory.
        preset_name: the preset's name.
        teacher: the :class:`~zskd_tf.pipeline.any_teacher.Teacher`.
        student: the student architecture (or file).
        methods: the methods that ran.
        left_out: {method: why it did not run}.
        eval_data: (raw images, labels) of ``--eval_data``, or None.
        repeats: latency calls per model.
        seed: the pipeline's ``--seed`` (where the ZSKT students are).
        student_init: how the student started, as ``result.json`` records it: ``teacher``
            (the teacher's channels) or ``random``.

    Returns:
        report.json's content.
    """
    holdout = _holdout(root)
    images = eval_data[0][:500] if eval_data is not None else holdout[1][:500]
    int8_set = eval_data if eval_data is not None else (holdout[1], holdout[2])
    teacher_row = {"name": "teacher", "model": os.path.basename(teacher.path),
                   "run": teacher.path, "test_accuracy": None}
    if eval_data is not None:
        teacher_row["test_accuracy"] = _read(os.path.join(root, "teacher_eval",
                                                          "result.json"))["accuracy"]
    rows = [teacher_row]
    for method in methods:
        run = any_teacher.student_run(method, root, seed)
        result = _read(os.path.join(run, "result.json"))
        row = {"name": any_teacher.TITLES[method], "method": method, "model": student,
               "run": run, "test_accuracy": result.get("test_accuracy"),
               "trainable_params": _params(run, result),
               **_deployment(run, os.path.join(root, f"{method}_export"), images, repeats),
               **_int8(run, os.path.join(root, f"{method}_export"), int8_set, repeats)}
        if holdout is not None:
            row["teacher_agreement"] = _agreement(run, holdout[0], holdout[2])
        rows.append(row)
    key = "test_accuracy" if eval_data is not None else "teacher_agreement"
    best = max(rows[1:], key=lambda r: r[key], default=None)
    out_dir = os.path.join(root, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    drawn = []
    for method in methods:
        source = any_teacher.calibration_source(method, root)
        if source.endswith(".npz"):
            name = f"{method}_images.png"
            figures.write_png(os.path.join(out_dir, name),
                              figures.synthetic_grid(source, per_class=6, tile=96))
            drawn.append((name, f"{any_teacher.TITLES[method]}: synthetic images"))
    report = {"preset": preset_name, "teacher": teacher.path, "dataset": teacher.dataset,
              "class_names": list(teacher.class_names), "student": student,
              "student_init": student_init,
              "methods": list(methods), "left_out": left_out,
              "real_data": eval_data is not None,
              "num_eval_images": None if eval_data is None else int(len(eval_data[1])),
              "best": None if best is None else best["name"], "rows": rows,
              "figures": [name for name, _ in drawn],
              "latency": f"CPU, batch of one raw image, median of {repeats} calls"}
    atomic.write_json(os.path.join(root, "report.json"), report)
    atomic.write_text(os.path.join(root, "report.html"), _html(report, drawn))
    return report


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _html(report: dict, drawn) -> str:
    e = html.escape
    real = report["real_data"]
    quality = "accuracy on --eval_data" if real else "top-1 agreement with the teacher"
    head = ["model", quality, "parameters", "model.keras", "SavedModel", "TFLite",
            "SavedModel ms/image", "TFLite ms/image",
            "int8 TFLite " + ("accuracy" if real else "agreement"), "int8 TFLite"]
    body = []
    for r in report["rows"]:
        score = r["test_accuracy"] if real else r.get("teacher_agreement")
        cells = [f"<b>{e(r['name'])}</b><br><small>{e(r['model'])}</small>",
                 "reference" if r["name"] == "teacher" and not real else _percent(score)]
        if r["name"] == "teacher":
            cells += ["-"] * (len(head) - 2)
        else:
            cells += [f"{r['trainable_params']:,}", _mb(r["keras_bytes"]),
                      _mb(r["saved_model_bytes"]), _mb(r.get("tflite_bytes")),
                      f"{r['saved_model_ms']:.2f}",
                      f"{r['tflite_ms']:.3f}" if "tflite_ms" in r else "-",
                      _percent(r.get("int8_test_accuracy")), _mb(r.get("int8_bytes"))]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if real:
        data = (f"Accuracies are on the {report['num_eval_images']} images of --eval_data; no "
                "real image was used to train any student.")
    else:
        data = ("<b>No real-data accuracy exists</b>: no --eval_data was given. Each student is "
                "scored by its top-1 agreement with the teacher on held-out data impressions "
                "(made with another seed, never trained on).")
    start = (", started from the teacher's own weights of its most important channels "
             "(<code>--student_init=teacher</code>)" if report["student_init"] == "teacher"
             else "")
    left = "".join(f"<li><b>{e(m)}</b>: {e(why)}</li>" for m, why in report["left_out"].items())
    figs = "".join(f'<figure><img src="{REPORT_DIR}/{e(name)}" alt="{e(name)}">'
                   f"<figcaption>{e(caption)}</figcaption></figure>" for name, caption in drawn)
    return f"""{HTML_HEAD}
<h1>Data-free students of {e(os.path.basename(report['teacher']))}</h1>
<p>Teacher {e(report['teacher'])}: {len(report['class_names'])} classes
({e(', '.join(report['class_names']))}), dataset {e(report['dataset'])}. Student
{e(report['student'])}{start}. Preset <b>{e(report['preset'])}</b>. {data}
Best student: <b>{e(report['best'] or '-')}</b>. Latency: {e(report['latency'])}.</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>
{''.join(body)}
</table>
{f'<p>Methods left out:</p><ul>{left}</ul>' if left else ''}
{figs}
</body></html>
"""
