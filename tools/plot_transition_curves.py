"""Draw the mean transition curves of transition_curves runs to a PNG (ZSKT Fig. 4 style).

    python tools/plot_transition_curves.py --run_dir=RUN[,RUN2,...] --out=FILE.png [--max_step=30]

One panel per run directory (left to right): the mean over all N x (C-1) curves of the target
class's probability under the attacked network (A, the student) and under the teacher (B),
each with a band of +-2 standard errors (std / sqrt(N x (C-1))), for steps 0..--max_step.
Drawn with OpenCV only (no TensorFlow import, so it starts quickly).
"""
import _cli
from absl import flags

from zskd_tf.errors import UserError
from zskd_tf.zskt.transition_figure import plot

_RUN_DIR = flags.DEFINE_list("run_dir", None, "transition_curves run directories, one panel each.")
_OUT = flags.DEFINE_string("out", None, "The PNG file to write.")
_MAX_STEP = flags.DEFINE_integer("max_step", 30, "Last step shown (the paper shows 0..30).",
                                 lower_bound=1)


def main():
    if not _RUN_DIR.value or not _OUT.value:
        raise UserError("usage: plot_transition_curves.py --run_dir=RUN[,RUN2] --out=FILE.png")
    plot(_RUN_DIR.value, _OUT.value, _MAX_STEP.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    _cli.run(main)
