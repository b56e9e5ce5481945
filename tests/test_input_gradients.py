"""The space-to-depth input gradient of few-channel first convolutions
(trainers/input_gradients)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from zskd_tf.models import registry
from zskd_tf.trainers import input_gradients as ig
from zskd_tf.trainers.impressions import ImpressionSynthesizer

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("k_h,k_w,channels,filters,height,width", [
    (5, 5, 1, 6, 32, 32),  # LeNet-5's first layer
    (3, 3, 3, 4, 10, 8),
    (5, 3, 2, 5, 12, 14),
])
def test_block_form_gives_the_convolutions_input_gradient(k_h, k_w, channels, filters,
                                                           height, width):
    x = tf.constant(RNG.normal(size=(3, height, width, channels)), tf.float32)
    kernel = tf.constant(RNG.normal(size=(k_h, k_w, channels, filters)), tf.float32)
    out_h, out_w = height - k_h + 1, width - k_w + 1
    upstream = tf.constant(RNG.normal(size=(3, out_h, out_w, filters)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        plain = tf.nn.conv2d(x, kernel, 1, "VALID")
        fast = ig.conv_with_block_input_gradient(x, kernel)
    np.testing.assert_array_equal(fast.numpy(), plain.numpy())  # the forward is the same op
    want = tape.gradient(plain, x, output_gradients=upstream).numpy()
    got = tape.gradient(fast, x, output_gradients=upstream).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _conv_model(input_shape, **conv_kwargs):
    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(4, 3, name="conv", **conv_kwargs)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(h)))


@pytest.mark.parametrize("input_shape,conv_kwargs,patched", [
    ((8, 8, 1), {}, True),
    ((8, 8, 3), {}, True),
    ((8, 8, 8), {}, False),                     # too many channels to gain
    ((8, 8, 1), {"strides": 2}, False),
    ((8, 8, 1), {"padding": "same"}, False),
    ((8, 8, 1), {"dilation_rate": 2}, False),
    ((9, 9, 1), {}, False),                     # odd input
    ((7, 8, 1), {}, False),
])
def test_only_eligible_convolutions_are_patched(input_shape, conv_kwargs, patched):
    model = _conv_model(input_shape, **conv_kwargs)
    assert ig.accelerate_input_gradients(model) == (["conv"] if patched else [])


def test_lenet5_teacher_gradient_and_synthesis_are_unchanged():
    keras.utils.set_random_seed(0)
    weights = registry.build_model("lenet5", input_shape=(32, 32, 1)).get_weights()
    x0 = RNG.uniform(0, 1, (6, 32, 32, 1)).astype(np.float32)
    targets = RNG.dirichlet(np.ones(10), 6).astype(np.float32)
    results = {}
    for fast in (False, True):
        teacher = registry.build_model("lenet5", input_shape=(32, 32, 1))
        teacher.set_weights(weights)
        synth = ImpressionSynthesizer(teacher, x0.shape, 20.0, (0.0, 1.0),
                                      fast_input_gradient=fast)
        assert synth.accelerated_layers == (["tap_conv1"] if fast else [])
        synth.compile(optimizer=keras.optimizers.Adam(0.01, epsilon=1e-8))
        x = tf.constant(x0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = synth.synthesis_loss(x, tf.constant(targets))
        results[fast] = tape.gradient(loss, x).numpy(), synth.optimise(x0, targets, 20)
    (grad_plain, images_plain), (grad_fast, images_fast) = results[False], results[True]
    np.testing.assert_allclose(grad_fast, grad_plain, rtol=1e-4,
                               atol=1e-5 * np.abs(grad_plain).max())
    np.testing.assert_allclose(images_fast, images_plain, atol=1e-4)
    assert np.abs(images_plain - x0).max() > 0.05  # the images did move


def _cosine(a, b):
    return float(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("input_shape,conv_kwargs,block", [
    ((8, 8, 1), {}, True),                            # block form, in bfloat16
    ((8, 8, 8), {}, False),                           # too many channels for the block form
    ((9, 9, 3), {"strides": 2, "padding": "same"}, False),
])
def test_bfloat16_input_gradient_is_float32s_up_to_bfloat16_rounding(input_shape, conv_kwargs,
                                                                    block):
    keras.utils.set_random_seed(1)
    model = _conv_model(input_shape, **conv_kwargs)
    x = tf.constant(RNG.normal(size=(4, *input_shape)), tf.float32)

    def forward_and_gradient():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
            loss = tf.reduce_sum(tf.sin(3 * y))
        return y.numpy(), tape.gradient(loss, x).numpy()

    y32, g32 = forward_and_gradient()
    assert ig.accelerate_input_gradients(model, block_form=block,
                                         gradient_dtype="bfloat16") == ["conv"]
    y16, g16 = forward_and_gradient()
    np.testing.assert_array_equal(y16, y32)  # the forward pass is untouched
    assert not np.array_equal(g16, g32)      # the gradient is rounded ...
    np.testing.assert_allclose(g16, g32, rtol=0, atol=2e-2 * np.abs(g32).max())
    assert _cosine(g16, g32) > 0.9999        # ... and only rounded


def test_bfloat16_input_gradient_patches_every_undilated_conv_and_nothing_by_default():
    model = _conv_model((8, 8, 8), strides=2, padding="same")
    assert ig.accelerate_input_gradients(model, block_form=False) == []
    dilated = _conv_model((8, 8, 1), dilation_rate=2)
    assert ig.accelerate_input_gradients(dilated, gradient_dtype="bfloat16") == []


def test_lenet5_bfloat16_input_gradient_synthesis_follows_float32():
    keras.utils.set_random_seed(0)
    weights = registry.build_model("lenet5", input_shape=(32, 32, 1)).get_weights()
    x0 = RNG.uniform(0, 1, (6, 32, 32, 1)).astype(np.float32)
    targets = RNG.dirichlet(np.ones(10), 6).astype(np.float32)
    images, losses = {}, {}
    for bfloat16 in (False, True):
        teacher = registry.build_model("lenet5", input_shape=(32, 32, 1))
        teacher.set_weights(weights)
        synth = ImpressionSynthesizer(teacher, x0.shape, 20.0, (0.0, 1.0),
                                      bfloat16_input_gradient=bfloat16)
        assert synth.accelerated_layers == ["tap_conv1", "tap_conv2"][:1 + bfloat16]
        synth.compile(optimizer=keras.optimizers.Adam(0.01, epsilon=1e-8))
        images[bfloat16] = synth.optimise(x0, targets, 20)
        losses[bfloat16] = float(synth.synthesis_loss(tf.constant(images[bfloat16]),
                                                      tf.constant(targets)))
    moved = np.abs(images[False] - x0).mean()
    assert moved > 0.05
    # bfloat16 gradients flip Adam's step on pixels whose gradient is near 0, so the paths part
    # a little: 5.4 % of the distance moved on an AMD Zen 5 (native AVX512-BF16), under 5 % on
    # the Xeon this bound was first set on. A wrong gradient would part them by ~100 %.
    assert np.abs(images[True] - images[False]).mean() < 0.1 * moved
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
