"""ZSKT: generator, one outer iteration (losses, gradients, schedules, clipping), replicas,
transition curves, the zero_shot / transition_curves CLI (seeds, resume after kill), the plot."""
import json
import math
import os
import signal
import subprocess
import sys
import time
import types

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from helpers import (
    FASHION_MNIST_DIR,
    REPO,
    assert_user_error,
    cli_env,
    parsed_flags,
    read_json,
    run_cli,
    two_cpu_strategy,
)
from zskd_tf import losses, model_io
from zskd_tf.data import batch_streams, datasets
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.models import complexity, registry
from zskd_tf.models import layers as layers_lib
from zskd_tf.models import taps as taps_lib
from zskd_tf.procedures import transition_curves
from zskd_tf.procedures import zero_shot as zero_shot_procedure
from zskd_tf.procedures.common import model_info
from zskd_tf.runtime import devices
from zskd_tf.trainers import classifier, input_gradients
from zskd_tf.zskt import generator as generator_lib
from zskd_tf.zskt import trainer as zs
from zskd_tf.zskt import transition_attack as tc
from zskd_tf.zskt.adversarial_losses import class_imbalance, teacher_uncertainty
from zskd_tf.zskt.config import WRN_TAPS, ZeroShotConfig

PLOT_TOOL = os.path.join(REPO, "tools", "plot_transition_curves.py")
SHAPE = (16, 16, 1)  # in-process tests: WRN-10-1s on 16x16x1 (taps 16x16, 8x8, 4x4)
Z_DIM = 8


# --- generator ---------------------------------------------------------------------------------

