"""The Python entry points (zskd_tf.api): the procedures' own code path, Keras models in."""
import os

import keras
import numpy as np
import pytest

import zskd_tf
from helpers import FASHION_MNIST_DIR, read_json
from zskd_tf import api
from zskd_tf.errors import UserError

needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                                         reason="dataset-fashion-mnist is not installed")


def test_options_are_the_flags_checked_as_the_command_line_checks_them():
    with pytest.warns(UserWarning, match="'distill' does not read betas"):  # ZSKD's flag
        cfg = api.config("distill", "/tmp/x", epochs="3", betas=[1.0, 0.1], augment="affine")
    assert cfg.epochs == 3 and cfg.betas == [1.0, 0.1] and cfg.augment == "affine"
    assert cfg.present == {"epochs", "betas", "augment", "procedure", "run_dir"}
    assert cfg.batch_size is None and cfg.temperature is None  # flag defaults, as on the CLI
    with pytest.raises(UserError, match="unknown option.*epoch_count"):
        api.config("distill", "/tmp/x", epoch_count=3)
    with pytest.raises(UserError, match="augment"):
        api.config("distill", "/tmp/x", augment="sideways")
    with pytest.raises(UserError, match="--epochs must be a positive"):
        api.config("train", "/tmp/x", epochs=0)
    with pytest.raises(UserError, match="unknown procedure"):
        api.run("dream")


def test_a_model_object_is_saved_once_under_its_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv(api.CACHE_ENV, str(tmp_path))
    model = _small_bn_cnn()
    path = api._model_path(model)
    assert path.startswith(str(tmp_path)) and os.path.isfile(path)
    assert api._model_path(model) == path  # the same model: the same file, not rewritten
    model.layers[-1].bias.assign(np.ones(10, np.float32))
    assert api._model_path(model) != path  # changed weights: another input
    assert api._model_path("some/run") == "some/run"


@needs_fashion_mnist
@pytest.mark.slow
def test_impressions_distill_and_zero_shot_from_a_keras_model(tmp_path, monkeypatch):
    monkeypatch.setenv(api.CACHE_ENV, str(tmp_path / "cache"))
    teacher = _fit_small_teacher()
    quiet = {"verbose": "quiet"}
    impressions = zskd_tf.data_impressions(
        teacher, num_samples=40, synthesis_steps=5, synthesis_batch_size=20,
        dataset="fashion_mnist", run_dir=tmp_path / "di", **quiet)
    assert impressions.x.shape == (40, 28, 28, 1) and impressions.soft_targets.shape == (40, 10)
    assert impressions.path == str(tmp_path / "di" / "impressions.npz")
    x, t = next(iter(impressions.to_tf_dataset(batch_size=10)))
    assert x.shape == (10, 28, 28, 1) and t.shape == (10, 10)
    # The same call again is the same run: finished, reported, nothing recomputed.
    stamp = os.stat(impressions.path).st_mtime_ns
    again = zskd_tf.data_impressions(
        teacher, num_samples=40, synthesis_steps=5, synthesis_batch_size=20,
        dataset="fashion_mnist", run_dir=tmp_path / "di", **quiet)
    assert os.stat(impressions.path).st_mtime_ns == stamp
    np.testing.assert_array_equal(again.x, impressions.x)

    student = zskd_tf.distill(teacher, "lenet5_half", impressions, loss="soft_ce",
                              temperature=20, soft_ce_scale=400, targets="stored", epochs=1,
                              max_test_examples=200, run_dir=tmp_path / "student", **quiet)
    assert isinstance(student, keras.Model)
    assert student.predict(impressions.x[:4], verbose=0).shape == (4, 10)
    recorded = read_json(tmp_path / "student" / "result.json")
    assert recorded["teacher"].startswith(str(tmp_path / "cache"))

    zs = zskd_tf.zero_shot(teacher, "lenet5_half", iterations=2, batch_size=16, beta=0,
                           dataset="fashion_mnist", max_test_examples=100,
                           generator_range="teacher", run_dir=tmp_path / "zs", **quiet)
    assert zs.output_shape == (None, 10)
    # A different teacher is a different command for the same run directory: refused.
    other = keras.models.clone_model(teacher)
    with pytest.raises(UserError, match="different flags"):
        zskd_tf.zero_shot(other, "lenet5_half", iterations=2, batch_size=16, beta=0,
                          dataset="fashion_mnist", max_test_examples=100,
                          generator_range="teacher", run_dir=tmp_path / "zs", **quiet)


def _small_bn_cnn(num_classes=10):
    """The kind of model a user brings: a Sequential of 28x28x1 inputs in [0, 1], with
    BatchNorm (a Sequential has no ``model.input`` once reloaded: the taps must not need it)."""
    return keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(num_classes)])


def _fit_small_teacher():
    """Trained by plain model.fit on Fashion-MNIST images (not by zskd_tf)."""
    from zskd_tf.data import datasets
    raw = datasets.load_dataset("fashion_mnist")
    x = raw.train_x[:2000].astype("float32") / 255.0
    y = raw.train_y[:2000]
    model = _small_bn_cnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model


def test_our_kd_and_attention_losses_reproduce_distill_inside_keras_distiller():
    import tensorflow as tf

    from zskd_tf import keras_distillation, losses
    from zskd_tf.models import registry
    from zskd_tf.models import taps as taps_lib

    teacher = registry.build_model("wrn-10-2", num_classes=10, input_shape=(16, 16, 3))
    student = registry.build_model("wrn-10-1", num_classes=10, input_shape=(16, 16, 3))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(6, 16, 16, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, size=6))
    taps = ("group1", "group2", "group3")
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        **keras_distillation.kd_at_losses(alpha=0.9, temperature=4.0, beta=250.0, at_taps=taps))
    distiller.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Training mode, as a training step runs it (the Distiller reads the student's features
    # from a training-mode forward pass in any case).
    got = float(distiller.compute_loss(x=x, y=y, training=True))
    t_logits, t_taps = taps_lib.with_taps(teacher, taps)(x, training=False)
    s_logits, s_taps = taps_lib.with_taps(student, taps)(x, training=True)
    want = float(losses.kd(y, s_logits, t_logits, 0.9, 4.0)
                 + 250.0 * losses.attention_transfer(list(s_taps.values()), list(t_taps.values())))
    assert got == pytest.approx(want, rel=1e-5)
    soft = keras_distillation.SoftTargetCrossEntropy(temperature=20.0, scale=400.0)
    want_soft = 400.0 * losses.soft_cross_entropy(tf.nn.softmax(t_logits / 20.0), s_logits, 20.0)
    assert float(soft.compute_loss(t_logits, s_logits)) == pytest.approx(float(want_soft), rel=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        keras_distillation.kd_at_losses(alpha=0.0)
