"""Is a student's test accuracy held back by its BatchNorm running statistics, or by its
weights? Scores a finished run's student three ways on the real test split: as saved (running
statistics), with the batch statistics of 500 test images at a time, and after re-estimating
its running statistics on real training images (a diagnostic that uses real data: never part
of a data-free method). Run by hand.

    python bench/bn_statistics_check.py RUN_DIR [--batches=60]
"""
import sys

import numpy as np
import tensorflow as tf

from zskd_tf import model_io
from zskd_tf.data import batch_streams, datasets
from zskd_tf.data import preprocess as pp


def _accuracy(model, spec, data, training):
    correct = [np.argmax(model(x, training=training).numpy(), -1) == y.numpy().reshape(-1)
               for x, y in batch_streams.eval_batches(data.test_x, data.test_y, spec, 500)]
    return float(np.mean(np.concatenate(correct)))


def main(run_dir, batches=60, batch_size=128):
    student = model_io.load_classifier(run_dir)
    model, spec = student.model, student.spec
    data = datasets.load_dataset(student.info["dataset"])
    print(f"running statistics as saved: {_accuracy(model, spec, data, False):.4f}")
    print(f"batch statistics of 500 test images: {_accuracy(model, spec, data, True):.4f}")
    rng = np.random.default_rng(0)
    for _ in range(batches):  # train-mode passes move the running statistics (momentum 0.9)
        idx = rng.choice(len(data.train_x), batch_size, replace=False)
        model(pp.preprocess(tf.constant(data.train_x[idx], tf.float32), spec), training=True)
    print(f"running statistics re-estimated on {batches * batch_size} training images: "
          f"{_accuracy(model, spec, data, False):.4f}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--batches=")]
    given = [int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--batches=")]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], *given)
