"""Model zoo: sizes and MACs against the specs, taps, initialisation, serialisation,
grouped convs."""
import functools
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import REPO, assert_user_error, cli_env, two_cpu_strategy
from zskd_tf.errors import UserError
from zskd_tf.models import complexity, registry, taps, wrn
from zskd_tf.models.layers import GroupedConv2D


@functools.lru_cache(maxsize=None)
def _model(name, conv="Conv", block="basic"):
    return registry.build_model(name, conv=conv, block=block)


def _weights(model, layer):
    return [w.numpy() for w in model.get_layer(layer).weights]


# --- sizes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params", [
    ("wrn-16-1", 175_066), ("wrn-16-2", 691_674), ("wrn-40-1", 563_930), ("wrn-40-2", 2_243_546),
    ("lenet5", 61_706), ("lenet5_half", 35_820), ("lenet", 61_706), ("lenet_half", 35_820),
    ("hinton1200", 2_395_210), ("hinton800", 1_276_810),
    # docs/methods/zskd.md, "Architectures", counts conv+dense weights and biases; Keras also
    # trains the BN gammas/betas.
    ("alexnet", 1_656_266 + 2_912), ("alexnet_half", 415_978 + 1_456),
])
def test_trainable_params(name, params):
    assert complexity.count_trainable_params(_model(name)) == params


@pytest.mark.parametrize("name, macs", [
    ("wrn-16-1", 26_657_418), ("wrn-16-2", 101_106_954), ("wrn-40-1", 83_280_522)])
def test_standard_wrn_macs(name, macs):
    assert complexity.count_macs(_model(name)) == macs


# docs/methods/kd_at_moonshine.md, "Counting parameters and multiply-accumulates": conv, block,
# trainable params, MACs.
MOONSHINE_WRN_40_2 = [
    ("Conv", "basic", 2_243_546, 327_599_370),
    ("ConvB2", "basic", 856_538, 125_486_346),
    ("DConv", "basic", 293_514, 44_127_498),
    ("DConvB4", "basic", 152_954, 22_832_394),
    ("G8B2", "basic", 372_698, 65_324_298),
    ("A4B2", "basic", 421_082, 61_785_354),
    ("DConvG16", "basic", 641_274, 133_154_058),  # dense 3x3 in group 1's first block
    ("G8B4", "basic", 195_290, 33_670_410),       # likewise
    ("Conv2x2", "basic", 1_007_066, 146_720_010),
    ("ConvB2", "bottle", 431_834, 64_144_650),
    ("DConvB4", "bottle", 81_386, 12_621_066),
    ("G8B2", "bottle", 189_914, 34_063_626),
    ("A4B2", "bottle", 214_106, 32_294_154),
    ("G16B2", "bottle", 238_298, 46_449_930),
]


@pytest.mark.slow
@pytest.mark.parametrize("conv, block, params, macs", MOONSHINE_WRN_40_2)
def test_moonshine_params_and_macs(conv, block, params, macs):
    model = _model("wrn-40-2", conv, block)
    assert (complexity.count_trainable_params(model),
            complexity.count_macs(model)) == (params, macs)


def test_lenet_macs_count_weights_and_biases_per_output_position():
    # conv1 (150+6)*28*28 + conv2 (2400+16)*10*10 + fc 48120 + 10164 + 850
    assert complexity.count_macs(_model("lenet5")) == 156 * 784 + 2416 * 100 + 48120 + 10164 + 850


# --- names and errors --------------------------------------------------------------------------

def test_conv_names_are_case_insensitive_and_canonical():
    assert wrn.parse_conv("dconvg16").name == "DConvG16"
    assert wrn.parse_conv(" g8B2 ") == wrn.parse_conv("G8B2")
    assert wrn.parse_conv("a16b2").groups == 16
    model = registry.build_model("WRN-10-1", conv="conv2X2", block="Bottle")
    assert model.name == "wrn-10-1-Conv2x2-bottle"


