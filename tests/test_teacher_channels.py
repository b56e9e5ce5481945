"""--student_init=teacher (pipeline) and --init_from_teacher (distill, zero_shot): a narrower
copy filled with the teacher's most important channels."""
import os

import keras
import numpy as np
import pytest

from helpers import (
    FASHION_MNIST_DIR,
    assert_user_error,
    parsed_flags,
    run_cli,
    teacher_with_dead_half,
)
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.models import narrower, registry, teacher_channels
from zskd_tf.procedures import distill, zero_shot
from zskd_tf.zskt.config import ZeroShotConfig


def test_the_copy_keeps_the_teachers_live_channels_and_computes_its_function():
    teacher = teacher_with_dead_half()
    copy = narrower.narrower_copy(teacher)
    fresh = [w.copy() for w in copy.get_weights()]
    assert teacher_channels.take_teacher_channels(teacher, copy) is copy
    assert copy.get_layer("conv").filters == 4 and copy.get_layer("hidden").units == 5
    np.testing.assert_array_equal(copy.get_layer("bn").get_weights()[0],
                                  teacher.get_layer("bn").get_weights()[0][::2])
    x = np.random.default_rng(1).uniform(size=(5, 10, 10, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.softmax(copy(x)), teacher(x), rtol=1e-4, atol=1e-6)
    assert not np.allclose(narrower.narrower_copy(teacher).predict(x, verbose=0), copy(x))
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, copy.get_weights()))


def test_a_sequential_teacher_is_narrowed_the_same_way():
    teacher = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3),
                                keras.layers.BatchNormalization(), keras.layers.ReLU(),
                                keras.layers.Flatten(), keras.layers.Dense(3)])
    bn = teacher.layers[1]
    gamma = np.array([0.1, 5.0, 0.2, 4.0], "float32")
    bn.set_weights([gamma, *bn.get_weights()[1:]])
    copy = teacher_channels.take_teacher_channels(teacher, narrower.narrower_copy(teacher))
    np.testing.assert_array_equal(copy.layers[1].get_weights()[0], gamma[[1, 3]])
    np.testing.assert_array_equal(copy.layers[0].get_weights()[0],
                                  teacher.layers[0].get_weights()[0][..., [1, 3]])
    rows = np.arange(16 * 4).reshape(4, 4, 4)[..., [1, 3]].reshape(-1)  # Flatten's (h, w, c)
    np.testing.assert_array_equal(copy.layers[-1].get_weights()[0],
                                  teacher.layers[-1].get_weights()[0][rows])


