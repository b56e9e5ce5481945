"""--student_init=teacher: a narrower copy filled with the teacher's most important channels."""
import keras
import numpy as np
import pytest

from zskd_tf.errors import UserError
from zskd_tf.models import narrower, teacher_channels


def _teacher_with_dead_half():
    """A chain whose dropped channels are exactly dead: the half-width copy that keeps the
    live ones computes the teacher's function. Live and dead channels are interleaved, so a
    copy that kept the first half would be wrong."""
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.SeparableConv2D(6, 1, activation="relu", name="separable")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(4, name="scores")(x)
    model = keras.Model(inputs, keras.layers.Softmax()(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype("float32")
                           for w in layer.get_weights()])
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    dead = np.arange(8) % 2 == 1
    gamma[dead], beta[dead], variance[:] = 0.0, 0.0, np.abs(variance) + 0.5
    gamma[~dead] = np.sign(gamma[~dead]) * (np.abs(gamma[~dead]) + 1.0)
    bn.set_weights([gamma, beta, mean, variance])
    depthwise = model.get_layer("depthwise")
    kernel, bias = depthwise.get_weights()
    bias[np.repeat(dead, 2)] = 0.0  # channel c's outputs are 2c and 2c + 1
    depthwise.set_weights([kernel, bias])
    for name, dead_out in (("separable", [0, 2, 5]), ("hidden", [1, 3, 4, 7, 8])):
        layer = model.get_layer(name)
        weights = layer.get_weights()
        weights[-2][..., dead_out] = 0.0  # the kernel (pointwise) columns and the bias
        weights[-1][dead_out] = 0.0
        layer.set_weights(weights)
    return model


def test_the_copy_keeps_the_teachers_live_channels_and_computes_its_function():
    teacher = _teacher_with_dead_half()
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


def test_a_model_that_merges_branches_is_refused_and_its_copy_left_alone():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([x, y]))
    teacher = keras.Model(inputs, keras.layers.Dense(3)(x))
    copy = narrower.narrower_copy(teacher)
    before = [w.copy() for w in copy.get_weights()]
    with pytest.raises(UserError, match="reads several tensors"):
        teacher_channels.take_teacher_channels(teacher, copy)
    for a, b in zip(before, copy.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_api_gives_the_same_student_as_the_pipeline(tmp_path):
    import zskd_tf

    teacher = _teacher_with_dead_half()
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
