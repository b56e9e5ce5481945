"""Image-steps per second of ZSKD data-impression synthesis (images x Adam steps / s).

    python bench/synthesis_throughput.py [--teacher=lenet5] [--batch_sizes=100,250,500,1000]
        [--steps=200] [--repeats=3] [--compare]

Times ``ImpressionSynthesizer.optimise`` (the loop data_impressions runs per batch: T=20
cross-entropy to Dirichlet targets, Adam, clipping to [0, 1]) on a random-weight teacher of the
zoo (the speed does not depend on the weights) after a warm-up batch, median of --repeats.
--compare runs each batch size with the plain and the space-to-depth first-conv input
gradient (--fast_input_gradient) and prints one table.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("teacher", "lenet5", "Zoo model used as the teacher (random weights).")
flags.DEFINE_list("batch_sizes", ["100", "250", "500", "1000"], "Synthesis batch sizes.")
flags.DEFINE_integer("steps", 200, "Adam steps per timed batch.")
flags.DEFINE_integer("repeats", 3, "Timed batches per setting (the median is reported).")
flags.DEFINE_boolean("fast_input_gradient", True, "Space-to-depth first-conv input gradient.")
flags.DEFINE_boolean("compare", False, "Both --fast_input_gradient settings, one table.")
FLAGS = flags.FLAGS


def image_steps_per_second(batch_size: int, fast: bool) -> float:
    import keras
    import numpy as np

    from zskd_tf.models import registry
    from zskd_tf.trainers.impressions import ImpressionSynthesizer

    keras.utils.set_random_seed(0)
    shape = registry.default_input_shape(FLAGS.teacher)
    teacher = registry.build_model(FLAGS.teacher, input_shape=shape)
    synth = ImpressionSynthesizer(teacher, (batch_size, *shape), 20.0, (0.0, 1.0),
                                  fast_input_gradient=fast)
    synth.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8))
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 1, (batch_size, *shape)).astype(np.float32)
    targets = rng.dirichlet(np.ones(10), batch_size).astype(np.float32)
    synth.optimise(x0, targets, 10)  # warm-up: tracing
    rates = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        synth.optimise(x0, targets, FLAGS.steps)
        rates.append(batch_size * FLAGS.steps / (time.perf_counter() - start))
    return statistics.median(rates)


def main(_):
    settings = (False, True) if FLAGS.compare else (FLAGS.fast_input_gradient,)
    print(f"{FLAGS.teacher}, {FLAGS.steps} steps per batch, median of {FLAGS.repeats}: "
          "image-steps/s")
    print(f"{'batch':>6}" + "".join(f"{'fast' if s else 'plain':>10}" for s in settings))
    for batch_size in map(int, FLAGS.batch_sizes):
        rates = [image_steps_per_second(batch_size, fast) for fast in settings]
        print(f"{batch_size:>6}" + "".join(f"{r:>10.0f}" for r in rates), flush=True)


if __name__ == "__main__":
    app.run(main)
