"""distill --hint_weight: a narrower copy of the teacher also matches, at feature taps, the
teacher's features of the channels it stands for (teacher_channels.kept_channels)."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import FASHION_MNIST_DIR, assert_user_error, read_json, run_cli, teacher_with_dead_half
from zskd_tf import losses
from zskd_tf.errors import UserError
from zskd_tf.models import narrower, registry, teacher_channels
from zskd_tf.models import taps as taps_lib
from zskd_tf.trainers.distill_config import DistillConfig
from zskd_tf.trainers.distiller import Distiller


def _features(model, layer_name, x):
    inputs, _ = taps_lib.graph_ends(model)
    return keras.Model(inputs, model.get_layer(layer_name).output)(x).numpy()


def test_kept_channels_name_the_channels_the_copy_takes_at_any_point_of_its_training():
    keras.utils.set_random_seed(0)
    teacher = registry.build_model("lenet5")
    copy = teacher_channels.take_teacher_channels(teacher, registry.build_model("lenet5_half"))
    kept = teacher_channels.kept_channels(teacher, copy)
    assert len(kept["tap_conv1"]) == 3 and len(kept["tap_conv2"]) == 8
    assert kept["tap_fc1"] is None and kept["tap_fc2"] is None  # full width in lenet5_half
    np.testing.assert_array_equal(copy.get_layer("tap_conv1").get_weights()[0],
                                  teacher.get_layer("tap_conv1").get_weights()[0][
                                      ..., kept["tap_conv1"]])
    np.testing.assert_array_equal(
        copy.get_layer("tap_conv2").get_weights()[0],
        teacher.get_layer("tap_conv2").get_weights()[0][:, :, kept["tap_conv1"]][
            ..., kept["tap_conv2"]])
    for layer in copy.layers:  # training moves the copy's weights, not its channels
        layer.set_weights([w + 1.0 for w in layer.get_weights()])
    again = teacher_channels.kept_channels(teacher, copy)
    assert again.keys() == kept.keys()
    for name, channels in kept.items():
        assert (channels is None) == (again[name] is None)
        if channels is not None:
            np.testing.assert_array_equal(channels, again[name])


def test_the_hint_is_zero_where_the_copy_computes_the_teachers_features():
    teacher = teacher_with_dead_half()  # the kept channels carry the teacher's function
    copy = teacher_channels.take_teacher_channels(teacher, narrower.narrower_copy(teacher))
    kept = teacher_channels.kept_channels(teacher, copy)
    x = np.random.default_rng(2).uniform(size=(6, 10, 10, 3)).astype("float32")
    s, t = _features(copy, "hidden", x), _features(teacher, "hidden", x)
    assert s.shape[-1] == len(kept["hidden"]) == 5 and t.shape[-1] == 10
    assert float(losses.channel_hint([s], [t], [kept["hidden"]])) < 1e-8
    wrong = np.setdiff1d(np.arange(10), kept["hidden"])  # the channels it dropped
    assert float(losses.channel_hint([s], [t], [wrong])) > 0.1


def test_the_distillers_objective_adds_the_weighted_hint_of_each_tap():
    keras.utils.set_random_seed(1)
    teacher = registry.build_model("lenet5")
    student = teacher_channels.take_teacher_channels(teacher,
                                                     registry.build_model("lenet5_half"))
    kept = teacher_channels.kept_channels(teacher, student)
    x = np.random.default_rng(3).uniform(size=(8, 32, 32, 1)).astype("float32")
    y = tf.zeros(8, "int64")
    base = dict(loss="soft_ce", temperature=20.0, soft_ce_scale=400.0)
    plain = Distiller(student, teacher, DistillConfig(**base))
    hinted = Distiller(student, teacher, DistillConfig(**base, hint_weight=3.0,
                                                       hint_taps=("conv1", "fc2")),
                       hint_channels={"conv1": kept["tap_conv1"], "fc2": None})
    added = float(hinted.objective(x, y)[0]) - float(plain.objective(x, y)[0])
    conv1 = np.mean((_features(student, "tap_conv1", x)
                     - _features(teacher, "tap_conv1", x)[..., kept["tap_conv1"]]) ** 2)
    fc2 = np.mean((_features(student, "tap_fc2", x) - _features(teacher, "tap_fc2", x)) ** 2)
    assert conv1 < 1e-10  # the first layer's kept channels are the teacher's own
    assert fc2 > 1e-3
    np.testing.assert_allclose(added, 3.0 * (conv1 + fc2), rtol=1e-3)


def test_the_hint_settings_are_checked():
    with pytest.raises(UserError, match="hint_weight"):
        DistillConfig(hint_weight=-1.0)
    assert DistillConfig(hint_taps=["fc2"]).objective()["hint_taps"] == ["fc2"]


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="needs dataset-fashion-mnist")
def test_the_command_line_refuses_hints_it_cannot_give(tmp_path):
    teacher = str(tmp_path / "lenet5.keras")
    keras.utils.set_random_seed(0)
    registry.build_model("lenet5").save(teacher)
    run = str(tmp_path / "run")
    common = ("--procedure=distill", f"--teacher={teacher}", "--dataset=fashion_mnist",
              "--hint_weight=1", f"--run_dir={run}", "--max_train_examples=100",
              "--verbose=quiet")
    assert_user_error(run_cli(*common, "--student=small_cnn"), "narrower copy")
    assert_user_error(run_cli(*common, "--student=lenet5_half", "--hint_taps=fc9"),
                      "unknown feature tap", "fc9")
    assert not os.path.exists(run)  # refused before anything is written


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="needs dataset-fashion-mnist")
def test_a_hinted_student_records_its_hint_and_moves_toward_the_teachers_features(tmp_path):
    teacher = str(tmp_path / "lenet5.keras")
    keras.utils.set_random_seed(0)
    registry.build_model("lenet5").save(teacher)
    args = ("--procedure=distill", f"--teacher={teacher}", "--dataset=fashion_mnist",
            "--student=lenet5_half", "--init_from_teacher", "--max_train_examples=640",
            "--max_test_examples=200", "--epochs=3", "--verbose=quiet")
    hinted, plain = str(tmp_path / "hinted"), str(tmp_path / "plain")
    run_cli(*args, "--hint_weight=100", f"--run_dir={hinted}", check=True)
    run_cli(*args, f"--run_dir={plain}", check=True)
    objective = read_json(os.path.join(hinted, "result.json"))["distill"]
    assert objective["hint_weight"] == 100 and objective["hint_taps"] == ["fc2"]
    assert read_json(os.path.join(plain, "result.json"))["distill"]["hint_taps"] == []
    t = keras.models.load_model(teacher)
    x = np.random.default_rng(4).uniform(size=(64, 32, 32, 1)).astype("float32")
    distance = {}
    for name, run in (("hinted", hinted), ("plain", plain)):
        s = keras.models.load_model(os.path.join(run, "model.keras"))
        distance[name] = np.mean((_features(s, "tap_fc2", x) - _features(t, "tap_fc2", x)) ** 2)
    assert distance["hinted"] < 0.5 * distance["plain"], distance


def test_a_foreign_classifier_is_read_at_the_layers_it_names():
    """A model without taps (a foreign Keras classifier) is read at named layers; a zoo model
    only at its taps."""
    teacher = teacher_with_dead_half()
    x = np.random.default_rng(5).uniform(size=(3, 10, 10, 3)).astype("float32")
    _, features = taps_lib.with_taps(teacher, ["hidden", "conv"])(x)
    assert list(features) == ["hidden", "conv"]
    np.testing.assert_allclose(features["hidden"], _features(teacher, "hidden", x), rtol=1e-5)
    with pytest.raises(UserError, match="no feature taps and no layer 'fc2'.*its layers: conv, "
                                        "bn"):
        taps_lib.with_taps(teacher, ["fc2"])
    with pytest.raises(UserError, match="unknown feature tap logits"):
        taps_lib.with_taps(registry.build_model("lenet5"), ["logits"])


def test_a_foreign_copy_is_hinted_at_its_last_hidden_layer():
    """Without taps the hints default to the last convolution or dense layer before the class
    scores, where a copy that keeps the teacher's live channels matches it exactly."""
    from zskd_tf.procedures import distill

    teacher = teacher_with_dead_half()
    copy = teacher_channels.take_teacher_channels(teacher, narrower.narrower_copy(teacher))
    assert narrower.last_hidden_layer(teacher) == narrower.last_hidden_layer(copy) == "hidden"
    base = dict(loss="soft_ce", freeze_bn=True)  # BatchNorm in inference mode, as the teacher's
    config = distill._with_taps(DistillConfig(**base, hint_weight=2.0), teacher, copy)
    assert config.hint_taps == ("hidden",)
    channels = distill._hint_channels(config, teacher, copy)
    kept = teacher_channels.kept_channels(teacher, copy)
    np.testing.assert_array_equal(channels["hidden"], kept["hidden"])
    x = np.random.default_rng(6).uniform(size=(4, 10, 10, 3)).astype("float32")
    y = tf.zeros(4, "int64")
    plain = Distiller(copy, teacher, DistillConfig(**base))
    hinted = Distiller(copy, teacher, config, hint_channels=channels)
    np.testing.assert_allclose(float(hinted.objective(x, y)[0]), float(plain.objective(x, y)[0]),
                               rtol=1e-5)  # the copy computes the teacher's live features
    only_scores = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(3)])
    with pytest.raises(UserError, match="no convolution or dense layer before its class scores"):
        narrower.last_hidden_layer(only_scores)
    with pytest.raises(UserError, match="--hint_weight > 0: .*nothing to hint"):
        distill._with_taps(DistillConfig(hint_weight=1.0), only_scores, only_scores)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="needs dataset-fashion-mnist")
def test_the_command_line_hints_a_copy_of_a_foreign_teacher(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="features"), keras.layers.Dense(10)])
    teacher.save(tmp_path / "teacher.keras")
    copy = teacher_channels.take_teacher_channels(teacher, narrower.narrower_copy(teacher))
    copy.save(tmp_path / "student.keras")
    run = str(tmp_path / "run")
    run_cli("--procedure=distill", f"--teacher={tmp_path / 'teacher.keras'}",
            "--dataset=fashion_mnist", f"--student={tmp_path / 'student.keras'}",
            "--hint_weight=10", "--max_train_examples=64", "--max_test_examples=64",
            "--epochs=1", f"--run_dir={run}", "--verbose=quiet", check=True)
    assert read_json(os.path.join(run, "result.json"))["distill"]["hint_taps"] == ["features"]
