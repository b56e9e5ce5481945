"""Trainer, recipes and the resumable data pipeline (in-process, tiny shapes)."""
import glob
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import two_cpu_strategy
from zskd_tf.data import batch_streams
from zskd_tf.data.preprocess import InputSpec
from zskd_tf.runtime import fitting
from zskd_tf.runtime.checkpoints import Checkpointer
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.trainers import recipes
from zskd_tf.trainers.classifier import ClassifierTrainer, InputPerturbation
from zskd_tf.trainers.weight_average import WeightAverage

SPEC = InputSpec(height=8, width=8, channels=1, resize="none", mean=(0.0,), std=(1.0,),
                 raw_height=8, raw_width=8)


def _data(n=37, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 3, n)


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_resumed_stream_equals_the_uninterrupted_one():
    x, y = _data()
    full = _batches(batch_streams.train_batches(x, y, SPEC, 10, seed=3, start_step=0, num_steps=12))
    tail = _batches(batch_streams.train_batches(x, y, SPEC, 10, seed=3, start_step=7, num_steps=5))
    for (xa, ya), (xb, yb) in zip(full[7:], tail):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_each_epoch_is_a_permutation_and_seeds_differ():
    x, y = _data(n=20)
    x = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1) * np.ones((1, 8, 8, 1), np.uint8)
    spec = SPEC
    first = _batches(batch_streams.train_batches(x, y, spec, 5, seed=1, start_step=0, num_steps=4))
    seen = np.concatenate([b[0][:, 0, 0, 0] for b in first])
    assert sorted(np.round(seen * 255).astype(int)) == list(range(20))
    other = _batches(batch_streams.train_batches(x, y, spec, 5, seed=2, start_step=0, num_steps=4))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_batches_larger_than_the_dataset_are_full():
    x, y = _data(n=7)
    batches = _batches(batch_streams.train_batches(x, y, SPEC, 16, seed=0, start_step=0,
                                              num_steps=3))
    assert [b[0].shape[0] for b in batches] == [16, 16, 16]


def test_recipes_and_flag_overrides():
    cfg = types.SimpleNamespace(optimizer=None, learning_rate=0.05, batch_size=None, epochs=3,
                                momentum=None, weight_decay=None, lr_decay=None,
                                lr_milestones=None)
    r = recipes.resolve(cfg, "wrn-16-1", "cifar10")
    assert (r.optimizer, r.learning_rate, r.epochs, r.weight_decay) == ("sgd", 0.05, 3, 5e-4)
    assert recipes.default_recipe("wrn-40-2", "svhn").epochs == 100
    assert recipes.default_recipe("lenet5", "mnist").batch_size == 512
    assert recipes.default_recipe("hinton1200", "mnist").epochs == 10
    schedule = recipes.learning_rate_schedule(r, 100)
    assert [float(schedule(s)) for s in (0, 29, 31, 61, 81)] == pytest.approx(
        [0.05, 0.05, 0.01, 0.002, 0.0004])


def _tiny_classifier():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3)(inputs)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


def _fitted(strategy, x, y, steps=1, **trainer_options):
    """A tiny classifier's trainer after ``steps`` SGD steps on (x, y), and its first loss."""
    with strategy.scope():
        trainer = ClassifierTrainer(_tiny_classifier(), **trainer_options)
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        trainer.compile(optimizer=optimizer)
        optimizer.build(trainer.classifier.trainable_variables)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x) // steps)
    return trainer, trainer.fit(ds, epochs=1, verbose=0).history["loss"][0]


def _one_step(strategy, x, y):
    trainer, loss = _fitted(strategy, x, y, weight_decay=5e-4)
    return [w.copy() for w in trainer.classifier.get_weights()], loss


