"""``--procedure=export``: SavedModel (raw images -> probabilities), optionally TFLite, and
optionally a quantized TFLite model (``--quantize=int8|dynamic``, see :mod:`zskd_tf.quantize`).

Everything is exported into a staging directory first and moved into the run directory only
once it all succeeded, so a model the int8 converter rejects leaves the run directory as it was.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from zskd_tf import calibration as calibration_lib
from zskd_tf import export, model_io, teacher_task
from zskd_tf.data import datasets
from zskd_tf.errors import UserError
from zskd_tf.procedures.common import finished_result
from zskd_tf.procedures.evaluate import dataset_for
from zskd_tf.runtime import atomic
from zskd_tf.runtime.run_dir import RunDir


def calibration_set(cfg, spec, dataset: str, model_path: str | None = None):
    """The ``--calibration`` images for a model taking ``spec``'s inputs.

    Args:
        cfg: the run's config (``calibration``, ``calibration_samples``, ``generator_run``,
            ``seed``, ``data_dir``).
        spec: the model's :class:`InputSpec`.
        dataset: the dataset the model classifies (for ``real``).
        model_path: the exported model (its generator.keras is the default generator).

    Returns:
        A :class:`zskd_tf.calibration.CalibrationSet`.
    """
    source, n = cfg.calibration, cfg.calibration_samples
    if source == "noise":
        return calibration_lib.uniform_noise(spec, n, cfg.seed)
    if source == "real":
        raw = datasets.load_dataset(dataset, cfg.data_dir)
        if tuple(raw.image_shape) != tuple(spec.raw_shape):
            raise UserError(f"{dataset} has {tuple(raw.image_shape)} images but the model takes "
                            f"{tuple(spec.raw_shape)}: give --dataset it classifies")
        return calibration_lib.from_real(raw.train_x, dataset, n, cfg.seed)
    if source == "generator":
        run = cfg.generator_run
        if not run:
            if not (model_path and os.path.isfile(os.path.join(model_path,
                                                               calibration_lib.GENERATOR_FILE))):
                raise UserError(f"--calibration=generator: {model_path} holds no "
                                f"{calibration_lib.GENERATOR_FILE}; name the zero_shot run "
                                "with --generator_run")
            run = model_path
        if not os.path.exists(run):
            raise UserError(f"--generator_run={run} does not exist")
        return calibration_lib.from_generator(run, spec, n, cfg.seed)
    return calibration_lib.from_synthetic(source, spec, n, cfg.seed)


def _quantization(cfg, classifier, dataset: str) -> export.Quantization | None:
    if cfg.quantize == "none":
        return None
    if cfg.quantize == "dynamic":
        return export.Quantization("dynamic", io="float")
    return export.Quantization("int8", cfg.quantize_io,
                               calibration_set(cfg, classifier.spec, dataset, cfg.model_path))


def _move_products(result: dict, staging: str, run_dir: RunDir) -> dict:
    """Moves every product named in ``result`` from ``staging`` into the run directory."""
    moved = {}
    for key, value in result.items():
        if isinstance(value, str) and value.startswith(staging + os.sep):
            target = run_dir.file(os.path.relpath(value, staging))
            with atomic.atomic_path(target) as tmp:
                shutil.move(value, tmp)
            value = target
        moved[key] = value
    return moved


def load_exportable(cfg, model_path: str):
    """(the Keras classifier at ``model_path``, the dataset it classifies); UserError for a
    SavedModel or TFLite file, which cannot be exported again."""
    info = model_io.read_info(model_path)
    if "input_spec" in info or "dataset" in cfg.present:  # a named dataset's raw image size
        dataset = dataset_for(cfg, model_path)
        raw_shape = None
        if "input_spec" not in info:
            raw_shape = datasets.load_dataset(dataset, cfg.data_dir).image_shape
        classifier = model_io.load_classifier(model_path, raw_shape)
    else:  # a foreign model described by itself (zskd_tf/teacher_task.py)
        classifier, task = teacher_task.resolve(model_path, flag="--model_path",
                                                description=teacher_task.description_of(cfg))
        dataset = task.dataset
    if classifier.model is None:
        raise UserError(f"{model_path} is {classifier.kind}; export needs the Keras model "
                        "(a run directory or a .keras file)")
    return classifier, dataset


def export_into(run_dir: RunDir, cfg, classifier, quantization, before_moving=None) -> dict:
    """Exports into a staging directory, calls ``before_moving()`` (e.g. claiming the run
    directory) once everything succeeded, then moves the products into ``run_dir``.

    Returns:
        export_classifier's result, with the paths in the run directory.
    """
    with tempfile.TemporaryDirectory(prefix="zskd_export.") as staging:
        result = export.export_classifier(classifier, staging, cfg.tflite, cfg.seed, quantization)
        if before_moving is not None:
            before_moving()
        return _move_products(result, staging, run_dir)


def report(result: dict) -> None:
    """Prints what was exported."""
    print("exported " + ", ".join(v for k, v in result.items()
                                 if k in ("saved_model", "tflite", "tflite_int8",
                                          "tflite_dynamic")), flush=True)
    if "quantization" in result:
        q = result["quantization"]
        calibrated = (f", calibrated on {q['calibration']['num_images']} "
                      f"{q['calibration']['source']} images (top-1 = Keras on "
                      f"{q['calibration_top1_agreement']:.1%} of them)"
                      if "calibration" in q else "")
        print(f"{q['mode']} TFLite: {q['file_bytes'] / 1e3:.1f} kB{calibrated}", flush=True)


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    classifier, dataset = load_exportable(cfg, cfg.model_path)
    quantization = _quantization(cfg, classifier, dataset)
    result = export_into(run_dir, cfg, classifier, quantization, lambda: run_dir.claim(cfg))
    result["model_path"] = cfg.model_path
    run_dir.write_result(result)
    report(result)
    return result
