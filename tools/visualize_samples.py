"""Draw a grid of synthetic images (data impressions or any synthetic .npz) as a PNG.

    python tools/visualize_samples.py --run_dir=runs/zskd/fashion_mnist/impressions --out=di.png
    python tools/visualize_samples.py --npz=some/synthetic.npz --out=samples.png --per_class=4

One row per class (the images' label ``y``; for data impressions, the teacher's argmax), up to
``--per_class`` images each. Tile titles are the two most probable classes of the image's
``soft_targets`` with their probabilities (only the class of ``y`` when there are none).
Images are un-normalised to [0, 1] with the file's input spec (zskd_tf.data.preprocess.unprocess).
"""
import glob
import os

import _cli
import numpy as np
from absl import flags

from zskd_tf.data import preprocess as pp
from zskd_tf.data import synthetic
from zskd_tf.errors import UserError
from zskd_tf.zskd import figures
from zskd_tf.data.datasets import class_names as dataset_class_names

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A run directory holding one synthetic .npz.")
_NPZ = flags.DEFINE_string("npz", None, "A synthetic-dataset .npz file (instead of --run_dir).")
_OUT = flags.DEFINE_string("out", None, "The PNG to write.")
_PER_CLASS = flags.DEFINE_integer("per_class", 8, "Images per class row.", lower_bound=1)
_MAX_CLASSES = flags.DEFINE_integer("max_classes", 20, "Draw at most this many class rows.",
                                    lower_bound=1)
_TILE = flags.DEFINE_integer("tile", 112, "Tile size in pixels.", lower_bound=16)


def _npz_path() -> str:
    if bool(_RUN_DIR.value) == bool(_NPZ.value):
        raise UserError("give exactly one of --run_dir and --npz")
    if _NPZ.value:
        return _NPZ.value
    if not os.path.isdir(_RUN_DIR.value):
        raise UserError(f"--run_dir={_RUN_DIR.value} is not a directory")
    found = sorted(glob.glob(os.path.join(_RUN_DIR.value, "*.npz")))
    if len(found) != 1:
        names = ", ".join(map(os.path.basename, found)) or "none: is the run finished?"
        raise UserError(f"--run_dir={_RUN_DIR.value} holds {len(found)} .npz files ({names}); "
                        "name one with --npz")
    return found[0]


def _titles(index: int, data, names) -> list:
    if data.soft_targets is None:
        return [f"{names[data.y[index]]} (label)"]
    probabilities = data.soft_targets[index]
    return [f"{names[c]} {probabilities[c]:.2f}" for c in np.argsort(-probabilities)[:2]]


def main():
    if not _OUT.value:
        raise UserError("--out=FILE.png is required")
    path = _npz_path()
    data = synthetic.load_synthetic(path)
    names = data.meta.get("extra", {}).get("class_names") or dataset_class_names(data.dataset)
    images = pp.unprocess(data.x, data.input_spec).numpy()
    tiles = []
    for c in [c for c in range(data.num_classes) if np.any(data.y == c)][:_MAX_CLASSES.value]:
        chosen = np.flatnonzero(data.y == c)[:_PER_CLASS.value]
        row = [(images[i], _titles(i, data, names)) for i in chosen]
        tiles += row + [(None, [])] * (_PER_CLASS.value - len(row))
    if not tiles:
        raise UserError("the file holds no images")
    described = data.meta.get("extra", {}).get("soft_targets", "soft targets")
    title = (f"{os.path.basename(path)}: rows by label y; titles = top-2 of "
             f"{described if data.soft_targets is not None else 'y'}")
    figures.write_png(_OUT.value, figures.image_grid(tiles, _PER_CLASS.value, _TILE.value,
                                                     title=title))
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    _cli.run(main)
