"""Print the trainable parameters and MACs per sample of zoo models, one row per combination.

    python tools/count_params.py --model=wrn-40-2 --conv=Conv,G8B2 --block=basic,bottle

MACs follow docs/methods/kd_at_moonshine.md, "Counting parameters and multiply-accumulates"
(see zskd_tf/models/complexity.py).
"""
import contextlib
import itertools
import os

import _cli
from absl import flags

from zskd_tf.errors import UserError  # noqa: E402


@contextlib.contextmanager
def _stderr_silenced():
    """Mute file descriptor 2: TF 2.21 logs its oneDNN notice on import whatever
    TF_CPP_MIN_LOG_LEVEL says."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with _stderr_silenced():
    import tensorflow  # noqa: E402, F401

from zskd_tf.models import complexity, registry, wrn  # noqa: E402

flags.DEFINE_list("model", ["wrn-40-2"], "Model names, comma separated.")
flags.DEFINE_list("conv", ["Conv"], "WRN convolution types, comma separated.")
flags.DEFINE_list("block", ["basic"], "WRN block types (basic, bottle), comma separated.")
flags.DEFINE_integer("num_classes", 10, "Number of classes.")
flags.DEFINE_list("input_shape", None, "H,W,C (default: the model's own).")
FLAGS = flags.FLAGS


def _input_shape():
    if FLAGS.input_shape is None:
        return None
    try:
        return tuple(int(size) for size in FLAGS.input_shape)
    except ValueError:
        raise UserError(f"--input_shape must be three integers H,W,C, got "
                        f"{','.join(FLAGS.input_shape)!r}") from None


def main():
    rows = []
    for model, conv, block in itertools.product(FLAGS.model, FLAGS.conv, FLAGS.block):
        net = registry.build_model(model, num_classes=FLAGS.num_classes,
                                   input_shape=_input_shape(), conv=conv, block=block)
        is_wrn = registry.model_family(model) == "wrn"
        rows.append((model.strip().lower(),
                     wrn.parse_conv(conv).name if is_wrn else "-",
                     wrn.parse_block(block) if is_wrn else "-",
                     f"{complexity.count_trainable_params(net):,}",
                     f"{complexity.count_macs(net):,}"))
    table = [("model", "conv", "block", "params", "MACs"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths)),
                         *(cell.rjust(w) for cell, w in zip(row[3:], widths[3:]))]))


if __name__ == "__main__":
    _cli.run(main)