def test_generator_has_the_reference_size_and_init():
    g = generator_lib.generator((32, 32, 3), z_dim=100)
    # The count of docs/methods/zskt.md, "Generator".
    assert complexity.count_trainable_params(g) == 1_051_145
    assert g.output_shape == (None, 32, 32, 3)
    assert generator_lib.generator((32, 32, 1), z_dim=100).output_shape == (None, 32, 32, 1)
    for layer, fan_in in (("linear", 100), ("conv1", 9 * 128), ("conv2", 9 * 128),
                          ("conv3", 9 * 64)):
        kernel, bias = (w.numpy() for w in g.get_layer(layer).weights)
        bound = 1 / math.sqrt(fan_in)  # PyTorch default: U(+-1/sqrt(fan_in)) for both
        for w in (kernel, bias):
            assert np.abs(w).max() <= bound, layer
            if w.size > 50:  # and they fill the interval
                assert np.abs(w).max() > 0.9 * bound, layer
    with pytest.raises(UserError, match="multiples of 4"):
        generator_lib.generator((30, 32, 3))
    # --generator_width=w: seed and conv1 w channels, conv2 w/2; the reference is w = 128.
    w = 32
    narrow = generator_lib.generator((32, 32, 1), z_dim=100, width=w)
    want = ((100 + 1) * w * 64 + 2 * w + 9 * w * w + w + 2 * w + 9 * w * w // 2 + w // 2
            + 2 * (w // 2) + 9 * (w // 2) + 1 + 2)
    assert complexity.count_trainable_params(narrow) == want
    assert narrow.get_layer("conv2").kernel.shape == (3, 3, w, w // 2)
    with pytest.raises(UserError, match="width"):
        generator_lib.generator((32, 32, 1), width=1)


def test_generator_layers_keep_the_names_saved_generators_load_by():
    # generator.keras files name their custom layers by registered name, not by module: the
    # layers live in models/layers.py (which model_io imports) and must keep these names.
    for cls in (layers_lib.BatchStatNorm, layers_lib.RangeSquash):
        assert keras.saving.get_registered_name(cls) == f"zskd_tf>{cls.__name__}"
        assert keras.saving.get_registered_object(f"zskd_tf>{cls.__name__}") is cls


def test_generator_range_option_squashes_into_the_teacher_range(tmp_path):
    low, high = np.array([-0.5, 0.0, 1.0]), np.array([0.5, 2.0, 4.0])
    keras.utils.set_random_seed(0)
    free = generator_lib.generator((8, 8, 3), z_dim=4)
    keras.utils.set_random_seed(0)
    squashed = generator_lib.generator((8, 8, 3), z_dim=4, output_range=(low, high))
    assert complexity.count_trainable_params(squashed) == complexity.count_trainable_params(free)
    z = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32) * 10
    y_free, y = free(z).numpy(), squashed(z).numpy()
    np.testing.assert_allclose(y, low + (high - low) / (1 + np.exp(-y_free)), rtol=1e-5,
                               atol=1e-6)
    assert (y >= low).all() and (y <= high).all() and y_free.min() < low.min()
    path = str(tmp_path / "g.keras")
    squashed.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(z).numpy(), y, rtol=1e-6)


def test_generator_always_normalises_with_batch_statistics():
    g = generator_lib.generator(SHAPE, z_dim=Z_DIM)
    z = np.random.default_rng(0).normal(size=(16, Z_DIM)).astype(np.float32)
    out = g(z, training=False).numpy()  # inference mode too: the last BN uses batch stats
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
    z2 = z.copy()
    z2[1:] *= 3.0  # changing the other samples changes sample 0's image
    assert not np.allclose(g(z2, training=False).numpy()[0], out[0], atol=1e-4)
    leaky = g.get_layer("lrelu1").get_config()["negative_slope"]
    assert leaky == pytest.approx(0.2)


# --- schedules and noise ---------------------------------------------------------------------

def test_cosine_is_per_outer_iteration():
    schedule = zs.IterationCosine(2e-3, iterations=4, steps_per_iteration=3)
    got = [float(schedule(step)) for step in range(12)]
    want = [2e-3 * (1 + math.cos(math.pi * (step // 3) / 4)) / 2 for step in range(12)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The reference's logged student lr after 800 of 80k iterations (docs/methods/zskt.md,
    # "Optimisers and schedule").
    reference = zs.IterationCosine(2e-3, 80_000, 10)
    assert float(reference(8000)) == pytest.approx(0.0019995066, rel=1e-6)
    # stop_iteration: the same rates before it, exactly 0 from it on.
    stopped = zs.IterationCosine(2e-3, iterations=4, steps_per_iteration=3, stop_iteration=3)
    np.testing.assert_allclose([float(stopped(step)) for step in range(12)],
                               want[:9] + [0.0] * 3, rtol=1e-6)
    assert ZeroShotConfig(iterations=1200, freeze_generator_at=0.85) \
        .generator_stop_iteration == 1020
    assert ZeroShotConfig(iterations=1200).generator_stop_iteration is None  # the paper


def test_noise_is_a_function_of_seed_and_iteration():
    full = np.stack(list(zs.noise_dataset(3, 0, 5, 4, 2, Z_DIM).as_numpy_iterator()))
    tail = np.stack(list(zs.noise_dataset(3, 2, 5, 4, 2, Z_DIM).as_numpy_iterator()))
    assert full.shape == (5, 4, 2, Z_DIM)
    np.testing.assert_array_equal(full[2:], tail)  # a resumed run draws the same noise
    other = np.stack(list(zs.noise_dataset(4, 0, 5, 4, 2, Z_DIM).as_numpy_iterator()))
    assert not np.allclose(full, other)
    assert abs(full.std() - 1) < 0.2 and len({full[i].tobytes() for i in range(5)}) == 5


def test_each_replica_gets_its_own_noise():
    strategy = two_cpu_strategy()
    dataset = zs.noise_dataset(0, 0, 1, 8, 1, Z_DIM)
    whole = next(iter(dataset)).numpy()
    per_replica = strategy.experimental_local_results(
        next(iter(strategy.experimental_distribute_dataset(dataset))))
    assert [p.shape for p in per_replica] == [(4, 1, Z_DIM)] * 2
    assert not np.allclose(per_replica[0].numpy(), per_replica[1].numpy())
    np.testing.assert_array_equal(np.concatenate([p.numpy() for p in per_replica]), whole)


# --- one outer iteration -----------------------------------------------------------------------

def _wrn(seed, shape=SHAPE):
    keras.utils.set_random_seed(seed)
    return registry.build_model("wrn-10-1", input_shape=shape)


def _teacher():
    teacher = _wrn(1)
    for layer in teacher.layers:  # non-trivial moving statistics, as after training
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.1, np.float32))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0, np.float32))
    return teacher


def _trainer(optimizers=None, policy="float32", **config):
    """Student and generator built under the dtype ``policy``; the teacher always float32,
    as a loaded teacher."""
    config = ZeroShotConfig(**{"iterations": 4, "n_student_steps": 2, **config})
    with devices.dtype_policy(policy):
        student = _wrn(2)
    keras.utils.set_random_seed(3)
    teacher = _teacher()
    with devices.dtype_policy(policy):
        generator = generator_lib.generator(SHAPE, Z_DIM)
    trainer = zs.ZeroShotTrainer(teacher, student, generator, config)
    trainer.compile(*(optimizers() if optimizers else zs.make_optimizers(config)))
    return trainer


def _z(batch=8, draws=1, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, draws, Z_DIM)),
                       tf.float32)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after)]


