"""Throughput of zskd_tf's ``train`` step versus plain ``keras.Model.fit``
(same model, data, batch).

    python bench/train_throughput.py [--model=lenet5] [--batch_size=512] [--epochs=3] [--repeats=3]

Both fit the same tf.data pipeline (Fashion-MNIST through zskd_tf.data.batch_streams) for the
same number of steps; runs alternate (ours, plain, ours, plain, ...) after one warm-up epoch
each, and the table reports the median images/s of each and their ratio.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from absl import app, flags  # noqa: E402

from zskd_tf.data import batch_streams, datasets  # noqa: E402
from zskd_tf.data import preprocess as pp  # noqa: E402
from zskd_tf.models import registry  # noqa: E402
from zskd_tf.trainers import recipes  # noqa: E402
from zskd_tf.trainers.classifier import ClassifierTrainer  # noqa: E402

flags.DEFINE_string("model", "lenet5", "Architecture.")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset.")
flags.DEFINE_integer("batch_size", 512, "Batch size.")
flags.DEFINE_integer("epochs", 3, "Timed epochs per repeat.")
flags.DEFINE_integer("repeats", 3, "Alternating repeats of each contender.")
FLAGS = flags.FLAGS


def _ours(model, recipe):
    trainer = ClassifierTrainer(model, weight_decay=recipe.weight_decay)
    trainer.compile(optimizer=recipes.make_optimizer(recipe, 10**6))
    return trainer


def _plain(model, recipe):
    model.compile(optimizer=recipes.make_optimizer(recipe, 10**6),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(_):
    raw = datasets.load_dataset(FLAGS.dataset)
    family = registry.model_family(FLAGS.model)
    shape = registry.default_input_shape(FLAGS.model, raw.image_shape[-1])
    spec = pp.input_spec_for(FLAGS.dataset, family, shape)
    recipe = recipes.default_recipe(FLAGS.model, FLAGS.dataset)
    spe = batch_streams.steps_per_epoch(len(raw.train_x), FLAGS.batch_size)
    contenders = {"zskd_tf train_step": _ours, "plain keras fit": _plain}
    fitters = {name: make(registry.build_model(FLAGS.model, input_shape=shape), recipe)
               for name, make in contenders.items()}
    rates = {name: [] for name in contenders}
    for name, fitter in fitters.items():  # warm-up: tracing and first epoch
        ds = batch_streams.train_batches(raw.train_x, raw.train_y, spec, FLAGS.batch_size, 0, 0,
                                         spe)
        fitter.fit(ds, epochs=1, steps_per_epoch=spe, verbose=0)
    for _ in range(FLAGS.repeats):
        for name, fitter in fitters.items():
            steps = spe * FLAGS.epochs
            ds = batch_streams.train_batches(raw.train_x, raw.train_y, spec, FLAGS.batch_size, 0, 0,
                                        steps)
            start = time.perf_counter()
            fitter.fit(ds, epochs=FLAGS.epochs, steps_per_epoch=spe, verbose=0)
            rates[name].append(steps * FLAGS.batch_size / (time.perf_counter() - start))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ours, plain = medians["zskd_tf train_step"], medians["plain keras fit"]
    print(f"{FLAGS.model} on {FLAGS.dataset}, batch {FLAGS.batch_size}, "
          f"{FLAGS.epochs} epochs x {FLAGS.repeats} repeats, {os.cpu_count()} CPU cores")
    print("| contender | images/s (median) | runs |\n|---|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {medians[name]:.0f} | {', '.join(f'{v:.0f}' for v in r)} |")
    print(f"ratio ours/plain = {ours / plain:.3f}")


if __name__ == "__main__":
    app.run(main)