def test_g16b4_does_not_fit_wrn_40_2():
    with pytest.raises(UserError, match=r"G16B4 with block basic .*group1_block1_conv1 "
                                        r"\(16->32 channels\).* 8 channels would have 0 groups"):
        registry.build_model("wrn-40-2", conv="G16B4")


@pytest.mark.parametrize("kwargs, fragments", [
    ({"name": "wrn-40-2", "conv": "G3B2"}, ["'G3B2'", "G{2,4,8,16}B{2,4}", "DConvA{2,4,8,16}"]),
    ({"name": "wrn-40-2", "block": "old"}, ["'old'", "basic, bottle"]),
    ({"name": "resnet18"}, ["'resnet18'", "lenet5_half", "hinton800", "wrn-D-K"]),
    ({"name": "wrn-17-2"}, ["6n+4"]),
    ({"name": "wrn-16-0"}, ["6n+4"]),
    ({"name": "lenet5", "conv": "G8B2"}, ["only apply to WRN", "'lenet5'"]),
    ({"name": "alexnet", "block": "bottle"}, ["only apply to WRN"]),
    ({"name": "lenet5", "input_shape": (4, 4, 1)}, ["lenet5", "(4, 4, 1)"]),
    ({"name": "hinton800", "input_shape": (28, 28)}, ["(height, width, channels)"]),
])
def test_user_errors(kwargs, fragments):
    name = kwargs.pop("name")
    with pytest.raises(UserError) as err:
        registry.build_model(name, **kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_families_and_default_input_shapes():
    assert [registry.model_family(n) for n in ("lenet", "hinton1200", "alexnet_half", "WRN-16-1")] \
        == ["lenet", "mlp", "alexnet", "wrn"]
    assert registry.default_input_shape("lenet5", 1) == (32, 32, 1)
    assert registry.default_input_shape("hinton800", 1) == (28, 28, 1)
    assert registry.default_input_shape("wrn-16-2", 1) == (32, 32, 1)
    assert registry.default_input_shape("alexnet") == (32, 32, 3)
    assert registry.build_model("lenet5", input_shape=(32, 32, 3)).input.shape == (None, 32, 32, 3)


# --- the classifier contract ---------------------------------------------------------------------

@pytest.mark.parametrize("name, expected_taps", [
    ("wrn-40-2", ["group1", "group2", "group3"]),
    ("lenet", ["conv1", "conv2", "fc1", "fc2"]),
    ("lenet_half", ["conv1", "conv2", "fc1", "fc2"]),
    ("hinton1200", ["fc1", "fc2"]),
    ("alexnet", ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2"]),
])
def test_contract(name, expected_taps):
    model = _model(name)
    assert model.output.dtype == "float32" and model.output.shape == (None, 10)
    assert isinstance(model.layers[-1], keras.layers.Dense) and model.layers[-1].name == "logits"
    assert model.output is model.get_layer("logits").output
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert taps.tap_names(model) == expected_taps


@pytest.mark.parametrize("name, shapes", [
    ("wrn-40-2", {"group1": (32, 32, 32), "group2": (16, 16, 64), "group3": (8, 8, 128)}),
    ("lenet", {"conv1": (28, 28, 6), "conv2": (10, 10, 16), "fc1": (120,), "fc2": (84,)}),
    ("lenet5_half", {"conv1": (28, 28, 3), "conv2": (10, 10, 8), "fc1": (120,), "fc2": (84,)}),
    ("hinton800", {"fc1": (800,), "fc2": (800,)}),
    ("alexnet_half", {"conv1": (32, 32, 24), "conv2": (15, 15, 64), "conv3": (7, 7, 96),
                      "conv4": (7, 7, 96), "conv5": (7, 7, 64), "fc1": (256,), "fc2": (128,)}),
])
def test_tap_shapes(name, shapes):
    model = _model(name)
    logits, features = taps.with_taps(model)(np.zeros((2, *model.input.shape[1:]), "float32"))
    assert logits.shape == (2, 10)
    assert ({k: tuple(v.shape) for k, v in features.items()}
            == {k: (2, *s) for k, s in shapes.items()})


def test_wrn_taps_are_the_raw_group_sums():
    model = _model("wrn-16-1")
    assert isinstance(model.get_layer("tap_group1").input._keras_history.operation,
                      keras.layers.Add)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    _, features = taps.with_taps(model)(x)
    assert float(tf.reduce_min(features["group3"])) < 0  # before any BN/ReLU


def test_with_taps_selects_in_order_and_rejects_unknown_names():
    model = _model("lenet")
    _, features = taps.with_taps(model, ["fc2", "conv1"])(np.zeros((2, 32, 32, 1), "float32"))
    assert list(features) == ["fc2", "conv1"]
    with pytest.raises(UserError,
                       match="unknown feature tap.*group1.*available: conv1, conv2, fc1, fc2"):
        taps.with_taps(model, ["group1"])


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # keras save
@pytest.mark.parametrize("name, conv", [("alexnet_half", "Conv"), ("wrn-10-1", "G4B2"),
                                        ("wrn-10-1", "DConvB2")])
def test_keras_round_trip_keeps_taps_and_outputs(tmp_path, name, conv):
    model = registry.build_model(name, conv=conv)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert taps.tap_names(loaded) == taps.tap_names(model)
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    want, got = taps.with_taps(model)(x), taps.with_taps(loaded)(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    for key in want[1]:
        np.testing.assert_allclose(got[1][key], want[1][key], rtol=1e-5, atol=1e-5)


# --- initialisation ------------------------------------------------------------------------------

def _assert_std(values, expected, rtol):
    assert abs(np.std(values) / expected - 1) < rtol, (np.std(values), expected)


def test_wrn_initialisation():
    model = _model("wrn-40-2")
    _assert_std(_weights(model, "group3_block2_conv1")[0], math.sqrt(2 / (9 * 128)), 0.03)
    _assert_std(_weights(model, "group3_block1_shortcut")[0], math.sqrt(2 / 128), 0.05)
    _assert_std(_weights(model, "stem_conv")[0], math.sqrt(2 / (9 * 16)), 0.15)
    kernel, bias = _weights(model, "logits")
    assert np.abs(kernel).max() <= 1 / math.sqrt(128) and not bias.any()
    _assert_std(kernel, 1 / math.sqrt(3 * 128), 0.1)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 3 * 2 * 6 + 1
    for bn in bns:
        assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
        gamma, beta, mean, var = (w.numpy() for w in bn.weights)
        assert (gamma == 1).all() and not beta.any() and not mean.any() and (var == 1).all()


@pytest.mark.slow
def test_cheap_conv_initialisation_uses_pytorch_fan_out():
    depthwise = _model("wrn-40-2", "DConv").get_layer("group3_block2_conv1")
    assert isinstance(depthwise, keras.layers.DepthwiseConv2D)
    _assert_std(depthwise.kernel.numpy(), math.sqrt(2 / (9 * 128)), 0.1)
    grouped = _model("wrn-40-2", "G8B2").get_layer("group3_block2_conv1")  # m = 64, 8 groups
    assert isinstance(grouped, GroupedConv2D) and grouped.kernel.shape == (3, 3, 8, 64)
    _assert_std(grouped.kernel.numpy(), math.sqrt(2 / (9 * 64)), 0.07)


def test_lenet_mlp_alexnet_initialisation():
    fc1, bias = _weights(_model("lenet5"), "tap_fc1")
    assert np.abs(fc1).max() <= 0.2 and not bias.any()
    _assert_std(fc1, 0.1 * 0.8796, 0.03)  # a normal truncated at 2 std keeps 88% of its std
    fc1, bias = _weights(_model("hinton1200"), "tap_fc1")
    assert np.abs(fc1).max() <= 2.0 and np.allclose(bias, 0.1)
    _assert_std(fc1, 0.8796, 0.01)
    alex = _model("alexnet")
    _assert_std(_weights(alex, "tap_conv3")[0], 0.01, 0.02)
    assert [_weights(alex, f"tap_conv{i}")[1][0] for i in range(1, 6)] == [0, 1, 0, 1, 1]
    assert not _weights(alex, "tap_fc1")[1].any()
    bn = alex.get_layer("fc1_bn")
    assert (bn.momentum, bn.epsilon) == (0.999, 1e-3)


# --- grouped and Conv2x2 convolutions ------------------------------------------------------------

def test_grouped_conv_matches_keras_grouped_conv():
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 8)).astype("float32")
    ours = GroupedConv2D(12, 3, strides=2, groups=4)
    ours.build(x.shape)
    reference = keras.layers.Conv2D(12, 3, strides=2, groups=4)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_strided_conv2x2_reads_the_corners_of_a_3x3_window():
    inputs = keras.Input((9, 9, 2))
    model = keras.Model(inputs, wrn._padded_conv(inputs, 3, 2, 2, "c", dilation=2))
    kernel = model.get_layer("c").kernel.numpy()
    corners = np.zeros((3, 3, 2, 3), "float32")
    corners[::2, ::2] = kernel
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 2)).astype("float32")
    want = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), corners, 2, "VALID")
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-5)