def test_one_iteration_trains_student_and_generator_only():
    trainer = _trainer()
    teacher_before = _values(trainer.teacher.weights)  # incl. BN moving mean/variance
    student_before = _values(trainer.student.weights)
    generator_before = _values(trainer.generator.weights)
    moving = [i for i, v in enumerate(trainer.student.weights) if "moving" in v.path]
    logs = trainer.train_step(_z())
    logs = trainer.train_step(_z(seed=1))
    assert not any(_changed(teacher_before, _values(trainer.teacher.weights)))
    student_changed = _changed(student_before, _values(trainer.student.weights))
    assert all(student_changed)  # every weight, and the BN statistics (student in train mode)
    assert moving and all(student_changed[i] for i in moving)
    assert all(_changed(generator_before, _values(trainer.generator.weights)))
    assert int(trainer.iteration.numpy()) == 2
    assert int(trainer.generator_optimizer.iterations.numpy()) == 2
    assert int(trainer.student_optimizer.iterations.numpy()) == 4
    # Iteration 1's rates, constant over its student steps: lr0 (1 + cos(pi/4)) / 2.
    assert float(logs["student_lr"]) == pytest.approx(2e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert float(logs["generator_lr"]) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert float(logs["generator_kl"]) > 0 and float(logs["attention"]) > 0


def test_frozen_generator_stays_as_it_is_while_the_student_learns():
    trainer = _trainer(iterations=4, freeze_generator_at=0.5)  # stops at iteration 2
    trainable = trainer.generator.trainable_variables
    first = _values(trainable)
    trainer.train_step(_z())
    trainer.train_step(_z(seed=1))
    frozen = _values(trainable)
    assert all(_changed(first, frozen))  # iterations 0 and 1 train it
    student_before = _values(trainer.student.trainable_variables)
    logs = trainer.train_step(_z(seed=2))
    trainer.train_step(_z(seed=3))
    assert not any(_changed(frozen, _values(trainable)))
    assert all(_changed(student_before, _values(trainer.student.trainable_variables)))
    assert float(logs["generator_lr"]) == 0.0
    assert float(logs["student_lr"]) == pytest.approx(2e-3 * (1 + math.cos(math.pi / 2)) / 2)
    assert float(logs["generator_kl"]) > 0  # still measured on the frozen generator


def test_ema_momentum_averages_the_student_after_every_student_step():
    trainer = _trainer(n_student_steps=1, ema_momentum=0.5)
    floats = [w for w in trainer.student.weights if w.dtype == "float32"]
    expected = _values(floats)  # the average starts at the initial weights
    for t in (1, 2):
        trainer.train_step(_z(seed=t))
        m = min(0.5, (1 + t) / (10 + t))  # one student step per iteration: step t
        expected = [m * a + (1 - m) * w for a, w in zip(expected, _values(floats))]
    live = _values(floats)
    trainer.weight_average.copy_to_model()
    for e, a, w in zip(expected, _values(floats), live):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    assert any(_changed(live, _values(floats)))  # the kept student is not the last one
    assert _trainer().weight_average is None  # off by default (the paper)


def _trainer_with_views(seed, **config):
    trainer = _trainer(beta=0.0, **config)  # (the WRN taps serve no purpose here)
    trainer.seed = seed
    return trainer


@pytest.mark.parametrize("kind", ["affine", "affine_mixup"])
def test_augment_trains_each_student_step_on_views_the_teacher_scores_anew(kind):
    plain = _trainer(beta=0.0)
    targets = plain.student_targets(_z()[:, 0])
    assert plain.student_views(targets, 0) is targets  # the paper: G(z) itself

    trainer = _trainer_with_views(7, augment=kind)
    images, t_logits, _ = trainer.student_targets(_z()[:, 0])
    first, second = (trainer.student_views((images, t_logits, []), k) for k in (0, 1))
    assert not np.allclose(first[0], images) and not np.allclose(first[0], second[0])
    np.testing.assert_allclose(first[1], trainer.teacher(first[0], training=False),
                               rtol=1e-5, atol=1e-5)  # the teacher's logits of the view
    again = trainer.student_views((images, t_logits, []), 0)
    np.testing.assert_array_equal(again[0], first[0])  # a pure function of (seed, t, step)
    trainer.iteration.assign(1)
    assert not np.allclose(trainer.student_views((images, t_logits, []), 0)[0], first[0])
    other = _trainer_with_views(8, augment=kind)
    assert not np.allclose(other.student_views((images, t_logits, []), 0)[0], first[0])


def test_augment_changes_what_the_student_learns_and_nothing_else():
    """Same weights and noise: with views the student ends elsewhere, the generator's step
    (before the student's) is the same; the same seed repeats the run exactly."""
    runs = {}
    for name, seed, augment in (("plain", 0, "none"), ("views", 0, "affine"),
                                ("again", 0, "affine"), ("other", 1, "affine")):
        trainer = _trainer_with_views(seed, augment=augment, n_student_steps=2)
        trainer.train_step(_z())
        runs[name] = (_values(trainer.student.trainable_variables),
                      _values(trainer.generator.trainable_variables))
    assert any(_changed(runs["plain"][0], runs["views"][0]))
    assert not any(_changed(runs["plain"][1], runs["views"][1]))
    assert not any(_changed(runs["views"][0], runs["again"][0]))
    assert any(_changed(runs["views"][0], runs["other"][0]))


def test_augment_for_zero_shot_defaults_to_the_paper():
    assert ZeroShotConfig.from_flags(types.SimpleNamespace(augment="auto")).augment == "none"
    assert ZeroShotConfig.from_flags(types.SimpleNamespace(augment="affine")).augment == "affine"
    with pytest.raises(UserError, match="augment"):
        ZeroShotConfig(augment="sideways")


def _numpy_kl(t, s):
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
    return np.mean(p * (np.log(p) - log_q))  # over B x C elements


def _numpy_attention(f):
    a = (f.astype(np.float64) ** 2).mean(-1).reshape(len(f), -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_student_loss_is_element_mean_kl_plus_beta_attention():
    trainer = _trainer(beta=250.0)
    images, t_logits, t_taps = trainer.student_targets(_z()[:, 0])
    loss, kl, attention, s_logits = trainer.student_loss(images, t_logits, t_taps)
    _, s_taps = trainer.student_with_taps(images, training=True)
    want_kl = _numpy_kl(t_logits.numpy(), s_logits.numpy())
    want_at = sum(np.mean((_numpy_attention(s.numpy()) - _numpy_attention(t.numpy())) ** 2)
                  for s, t in zip(s_taps.values(), t_taps))
    assert len(t_taps) == 3
    assert float(kl) == pytest.approx(want_kl, rel=1e-4)
    assert float(attention) == pytest.approx(want_at, rel=1e-4)
    assert float(loss) == pytest.approx(want_kl + 250 * want_at, rel=1e-4)


def test_l1_matching_is_the_logit_mean_absolute_difference_for_both_players():
    trainer = _trainer(beta=0.0, matching_loss="l1")
    z = _z()[:, 0]
    images, t_logits, t_taps = trainer.student_targets(z)
    loss, kl, _, s_logits = trainer.student_loss(images, t_logits, t_taps)
    want_l1 = np.mean(np.abs(t_logits.numpy() - s_logits.numpy()))
    assert float(loss) == pytest.approx(want_l1, rel=1e-5)
    assert float(kl) == pytest.approx(_numpy_kl(t_logits.numpy(), s_logits.numpy()), rel=1e-4)
    assert float(loss) != pytest.approx(float(kl), rel=1e-2)  # the KL is only logged
    g_loss, g_kl, _ = trainer.generator_loss(z)  # G(z) in train mode: recompute the reference
    g_images = trainer.generator(z, training=True)
    g_t = trainer.teacher(g_images, training=False).numpy()
    g_s = trainer.student(g_images, training=True).numpy()
    assert float(g_loss) == pytest.approx(-np.mean(np.abs(g_t - g_s)), rel=1e-4)
    assert float(g_kl) == pytest.approx(_numpy_kl(g_t, g_s), rel=1e-3)


def _numpy_batchnorm_distance(features, layer):
    f = features.astype(np.float64).reshape(-1, features.shape[-1])
    return (np.linalg.norm(f.mean(0) - layer.moving_mean.numpy())
            + np.linalg.norm(f.var(0) - layer.moving_variance.numpy()))


def test_generator_bn_weight_adds_the_teacher_feature_statistics_distance():
    trainer = _trainer(generator_bn_weight=0.5)
    z = _z()[:, 0]
    g_loss, g_kl, extra = trainer.generator_loss(z)
    statistics = extra["generator_bn"]
    g_images = trainer.generator(z, training=True)  # train mode: deterministic given z
    layers = [layer for layer in trainer.teacher.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(layers) == len(trainer.teacher_bn_layers) > 3  # every BN layer of the WRN
    want = sum(_numpy_batchnorm_distance(keras.Model(trainer.teacher.input, layer.input)(
        g_images).numpy(), layer) for layer in layers)
    assert float(statistics) == pytest.approx(want, rel=1e-4)
    assert float(g_loss) == pytest.approx(-float(g_kl) + 0.5 * want, rel=1e-4)
    with tf.GradientTape() as tape:  # the term reaches the generator through the teacher
        term = trainer.generator_loss(z)[2]["generator_bn"]
    grads = tape.gradient(term, trainer.generator.trainable_variables)
    assert all(g is not None for g in grads) and any(float(tf.norm(g)) > 0 for g in grads)
    logs = trainer.train_step(_z(draws=1))
    assert float(logs["generator_bn"]) > 0
    assert "generator_bn" not in _trainer().train_step(_z())  # off by default (the paper)


def test_class_imbalance_is_zero_when_balanced_and_log_c_when_one_class_takes_all():
    balanced = tf.constant(np.eye(4, dtype=np.float32) * 50.0)  # each class once, confidently
    assert float(class_imbalance(balanced)) == pytest.approx(0.0, abs=1e-5)
    one_class = tf.constant(np.tile([[50.0, 0, 0, 0]], (4, 1)).astype(np.float32))
    assert float(class_imbalance(one_class)) == pytest.approx(np.log(4.0), abs=1e-5)
    logits = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p_bar = p.mean(0)
    want = np.log(5.0) + (p_bar * np.log(p_bar)).sum()
    assert float(class_imbalance(tf.constant(logits))) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("term, weight_flag, measure", [
    ("generator_balance", "generator_balance_weight", class_imbalance),
    ("generator_confidence", "generator_confidence_weight", teacher_uncertainty),
])
def test_a_dafl_weight_adds_its_term_of_the_teacher_to_the_generator_loss(
        term, weight_flag, measure):
    trainer = _trainer(**{weight_flag: 2.0})
    z = _z()[:, 0]
    g_loss, g_kl, extra = trainer.generator_loss(z)
    t_logits = trainer.teacher(trainer.generator(z, training=True), training=False)
    want = float(measure(t_logits))
    assert float(extra[term]) == pytest.approx(want, rel=1e-4)
    assert float(g_loss) == pytest.approx(-float(g_kl) + 2.0 * want, rel=1e-4, abs=1e-6)
    with tf.GradientTape() as tape:  # the term reaches the generator through the teacher
        value = trainer.generator_loss(z)[2][term]
    grads = tape.gradient(value, trainer.generator.trainable_variables)
    assert any(float(tf.norm(g)) > 0 for g in grads if g is not None)
    assert term in trainer.train_step(_z(draws=1))
    assert term not in _trainer().train_step(_z())  # off by default (the paper)
    with pytest.raises(UserError, match=weight_flag):
        ZeroShotConfig(**{weight_flag: float("nan")})


def test_teacher_uncertainty_is_the_cross_entropy_against_the_top_class():
    sure = tf.constant([[60.0, 0, 0], [0, 0, 60.0]])
    assert float(teacher_uncertainty(sure)) == pytest.approx(0.0, abs=1e-5)
    logits = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = -log_p.max(1).mean()
    assert float(teacher_uncertainty(tf.constant(logits))) == pytest.approx(want, rel=1e-5)


def test_generator_bn_weight_needs_a_teacher_with_batchnorm():
    with pytest.raises(UserError, match="no BatchNormalization"):
        taps_lib.with_batchnorm_inputs(registry.build_model("lenet5", input_shape=(32, 32, 1)))


def test_gradients_flow_where_the_reference_says():
    trainer = _trainer()
    g_vars = trainer.generator.trainable_variables
    z = _z()[:, 0]
    # docs/methods/zskt.md, "One outer iteration": the student loss never reaches G; the
    # generator loss goes through the teacher's softmax too.
    with tf.GradientTape(persistent=True) as tape:  # student loss
        loss = trainer.student_loss(*trainer.student_targets(z))[0]
    assert all(g is None for g in tape.gradient(loss, g_vars))
    assert all(g is not None for g in tape.gradient(loss, trainer.student.trainable_variables))
    with tf.GradientTape() as tape:  # generator loss
        g_loss, kl, _ = trainer.generator_loss(z)
    full = tape.gradient(g_loss, g_vars)
    with tf.GradientTape() as tape:
        images = trainer.generator(z, training=True)
        t_const = tf.stop_gradient(trainer.teacher(images, training=False))
        s_logits = trainer.student(images, training=True)
        detached = tape.gradient(-losses.kl_element_mean(t_const, s_logits), g_vars)
    assert float(g_loss) == pytest.approx(-float(kl))
    assert all(g is not None for g in full)
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(full, detached))


def _gradients(policy):
    """Gradients of one generator loss and one student loss, with student and generator built
    under the dtype ``policy`` (and, for bfloat16, the teacher's conv input gradients in it)."""
    trainer = _trainer(policy=policy)
    if policy != "float32":
        input_gradients.accelerate_input_gradients(trainer.teacher, block_form=False,
                                                   gradient_dtype="bfloat16")
    z = _z()[:, 0]
    with tf.GradientTape() as tape:
        g_loss, _, _ = trainer.generator_loss(z)
    g_grads = tape.gradient(g_loss, trainer.generator.trainable_variables)
    with tf.GradientTape() as tape:
        s_loss = trainer.student_loss(*trainer.student_targets(z))[0]
    s_grads = tape.gradient(s_loss, trainer.student.trainable_variables)
    return trainer, [float(g_loss), float(s_loss)], g_grads, s_grads


def _flat(tensors):
    return np.concatenate([np.ravel(t.numpy()) for t in tensors]).astype(np.float64)


def test_mixed_bfloat16_follows_float32_up_to_rounding():
    exact, exact_losses, exact_g, exact_s = _gradients("float32")
    mixed, mixed_losses, mixed_g, mixed_s = _gradients("mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the policy was scoped
    for net in (mixed.student, mixed.generator):
        assert net.compute_dtype == "bfloat16"
        assert all(v.dtype == "float32" for v in net.weights)  # float32 weights, as Adam's
    assert mixed.teacher.compute_dtype == "float32"
    np.testing.assert_allclose(mixed_losses, exact_losses, rtol=0.05)
    for a, b in ((exact_g, mixed_g), (exact_s, mixed_s)):
        a, b = _flat(a), _flat(b)
        cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        # The same direction (measured: 0.94 for the generator, whose tiny gradient passes
        # through three bfloat16 networks, 0.98 for the student), yet really in bfloat16.
        assert 0.9 < cosine < 1 - 1e-7


def test_updates_are_clipped_to_the_global_norm_of_each_network():
    clip = 1e-4  # far below either network's gradient norm
    trainer = _trainer(lambda: (keras.optimizers.SGD(1.0), keras.optimizers.SGD(1.0)),
                       n_student_steps=1, clip_norm=clip)
    g_before = _values(trainer.generator.trainable_variables)
    s_before = _values(trainer.student.trainable_variables)
    logs = trainer.train_step(_z())
    assert float(logs["generator_grad_norm"]) > 100 * clip
    assert float(logs["student_grad_norm"]) > 100 * clip
    for before, variables in ((g_before, trainer.generator.trainable_variables),
                              (s_before, trainer.student.trainable_variables)):
        step = np.sqrt(sum(np.sum((b - v.numpy()) ** 2) for b, v in zip(before, variables)))
        assert step == pytest.approx(clip, rel=1e-3)  # per-variable clipping would be larger


@pytest.mark.parametrize("variant, calls", [("original", 1), ("modified", 3)])
def test_student_images_per_variant(variant, calls, monkeypatch):
    trainer = _trainer(variant=variant, n_student_steps=3)
    assert trainer.config.noise_draws == 1 + (calls if variant == "modified" else 0)
    seen = []
    original = trainer.student_targets

    def spy(z):
        seen.append(z.numpy())
        return original(z)

    monkeypatch.setattr(trainer, "student_targets", spy)
    z = _z(draws=trainer.config.noise_draws)
    trainer.train_step(z)
    assert len(seen) == calls  # original: one batch for all steps; modified: one per step
    for k, drawn in enumerate(seen):
        np.testing.assert_array_equal(drawn, z.numpy()[:, 0 if variant == "original" else k + 1])


def test_unknown_variant_is_a_user_error():
    with pytest.raises(UserError, match="variant"):
        ZeroShotConfig(variant="improved")
    with pytest.raises(UserError, match="matching_loss"):
        ZeroShotConfig(matching_loss="mse")
    for fraction in (0.0, -0.5, 1.5):
        with pytest.raises(UserError, match="freeze_generator_at"):
            ZeroShotConfig(freeze_generator_at=fraction)
    with pytest.raises(UserError, match="generator_bn_weight"):
        ZeroShotConfig(generator_bn_weight=-1.0)
    with pytest.raises(UserError, match="generator_range"):
        ZeroShotConfig(generator_range="clipped")


def test_config_from_flags_takes_the_papers_defaults_and_the_flags_given():
    base = ("--procedure=zero_shot", "--run_dir=r", "--teacher=t", "--student=wrn-16-1")
    paper = ZeroShotConfig.from_flags(parsed_flags(*base))
    assert (paper.iterations, paper.beta, paper.batch_size, paper.temperature,
            paper.at_taps) == (80_000, 250.0, 128, 1.0, WRN_TAPS)
    assert ZeroShotConfig.from_flags(parsed_flags(*base, "--dataset=svhn")).iterations \
        == 50_000
    given = ZeroShotConfig.from_flags(parsed_flags(
        *base, "--iterations=7", "--beta=0", "--at_taps=group2", "--z_dim=8",
        "--generator_range=teacher"))
    assert (given.iterations, given.beta, given.at_taps, given.z_dim,
            given.generator_range) == (7, 0.0, ("group2",), 8, "teacher")
    for name in ("n_student_steps", "student_lr", "generator_lr", "variant", "z_dim"):
        assert flags.FLAGS[name].default == getattr(paper, name), name  # the flags' defaults


def _fit_one_iteration(strategy, z):
    with strategy.scope():
        trainer = _trainer(lambda: (keras.optimizers.SGD(0.5), keras.optimizers.SGD(0.5)),
                           n_student_steps=1, clip_norm=0.5)
    logs = trainer.fit(tf.data.Dataset.from_tensors(z), epochs=1, steps_per_epoch=1,
                       verbose=0, shuffle=False).history
    return (_values(trainer.generator.weights), _values(trainer.student.weights),
            {k: v[0] for k, v in logs.items()})


@pytest.mark.slow
def test_two_replicas_take_the_same_iteration_as_one():
    # BN (generator and student) normalises with per-replica statistics, so two replicas only
    # match one device when each replica's half of the batch has the one device's statistics:
    # the global batch is one half twice. Then every mean-reduced loss, gradient and BN
    # statistic is the same in both set-ups, and the comparison is exact up to float error.
    half = _z(batch=4).numpy()
    z = tf.constant(np.concatenate([half, half]))
    start = _trainer()  # the same seeded initial weights as both runs
    initial = _values(start.generator.weights) + _values(start.student.weights)
    one = _fit_one_iteration(tf.distribute.OneDeviceStrategy("/cpu:0"), z)
    two = _fit_one_iteration(two_cpu_strategy(), z)
    # SGD (not Adam, which is blind to gradient scale) and a clip norm between the two
    # networks' gradient norms: the generator's step checks the loss scaling, the student's
    # the clipping of the replica-summed (not per-replica) gradient.
    assert one[2]["generator_grad_norm"] < 0.5 < one[2]["student_grad_norm"]
    # Each tensor's update must agree to 2 % of its size: the split batch changes oneDNN's
    # summation order (0.2 % measured on an AMD Zen 5, through the batch-of-4 BN of the
    # student's stem), while a wrong loss or clip scaling changes whole updates (50-100 %).
    for w0, a, b in zip(initial, one[0] + one[1], two[0] + two[1]):
        assert np.abs(a - b).max() <= 0.02 * np.abs(a - w0).max() + 1e-7
    for key in ("generator_kl", "student_kl", "attention", "student_grad_norm"):
        assert two[2][key] == pytest.approx(one[2][key], rel=1e-3), key  # 2e-4 seen (Zen 5)


# --- transition curves -----------------------------------------------------------------------

def test_transition_curves_start_clean_and_follow_plain_gradient_steps():
    net_a, net_b = _wrn(4), _wrn(5)
    x = np.random.default_rng(1).normal(size=(3, *SHAPE)).astype(np.float32)
    labels = np.array([0, 4, 9])
    attack = tc.TransitionAttack(net_a, net_b, steps=3, step_size=0.5)
    p_a, p_b = attack.curves(x, labels, 10)
    assert p_a.shape == p_b.shape == (3, 9, 3)
    targets = tc.target_classes(labels, 10)
    assert targets[1].tolist() == [5, 6, 7, 8, 9, 0, 1, 2, 3]  # (y + c + 1) mod C
    clean_a = tf.nn.softmax(net_a(x, training=False)).numpy()
    clean_b = tf.nn.softmax(net_b(x, training=False)).numpy()
    np.testing.assert_allclose(p_a[:, :, 0], np.take_along_axis(clean_a, targets, 1), rtol=1e-5)
    np.testing.assert_allclose(p_b[:, :, 0], np.take_along_axis(clean_b, targets, 1), rtol=1e-5)
    # Image 2, target 3, by hand: two steps of x <- x - 0.5 dCE/dx, one image at a time.
    xi = tf.constant(x[2:3])
    for _ in range(2):
        with tf.GradientTape() as tape:
            tape.watch(xi)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=targets[2:3, 3], logits=net_a(xi, training=False))
        xi = xi - 0.5 * tape.gradient(ce, xi)
    want = tf.nn.softmax(net_b(xi, training=False)).numpy()[0, targets[2, 3]]
    assert p_b[2, 3, 2] == pytest.approx(want, rel=1e-4)
    mte = tc.mean_transition_error(p_a, p_b)
    assert 0 <= mte <= 1 and mte == pytest.approx(np.abs(p_b - p_a).mean())


def test_agreeing_indices():
    a = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    b = np.array([0, 1, 9, 3, 9, 5, 9, 7])
    chosen = tc.agreeing_indices(a, b, 4, seed=0)
    assert len(set(chosen)) == 4 and all(a[i] == b[i] for i in chosen)
    np.testing.assert_array_equal(chosen, tc.agreeing_indices(a, b, 4, seed=0))
    assert sorted(tc.agreeing_indices(a, b, 5, seed=1)) == [0, 1, 3, 5, 7]
    with pytest.raises(UserError, match="agree on only 5"):
        tc.agreeing_indices(a, b, 6, seed=0)


# --- command line ------------------------------------------------------------------------------

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR),
    reason="the Debian package dataset-fashion-mnist is not installed (./setup.sh installs it)")


