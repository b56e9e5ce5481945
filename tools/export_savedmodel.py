"""Export any zskd_tf classifier (teacher or student) as a SavedModel and a TFLite model.

    python tools/export_savedmodel.py --model_path=RUN_DIR|MODEL.keras --out=DIR [--notflite]
        [--dataset=NAME] [--overwrite]

Writes DIR/saved_model/ (signature ``serve``: raw images (N, H, W, C) float32 in [0, 255] ->
``probabilities`` and ``logits``; resizing and normalisation happen inside) and DIR/model.tflite
(the same signature), and checks both against the Keras model on random raw images. The
same code as ``python -m zskd_tf.main --procedure=export --tflite``, without a run directory.
``--dataset`` is needed only for a .keras file that has no model_info.json beside it.
"""
import os

import _cli
from absl import flags

from zskd_tf.errors import UserError

_MODEL_PATH = flags.DEFINE_string("model_path", None, "A run directory or a .keras file.")
_OUT = flags.DEFINE_string("out", None, "The directory to write saved_model/ and model.tflite to.")
_TFLITE = flags.DEFINE_boolean("tflite", True, "Also write model.tflite.")
_DATASET = flags.DEFINE_string("dataset", None, "Dataset of a .keras file without model_info.json.")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing export in --out.")


def main():
    if not _MODEL_PATH.value or not _OUT.value:
        raise UserError("usage: export_savedmodel.py --model_path=RUN_DIR|MODEL.keras --out=DIR")
    if not os.path.exists(_MODEL_PATH.value):
        raise UserError(f"--model_path={_MODEL_PATH.value} does not exist")
    existing = [n for n in ("saved_model", "model.tflite")
                if os.path.exists(os.path.join(_OUT.value, n))]
    if existing and not _OVERWRITE.value:
        raise UserError(f"--out={_OUT.value} already holds {', '.join(existing)}; use another "
                        "--out, or --overwrite")
    from zskd_tf import export, model_io
    from zskd_tf.data import datasets

    raw_shape = None
    if "input_spec" not in model_io.read_info(_MODEL_PATH.value):
        if not _DATASET.value:
            raise UserError(f"{_MODEL_PATH.value} has no model_info.json: give --dataset=NAME "
                            "(the dataset whose raw images it classifies)")
        raw_shape = datasets.IMAGE_SHAPES[datasets.check_dataset_name(_DATASET.value)]
    classifier = model_io.load_classifier(_MODEL_PATH.value, raw_shape)
    if classifier.model is None:
        raise UserError(f"{_MODEL_PATH.value} is a SavedModel already; give the run directory "
                        "or the .keras file")
    try:
        os.makedirs(_OUT.value, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out={_OUT.value}: {e.strerror or e}") from None
    result = export.export_classifier(classifier, _OUT.value, _TFLITE.value)
    for key in ("saved_model", "tflite"):
        if key in result:
            print(f"wrote {result[key]} (largest probability difference to Keras on random "
                  f"images: {result[key + '_max_abs_diff']:.2e})")


if __name__ == "__main__":
    _cli.run(main)