def _on_one_and_two_replicas(train, seed):
    """``train(strategy, x, y)`` on one device and on two replicas, with the same batch."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    return (train(tf.distribute.OneDeviceStrategy("/cpu:0"), x, y),
            train(two_cpu_strategy(), x, y))


def _assert_same_weights(one, two):
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_two_replicas_take_the_same_step_as_one():
    (one, loss_one), (two, loss_two) = _on_one_and_two_replicas(_one_step, seed=0)
    # (No BatchNorm here: its batch statistics are per replica, as in PyTorch DataParallel.)
    _assert_same_weights(one, two)
    assert loss_one == pytest.approx(loss_two, rel=1e-5)


def _perturbing_trainer(**perturbation):
    model = _tiny_classifier()
    trainer = ClassifierTrainer(model, perturbation=InputPerturbation(
        value_range=(np.zeros(1, np.float32), np.ones(1, np.float32)), **perturbation))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    return trainer


def test_input_noise_has_the_asked_spread_and_follows_the_step():
    trainer = _perturbing_trainer(noise_std=0.3)
    x = tf.fill((64, 8, 8, 1), 0.5)
    y = tf.zeros(64, tf.int32)
    first, again = trainer.perturb(x, y).numpy(), trainer.perturb(x, y).numpy()
    np.testing.assert_array_equal(first, again)  # a function of (seed, step): resumable
    assert np.std(first - 0.5) == pytest.approx(0.3, rel=0.05)
    trainer.optimizer.iterations.assign(1)
    assert not np.allclose(trainer.perturb(x, y).numpy(), first)
    plain = _perturbing_trainer()
    assert not plain.perturbation  # none by default: perturb hands the images on as they are
    np.testing.assert_array_equal(plain.perturb(x, y).numpy(), x.numpy())


def test_adversarial_training_images_are_l2_attacks_within_eps_and_range():
    eps = 0.5
    trainer = _perturbing_trainer(adversarial_eps=eps, adversarial_steps=4)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0.1, 0.9, (16, 8, 8, 1)), tf.float32)
    y = tf.constant(rng.integers(0, 3, 16))
    attacked = trainer.perturb(x, y)
    distance = np.sqrt(np.sum((attacked.numpy() - x.numpy()) ** 2, axis=(1, 2, 3)))
    assert np.all(distance <= eps * (1 + 1e-4)) and np.mean(distance) > eps / 2
    assert attacked.numpy().min() >= 0 and attacked.numpy().max() <= 1
    model = trainer.classifier
    clean_loss = float(keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
                       .numpy().mean())
    attacked_loss = float(keras.losses.sparse_categorical_crossentropy(
        y, model(attacked), from_logits=True).numpy().mean())
    assert attacked_loss > clean_loss  # the attack climbs the loss
    logs = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), verbose=0).history
    assert np.isfinite(logs["loss"][0])


def _bn_classifier():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((4,))
    h = keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def test_weight_average_follows_its_formula_for_every_float_weight():
    model = _bn_classifier()
    average = WeightAverage(model, momentum=0.5)
    assert len(average.averages) == len(model.weights) == 8  # BN's moving statistics too
    start = [w.copy() for w in model.get_weights()]
    expected = start
    for step in (1, 2, 3):
        new = [w + step for w in start]
        model.set_weights(new)
        average.update(step)
        m = min(0.5, (1 + step) / (10 + step))  # 2/11, 3/12, then 0.5
        expected = [m * e + (1 - m) * n for e, n in zip(expected, new)]
    for a, e in zip(average.averages, expected):
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-6)
    average.copy_to_model()
    for w, e in zip(model.get_weights(), expected):
        np.testing.assert_allclose(w, e, rtol=1e-6)
    with pytest.raises(ValueError):
        WeightAverage(model, momentum=1.0)


def test_weight_average_survives_a_checkpoint(tmp_path):
    model = _bn_classifier()
    average = WeightAverage(model, momentum=0.9)
    model.set_weights([w + 1 for w in model.get_weights()])
    average.update(5)
    path = tf.train.Checkpoint(weight_average=average).write(str(tmp_path / "ckpt"))
    fresh = WeightAverage(_bn_classifier(), momentum=0.9)
    tf.train.Checkpoint(weight_average=fresh).read(path).assert_consumed()
    for a, b in zip(average.averages, fresh.averages):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpointer_leaves_out_a_trackable_given_as_none(tmp_path):
    """Runs without a weight average pass ``weight_average=None``: their checkpoints hold the
    model alone, as before the average existed, and restore into the same layout."""
    model = _bn_classifier()
    model.set_weights([w + 1 for w in model.get_weights()])  # not what a fresh model holds
    Checkpointer(str(tmp_path / "ckpt"), model=model, weight_average=None).save(1)
    (prefix,) = [p[:-len(".index")] for p in glob.glob(str(tmp_path / "ckpt" / "*.index"))]
    names = [name for name, _ in tf.train.list_variables(prefix)]
    assert not any("weight_average" in name for name in names)
    assert any(name.startswith("model/") for name in names)
    fresh = _bn_classifier()
    assert Checkpointer(str(tmp_path / "ckpt"), model=fresh, weight_average=None).restore()
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def _averaged_steps(strategy, x, y):
    trainer, _ = _fitted(strategy, x, y, steps=4, ema_momentum=0.9)
    final = [w.copy() for w in trainer.classifier.get_weights()]
    trainer.weight_average.copy_to_model()
    return final, [w.copy() for w in trainer.classifier.get_weights()]


def test_two_replicas_keep_the_same_weight_average_as_one():
    (final_one, average_one), (_, average_two) = _on_one_and_two_replicas(_averaged_steps,
                                                                          seed=1)
    _assert_same_weights(average_one, average_two)
    # 4 steps: the average lies behind the final weights, not on them.
    assert not all(np.allclose(f, a) for f, a in zip(final_one, average_one))


# --- a run whose score collapsed ------------------------------------------------------------

def _records(*scores):
    return [{"epoch": e, "step": 10 * e, "val_accuracy": a} for e, a in enumerate(scores, 1)]


def test_collapse_warning_names_the_best_and_the_last_score():
    # The shape of the fully connected Hinton teacher on Fashion-MNIST at the paper's recipe.
    collapsed = _records(0.764, 0.787, 0.734, 0.612, 0.394)
    assert fitting.collapse_warning(collapsed) == (
        "the validation accuracy fell from 78.70% (epoch 2) to 39.40% (epoch 5), and the model "
        "kept is the last one: training may have diverged (a lower learning rate, or a recipe "
        "made for this model, may help)")
    assert fitting.collapse_warning(_records(0.80, 0.85, 0.74)) is None  # 11 points: noise
    assert fitting.collapse_warning(_records(0.95, 0.79)) is None  # 16 points, 0.83 of the best
    assert fitting.collapse_warning(_records(0.30, 0.60, 0.44)) is not None  # 0.73 of it
    assert fitting.collapse_warning([{"epoch": 1, "loss": 2.0}]) is None  # nothing scored
    assert fitting.collapse_warning([]) is None


def test_fit_resumable_prints_the_collapse_warning_after_training(tmp_path, capsys):
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    for record in _records(0.9, 0.2):
        run.append_metrics(record)
    model = _bn_classifier()
    model.compile(optimizer="sgd", loss="mse")
    done = keras.Variable(20, dtype="int64")  # the run is at its last step: nothing to train
    fitting.fit_resumable(model, run, Checkpointer(str(tmp_path / "ckpt"), model=model), None,
                          total_steps=20, steps_per_epoch=10, batch_size=4, step_variable=done)
    assert "warning: the validation accuracy fell from 90.00% (epoch 1) to 20.00% (epoch 2)" \
        in capsys.readouterr().err
    assert [r["epoch"] for r in run.metrics()] == [1, 2]


def test_a_training_runs_records_carry_what_the_collapse_warning_reads(lenet5_teacher):
    records = RunDir(lenet5_teacher).metrics()
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(isinstance(r["val_accuracy"], float) for r in records)
    assert fitting.collapse_warning(records) is None