@pytest.fixture(scope="module")
def wrn_teacher(tmp_path_factory):
    """A WRN-10-1 trained for one short epoch on 32x32 Fashion-MNIST (a run directory)."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("the Debian package dataset-fashion-mnist is not installed")
    raw = datasets.load_dataset("fashion_mnist")
    spec = pp.input_spec_for("fashion_mnist", "wrn", (32, 32, 1))
    model = _wrn(0, (32, 32, 1))
    trainer = classifier.ClassifierTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(2e-3))
    trainer.fit(batch_streams.train_batches(raw.train_x, raw.train_y, spec, 100, 0, 0, 30),
                epochs=1, steps_per_epoch=30, verbose=0, shuffle=False)
    path = str(tmp_path_factory.mktemp("teacher"))
    names = types.SimpleNamespace(conv="Conv", block="basic")
    model_io.save_classifier(path, model, model_info("wrn-10-1", names, "fashion_mnist",
                                                     raw.class_names, spec))
    return path


ZERO_SHOT = ["--procedure=zero_shot", "--student=wrn-10-1", "--dataset=fashion_mnist",
             "--iterations=5", "--n_student_steps=1", "--batch_size=8", "--z_dim=16",
             "--max_test_examples=200", "--deterministic", "--checkpoint_every_secs=1",
             "--verbose=epoch"]


def _weights(path):
    return keras.saving.load_model(path, compile=False).get_weights()


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("averaging", [[], ["--ema_momentum=0.9"], ["--augment=affine"]],
                         ids=["final", "ema", "views"])
def test_cli_zero_shot_resumes_after_kill_and_aggregates_seeds(wrn_teacher, tmp_path,
                                                               averaging):
    """A killed run resumes to the uninterrupted run's products; with --ema_momentum the
    student's weight average resumes too (the student kept, the average, is identical); with
    --augment the student's views resume too."""
    args = [*ZERO_SHOT, f"--teacher={wrn_teacher}", *averaging]
    reference = str(tmp_path / "reference")
    run_cli(*args, "--seeds=0", f"--run_dir={reference}", check=True)

    run = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "zskd_tf.main", *args, "--seeds=0,1",
                             f"--run_dir={run}"], cwd=REPO, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = os.path.join(run, "seed_0", "checkpoints", "checkpoint")
    deadline = time.time() + 300
    while not os.path.exists(index) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(run, "seed_0", "result.json")), "killed too late"
    resumed = run_cli(*args, "--seeds=0,1", f"--run_dir={run}", check=True)
    assert "seed 0: resuming at iteration" in resumed.stdout

    for name in ("model.keras", "generator.keras"):  # identical to the uninterrupted run
        for a, b in zip(_weights(os.path.join(reference, "seed_0", name)),
                        _weights(os.path.join(run, "seed_0", name))):
            np.testing.assert_array_equal(a, b)
    metrics = [line for line in open(os.path.join(run, "seed_0", "metrics.jsonl")) if line.strip()]
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == sorted(set(steps)) and steps[-1] == 5 and "val_accuracy" in metrics[-1]

    result = read_json(os.path.join(run, "result.json"))
    per_seed = [read_json(os.path.join(run, f"seed_{s}", "result.json"))["test_accuracy"]
                for s in (0, 1)]
    assert result["per_seed_test_accuracy"] == per_seed
    assert result["test_accuracy"] == pytest.approx(np.mean(per_seed))
    assert result["test_accuracy_std"] == pytest.approx(np.std(per_seed))
    live = json.loads(metrics[-1])["val_accuracy"]  # the last evaluation: the live student
    if averaging == ["--augment=affine"]:
        return
    if averaging:
        assert read_json(os.path.join(run, "seed_0", "result.json"))["ema_momentum"] == 0.9
        return
    assert per_seed[0] == pytest.approx(live, abs=1e-6)
    for name in ("model_info.json", "saved_model/saved_model.pb", "generator.keras"):
        assert os.path.exists(os.path.join(run, "seed_1", name)), name
    info = read_json(os.path.join(run, "seed_0", "model_info.json"))
    assert info["model"] == "wrn-10-1"
    assert info["input_spec"] == read_json(os.path.join(wrn_teacher,
                                                        "model_info.json"))["input_spec"]

    # --init_from: a new run's student starts from a finished student's weights.
    finished = model_io.load_classifier(os.path.join(reference, "seed_0"))
    init_cfg = parsed_flags(*args, f"--init_from={reference}/seed_0",
                             f"--run_dir={tmp_path}/init")
    student, _ = zero_shot_procedure._build_networks(
        init_cfg, ZeroShotConfig.from_flags(init_cfg), finished.spec, 10, None)
    for a, b in zip(student.get_weights(), finished.model.get_weights()):
        np.testing.assert_array_equal(a, b)

    # Transition curves of the zero-shot student against its teacher, and their plot.
    curves_run = str(tmp_path / "curves")
    transition_curves.run(parsed_flags(
        "--procedure=transition_curves", f"--run_dir={curves_run}", f"--teacher={wrn_teacher}",
        f"--student_run={run}/seed_0", "--num_images=6", "--adversarial_steps=4"))
    # (in-process: the CLI wrapper is tested above; the whole test split, so that the barely
    # trained student agrees with the teacher on enough images)
    with np.load(os.path.join(curves_run, "curves.npz")) as data:
        assert data["netA"].shape == data["netB"].shape == (6, 9, 4)
        mte = np.abs(data["netB"] - data["netA"]).mean()
    assert read_json(os.path.join(curves_run, "result.json"))["mte"] == pytest.approx(mte)
    png = str(tmp_path / "curves.png")
    subprocess.run([sys.executable, PLOT_TOOL, f"--run_dir={curves_run}", f"--out={png}"],
                   check=True, env=cli_env())
    image = cv2.imread(png)
    assert image.shape[0] > 100 and len(np.unique(image.reshape(-1, 3), axis=0)) > 10