def _train_step(model, x, y):
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    return loss, tf.linalg.global_norm(grads)


@pytest.mark.slow
def test_grouped_wrn_trains_eagerly_in_tf_function_and_mirrored():
    x = tf.random.stateless_normal((4, 16, 16, 3), seed=(1, 2))
    y = tf.constant([0, 1, 2, 3])
    model = registry.build_model("wrn-10-1", conv="G4B2", input_shape=(16, 16, 3))
    eager = _train_step(model, x, y)
    graph = tf.function(_train_step)(model, x, y)
    np.testing.assert_allclose(graph, eager, rtol=1e-4)

    strategy = two_cpu_strategy()
    with strategy.scope():
        mirrored = registry.build_model("wrn-10-1", conv="DConvA4", input_shape=(16, 16, 3))
        optimizer = keras.optimizers.SGD(0.1)

    @tf.function
    def step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                logits = mirrored(x, training=True)
                loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True)) / 4
            optimizer.apply(tape.gradient(loss, mirrored.trainable_variables),
                            mirrored.trainable_variables)
            return loss
        return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y)), axis=None)

    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    for xb, yb in dataset:
        assert np.isfinite(float(step(xb, yb)))


# --- tools/count_params.py -----------------------------------------------------------------------

def _count_params(*args):
    return subprocess.run([sys.executable, f"{REPO}/tools/count_params.py", *args], cwd="/",
                          env=cli_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_count_params_tool_prints_a_row_per_combination():
    proc = _count_params("--model=wrn-40-2,wrn-16-1", "--conv=conv,G8B2", "--block=bottle")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0] == ["model", "conv", "block", "params", "MACs"]
    assert rows[1:3] == [["wrn-40-2", "Conv", "bottle", "1,079,642", "157,730,058"],
                         ["wrn-40-2", "G8B2", "bottle", "189,914", "34,063,626"]]
    assert [row[:3] for row in rows[3:]] == [["wrn-16-1", "Conv", "bottle"],
                                             ["wrn-16-1", "G8B2", "bottle"]]


@pytest.mark.slow
def test_count_params_tool_rejects_a_bad_conv_in_one_line():
    proc = _count_params("--model=wrn-40-2", "--conv=Conv,G3B2")
    assert_user_error(proc, "unknown conv 'G3B2'", "G{2,4,8,16}B{2,4}")
    assert len(proc.stderr.splitlines()) == 1 and not proc.stdout


def test_taps_of_a_reloaded_sequential_model(tmp_path):
    """Users' teachers are often keras.Sequential; reloaded, they have no ``model.input``."""
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "s.keras")
    reloaded = keras.saving.load_model(tmp_path / "s.keras")
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype(np.float32)
    logits, tapped = taps.with_taps(reloaded, ())(x)
    np.testing.assert_allclose(logits, reloaded(x), rtol=1e-6)
    assert tapped == {}
    logits, bn_inputs = taps.with_batchnorm_inputs(reloaded)(x)
    assert len(bn_inputs) == 1 and tuple(bn_inputs[0].shape) == (2, 10, 10, 4)
