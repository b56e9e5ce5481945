"""Image-steps per second of ZSKD data-impression synthesis (images x Adam steps / s).

    python bench/synthesis_throughput.py [--teacher=lenet5] [--batch_sizes=100,250,500,1000]
        [--steps=200] [--repeats=3] [--bfloat16_input_gradient] [--compare]

Times ``ImpressionSynthesizer.optimise`` (the loop data_impressions runs per batch: T=20
cross-entropy to Dirichlet targets, Adam, clipping to [0, 1]) on a random-weight teacher of the
zoo (the speed does not depend on the weights) after a warm-up batch, median of --repeats.
--compare runs each batch size with the plain input gradient, the space-to-depth first-conv
input gradient (--fast_input_gradient) and that with the convolutions' input gradients in
bfloat16 (--bfloat16_input_gradient), interleaved repeat by repeat (the host's speed drifts), and
prints one table.
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
flags.DEFINE_boolean("bfloat16_input_gradient", False,
                     "The convolutions' input gradients in bfloat16.")
flags.DEFINE_boolean("compare", False,
                     "plain, fast and fast + bfloat16 input gradients, one table.")
FLAGS = flags.FLAGS


SETTINGS = {"plain": (False, False), "fast": (True, False), "bfloat16": (False, True),
            "fast+bf16": (True, True)}


def timer(batch_size: int, fast: bool, bfloat16: bool):
    """A function that times one batch of --steps steps and returns its image-steps/s."""
    import keras
    import numpy as np

    from zskd_tf.models import registry
    from zskd_tf.trainers.impressions import ImpressionSynthesizer

    keras.utils.set_random_seed(0)
    shape = registry.default_input_shape(FLAGS.teacher)
    teacher = registry.build_model(FLAGS.teacher, input_shape=shape)
    synth = ImpressionSynthesizer(teacher, (batch_size, *shape), 20.0, (0.0, 1.0),
                                  fast_input_gradient=fast, bfloat16_input_gradient=bfloat16)
    synth.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-8))
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 1, (batch_size, *shape)).astype(np.float32)
    targets = rng.dirichlet(np.ones(10), batch_size).astype(np.float32)
    synth.optimise(x0, targets, 10)  # warm-up: tracing

    def time_one_batch() -> float:
        start = time.perf_counter()
        synth.optimise(x0, targets, FLAGS.steps)
        return batch_size * FLAGS.steps / (time.perf_counter() - start)

    return time_one_batch


def main(_):
    if FLAGS.compare:
        names = ["plain", "fast", "fast+bf16"]
    else:
        names = [{v: k for k, v in SETTINGS.items()}[
            (FLAGS.fast_input_gradient, FLAGS.bfloat16_input_gradient)]]
    print(f"{FLAGS.teacher}, {FLAGS.steps} steps per batch, median of {FLAGS.repeats}: "
          "image-steps/s")
    print(f"{'batch':>6}" + "".join(f"{name:>11}" for name in names))
    for batch_size in map(int, FLAGS.batch_sizes):
        timers = [timer(batch_size, *SETTINGS[name]) for name in names]
        rates = [[] for _ in names]
        for _ in range(FLAGS.repeats):
            for rate, time_one_batch in zip(rates, timers):
                rate.append(time_one_batch())
        print(f"{batch_size:>6}" + "".join(f"{statistics.median(r):>11.0f}" for r in rates),
              flush=True)


if __name__ == "__main__":
    app.run(main)