@pytest.mark.slow
@needs_fashion_mnist
def test_cli_zero_shot_bad_input(wrn_teacher, tmp_path):
    r = str(tmp_path / "r")
    args = [*ZERO_SHOT, f"--run_dir={r}", f"--teacher={wrn_teacher}"]
    assert_user_error(run_cli(*args, "--variant=improved"), "variant")
    assert_user_error(run_cli(*args, "--freeze_generator_at=0"), "--freeze_generator_at")
    assert_user_error(run_cli(*args, "--generator_bn_weight=-1"), "--generator_bn_weight")
    assert_user_error(run_cli(*args, "--ema_momentum=1"), "--ema_momentum")
    assert_user_error(run_cli(*args, "--student=lenet5"), "--beta", "--beta=0")
    assert_user_error(run_cli(*args, "--student=wrn-10-2", f"--init_from={wrn_teacher}"),
                      "another architecture")
    assert not os.path.exists(r)  # refused runs leave nothing behind
    plot = subprocess.run([sys.executable, PLOT_TOOL, f"--run_dir={r}",
                           f"--out={tmp_path}/x.png"], env=cli_env(), capture_output=True,
                          text=True)
    assert_user_error(plot, "curves.npz")


@pytest.mark.slow
@needs_fashion_mnist
def test_cli_mixed_bfloat16_trains_in_bfloat16_and_saves_a_float32_student(wrn_teacher,
                                                                           tmp_path):
    run = str(tmp_path / "bf16")
    run_cli(*ZERO_SHOT, f"--teacher={wrn_teacher}", "--mixed_bfloat16", f"--run_dir={run}",
            "--generator_bn_weight=0.5", check=True)  # the BN term too, under bfloat16
    settings = read_json(os.path.join(run, "result.json"))["zero_shot"]
    assert settings["mixed_bfloat16"] is True and settings["generator_bn_weight"] == 0.5
    seed_dir = os.path.join(run, "seed_0")
    generator = keras.saving.load_model(os.path.join(seed_dir, "generator.keras"),
                                        compile=False)
    assert any(layer.compute_dtype == "bfloat16"  # trained under the policy
               for layer in generator.layers)
    student = model_io.load_classifier(seed_dir)  # deployable: float32 throughout
    assert student.model.compute_dtype == "float32"
    assert all(layer.compute_dtype == "float32" for layer in student.model.layers)
    final = json.loads([line for line in open(os.path.join(seed_dir, "metrics.jsonl"))
                        if line.strip()][-1])["val_accuracy"]  # the bfloat16 student's own score
    accuracy = read_json(os.path.join(seed_dir, "result.json"))["test_accuracy"]
    assert accuracy == pytest.approx(final, abs=0.03)
    logged = [json.loads(line) for line in open(os.path.join(seed_dir, "metrics.jsonl"))
              if line.strip()]
    assert all(np.isfinite(r["generator_bn"]) and r["generator_bn"] > 0
               for r in logged if "generator_bn" in r) and any("generator_bn" in r for r in logged)