def _residual_teacher_with_dead_channels():
    """Two residual stages (an identity and a projection shortcut) whose dropped channels are
    exactly dead: the half-width copy that keeps the live ones computes the teacher's function.
    Each stage's channels are written by two convolutions joined by Add, so they must be
    chosen together, by their summed importance."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(x))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="inner")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="back")(h)
    x = keras.layers.Add(name="add1")([x, h])
    y = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn2")(x))
    shortcut = keras.layers.Conv2D(8, 1, strides=2, name="projection")(y)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="main")(y)
    x = keras.layers.Add(name="add2")([shortcut, h])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype("float32")
                           for w in layer.get_weights()])
    dead = {"stem": [1, 3, 5, 7], "inner": [0, 2, 5], "projection": [0, 1, 4, 6],
            "main": [0, 1, 4, 6]}
    for name, dead_out in dead.items():
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        kernel[..., dead_out], bias[dead_out] = 0.0, 0.0
        layer.set_weights([kernel, bias])
    # "back" alone would keep the odd channels (3x its other filters), but the stream's choice
    # is shared with "stem", whose odd channels are zero: the sum keeps the even ones. What
    # "back" writes into the odd channels dies in bn2.
    kernel, bias = model.get_layer("back").get_weights()
    kernel[..., 1::2] *= 3.0
    model.get_layer("back").set_weights([kernel, bias])
    for name in ("bn1", "bn2"):  # the dead stream channels stay 0 after BN + ReLU
        gamma, beta, mean, variance = model.get_layer(name).get_weights()
        gamma[dead["stem"]], beta[dead["stem"]] = 0.0, 0.0
        model.get_layer(name).set_weights([gamma, beta, mean, np.abs(variance) + 0.5])
    return model


def test_a_residual_teacher_keeps_one_choice_of_channels_per_merge():
    teacher = _residual_teacher_with_dead_channels()
    copy = teacher_channels.take_teacher_channels(teacher, narrower.narrower_copy(teacher))
    np.testing.assert_array_equal(copy.get_layer("bn1").get_weights()[0],
                                  teacher.get_layer("bn1").get_weights()[0][[0, 2, 4, 6]])
    np.testing.assert_array_equal(copy.get_layer("scores").get_weights()[0],
                                  teacher.get_layer("scores").get_weights()[0][[2, 3, 5, 7]])
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(copy(x), teacher(x), rtol=1e-4, atol=1e-5)


def test_a_model_that_concatenates_branches_is_refused_and_its_copy_left_alone():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([x, y]))
    teacher = keras.Model(inputs, keras.layers.Dense(3)(x))
    copy = narrower.narrower_copy(teacher)
    before = [w.copy() for w in copy.get_weights()]
    with pytest.raises(UserError, match="reads several tensors"):
        teacher_channels.take_teacher_channels(teacher, copy)
    for a, b in zip(before, copy.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_api_gives_the_same_student_as_the_pipeline(tmp_path):
    import zskd_tf

    teacher = teacher_with_dead_half()
    expected = teacher_channels.take_teacher_channels(teacher, narrower.narrower_copy(teacher))
    path = str(tmp_path / "teacher.keras")
    teacher.save(path)
    for given in (teacher, path):
        student = zskd_tf.narrower_student(given)
        for a, b in zip(student.get_weights(), expected.get_weights()):
            np.testing.assert_array_equal(a, b)
    fresh = zskd_tf.narrower_student(teacher, init="random", seed=3)
    np.testing.assert_array_equal(fresh.get_weights()[0],
                                  narrower.narrower_copy(teacher, seed=3).get_weights()[0])
    with pytest.raises(UserError, match="init must be"):
        zskd_tf.narrower_student(teacher, init="pruned")


def _zoo_lenet5():
    keras.utils.set_random_seed(0)
    return registry.build_model("lenet5")


def _built_student(procedure, teacher_model, *flag_args):
    """The student ``procedure`` would start training from, for these flags."""
    cfg = parsed_flags(f"--procedure={procedure}", "--student=lenet5_half", "--teacher=t",
                       "--run_dir=r", *flag_args)
    spec = pp.input_spec_for("fashion_mnist", "lenet", (32, 32, 1))
    if procedure == "distill":
        return distill._build_student(cfg, "lenet5_half", spec, 10, teacher_model)
    config = ZeroShotConfig.from_flags(cfg)
    return zero_shot._build_networks(cfg, config, spec, 10, teacher_model)[0]


@pytest.mark.parametrize("procedure", ["distill", "zero_shot"])
def test_init_from_teacher_starts_a_zoo_student_from_the_teachers_channels(procedure):
    """--init_from_teacher: lenet5 -> lenet5_half, the zoo pair of the LeNet-5 demo."""
    teacher = _zoo_lenet5()
    expected = teacher_channels.take_teacher_channels(teacher,
                                                      registry.build_model("lenet5_half"))
    student = _built_student(procedure, teacher, "--init_from_teacher")
    for a, b in zip(student.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = _built_student(procedure, teacher)  # without the flag: fresh weights
    assert not np.array_equal(fresh.get_weights()[0], expected.get_weights()[0])
    with pytest.raises(UserError, match="not both"):
        _built_student(procedure, teacher, "--init_from_teacher", "--init_from=x")
    with pytest.raises(UserError, match="weights can be read"):
        _built_student(procedure, None, "--init_from_teacher")


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="needs dataset-fashion-mnist")
def test_init_from_teacher_refuses_a_student_that_is_not_a_narrower_copy(tmp_path):
    teacher = str(tmp_path / "lenet5.keras")
    _zoo_lenet5().save(teacher)
    run = str(tmp_path / "run")
    proc = run_cli("--procedure=distill", f"--teacher={teacher}", "--student=small_cnn",
                   "--dataset=fashion_mnist", "--init_from_teacher", f"--run_dir={run}",
                   "--max_train_examples=100", "--verbose=quiet")
    assert_user_error(proc, "not a layer-for-layer copy")
    assert not os.path.exists(run)  # refused before anything is written
