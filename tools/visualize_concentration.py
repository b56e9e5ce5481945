"""Draw a ZSKD concentration matrix (``concentration.npy``) as a heat map PNG.

    python tools/visualize_concentration.py --run_dir=runs/zskd/fashion_mnist/impressions \
        --out=concentration.png

Rows are the classes' Dirichlet concentrations alpha^k (row-wise min-max normalised class
similarity of the teacher's final Dense layer: docs/methods/zskd.md, "Concentration matrix");
class names label both axes (from the run's result.json, or --class_names; indices otherwise).
Colours are viridis over [0, 1].
"""
import json
import os

import _cli
import numpy as np
from absl import flags

from zskd_tf.errors import UserError
from zskd_tf.zskd import figures

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A data_impressions run directory.")
_NPY = flags.DEFINE_string("npy", None, "A concentration .npy file (instead of --run_dir).")
_OUT = flags.DEFINE_string("out", None, "The PNG to write.")
_CLASS_NAMES = flags.DEFINE_list("class_names", None, "Class names (default: the run's).")
_TITLE = flags.DEFINE_string("title", "Concentration matrix (row k = alpha of class k)",
                             "Title above the heat map ('' for none).")


def _matrix_path() -> str:
    if bool(_RUN_DIR.value) == bool(_NPY.value):
        raise UserError("give exactly one of --run_dir and --npy")
    path = _NPY.value or os.path.join(_RUN_DIR.value, "concentration.npy")
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist" + (" (is --run_dir a data_impressions run?)"
                                                    if _RUN_DIR.value else ""))
    return path


def _load_matrix(path: str) -> np.ndarray:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable .npy file ({e})") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.isfinite(matrix).all():
        raise UserError(f"{path} holds a {matrix.shape} array; expected a finite K x K matrix")
    return matrix


def _class_names(k: int, path: str) -> list:
    names = _CLASS_NAMES.value
    if not names:
        result = os.path.join(os.path.dirname(path), "result.json")
        if os.path.exists(result):
            with open(result, encoding="utf-8") as f:
                names = json.load(f).get("class_names")
    names = names or [str(i) for i in range(k)]
    if len(names) != k:
        raise UserError(f"{len(names)} class names for a {k} x {k} matrix")
    return names


def main():
    if not _OUT.value:
        raise UserError("--out=FILE.png is required")
    path = _matrix_path()
    matrix = _load_matrix(path)
    figures.write_png(_OUT.value, figures.heatmap(matrix, _class_names(len(matrix), path),
                                                  _TITLE.value))
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    _cli.run(main)
