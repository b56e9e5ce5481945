"""``--procedure=quantize --teacher=MODEL``: data-free full-integer TFLite of a classifier the
user already has, with no student and no training image.

1. Calibration images are synthesised from the model itself: ZSKD data impressions, made by
   ``--procedure=data_impressions`` in ``<run_dir>/impressions/`` (its flags apply:
   ``--synthesis_steps``, ``--betas``, ...; ``--num_samples`` defaults to
   ``--calibration_samples``). When the model has BatchNormalization layers, the impressions
   also carry DeepInversion's BatchNorm feature-statistics prior with weight
   ``--impression_bn_weight`` (default here ``BN_PRIOR_WEIGHT``): calibration needs images
   whose activations have the real data's statistics, which is what those layers remember.
   ``--calibration=FILE.npz|generator|real|noise`` uses that source instead and synthesises
   nothing.
2. The model is exported as ``--procedure=export --quantize=int8`` does: ``saved_model/`` and
   ``model_int8.tflite`` (``--quantize_io``), and ``model.tflite`` with ``--tflite``.

Before anything is written, the model is converted once with a few noise images, so that a
model with an op the int8 converter rejects is refused before the synthesis is paid for.
A killed run resumes the synthesis where it stopped.
"""
from __future__ import annotations

import os
import tempfile
import types

from zskd_tf import calibration as calibration_lib
from zskd_tf import export, quantize
from zskd_tf.models import taps
from zskd_tf.procedures import data_impressions
from zskd_tf.procedures import export as export_procedure
from zskd_tf.procedures.common import finished_result
from zskd_tf.runtime.run_dir import RunDir

IMPRESSIONS_DIR = "impressions"
TRIAL_IMAGES = 4
BN_PRIOR_WEIGHT = 1.0


def _check_convertible(classifier, io: str) -> None:
    """Converts the model with a few noise images: a UserError now if it cannot be int8."""
    with tempfile.TemporaryDirectory(prefix="zskd_quantize.") as tmp:
        saved_model = os.path.join(tmp, "saved_model")
        export.export_savedmodel(classifier.model, classifier.spec, saved_model, {})
        quantize.convert(saved_model, "int8", io,
                         calibration_lib.uniform_noise(classifier.spec, TRIAL_IMAGES, seed=0))


def _impressions(cfg, run_dir: RunDir, bn_weight: float) -> tuple[str, dict]:
    """Runs (or resumes) data_impressions of the teacher in ``<run_dir>/impressions``."""
    sub = types.SimpleNamespace(**{**vars(cfg), "procedure": "data_impressions",
                                   "run_dir": run_dir.file(IMPRESSIONS_DIR),
                                   "num_samples": cfg.num_samples or cfg.calibration_samples,
                                   "impression_bn_weight": bn_weight})
    result = data_impressions.run(sub)
    return os.path.join(sub.run_dir, data_impressions.IMPRESSIONS_FILE), result


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    classifier, dataset = export_procedure.load_exportable(cfg, cfg.teacher)
    given = None
    if cfg.calibration:  # a source of the user's: validated (and loaded) before anything
        given = export_procedure.calibration_set(cfg, classifier.spec, dataset, cfg.teacher)
    _check_convertible(classifier, cfg.quantize_io)
    run_dir.claim(cfg)
    synthesis = None
    if given is None:
        bn_weight = cfg.impression_bn_weight
        if "impression_bn_weight" not in cfg.present and taps.has_batchnorm(classifier.model):
            bn_weight = BN_PRIOR_WEIGHT
        path, made = _impressions(cfg, run_dir, bn_weight)
        given = calibration_lib.from_synthetic(path, classifier.spec, cfg.calibration_samples,
                                               cfg.seed)
        synthesis = {"procedure": "data_impressions", "run_dir": run_dir.file(IMPRESSIONS_DIR),
                     **{k: made[k] for k in ("num_impressions", "synthesis_steps", "temperature",
                                             "impression_bn_weight", "mean_loss") if k in made}}
    quantization = export.Quantization("int8", cfg.quantize_io, given)
    result = export_procedure.export_into(run_dir, cfg, classifier, quantization)
    result.update(teacher=cfg.teacher, dataset=dataset,
                  **({"synthesis": synthesis} if synthesis else {}))
    run_dir.write_result(result)
    export_procedure.report(result)
    return result

