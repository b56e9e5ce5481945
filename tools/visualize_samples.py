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
from absl import flags

from zskd_tf.errors import UserError
from zskd_tf.zskd import figures

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


def main():
    if not _OUT.value:
        raise UserError("--out=FILE.png is required")
    path = _npz_path()
    figures.write_png(_OUT.value, figures.synthetic_grid(path, _PER_CLASS.value,
                                                         _MAX_CLASSES.value, _TILE.value))
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    _cli.run(main)
