"""The ZSKT generator: noise z -> images in the teacher's normalised input space
(docs/methods/zskt.md, "Generator").

Linear(z_dim -> 128 x H/4 x W/4) -> reshape -> BN (no activation) -> nearest x2 -> conv3x3 128
-> BN -> LeakyReLU(0.2) -> nearest x2 -> conv3x3 64 -> BN -> LeakyReLU(0.2) -> conv3x3 C ->
affine BN. No tanh and no clamping: the last BN puts the output near zero mean and unit
variance per channel, i.e. in the normalised space the teacher was trained in.

Every BN normalises with the statistics of the batch it is given, whatever ``training`` says:
the reference keeps the generator in train mode for the whole of ZSKT. PyTorch also keeps
running statistics for these layers, but ZSKT never reads them, so
:class:`~zskd_tf.models.layers.BatchStatNorm` has none. Weights and biases use PyTorch's
default initialisation, U(+-1/sqrt(fan_in)).

``output_range=(low, high)`` (not in the paper) squashes that output into the teacher's valid
input range with a per-channel ``low + (high - low) * sigmoid(.)`` (``RangeSquash``): for
teachers fed raw-range inputs (x/255 in [0, 1], e.g. LeNet-5), whose inputs the unbounded
output would otherwise leave.
"""
from __future__ import annotations

import math

import keras
from keras import layers

from zskd_tf.errors import UserError
from zskd_tf.models.layers import BatchStatNorm, RangeSquash

SEED_CHANNELS = 128


def _torch_default(fan_in: int) -> dict:
    """PyTorch's Linear/Conv default: weights and biases ~ U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_initializer": keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def _conv(x, filters: int, name: str):
    # Stride 1: "same" pads 1 on every side, like PyTorch's padding=1.
    return layers.Conv2D(filters, 3, padding="same", name=name,
                         **_torch_default(9 * int(x.shape[-1])))(x)


def generator(output_shape=(32, 32, 3), z_dim: int = 100, name: str = "generator",
              output_range=None, width: int = SEED_CHANNELS) -> keras.Model:
    """The generator for images of ``output_shape``.

    Args:
        output_shape: (H, W, C) of the images; H and W must be multiples of 4.
        z_dim: length of the noise vector z.
        name: the Keras model's name.
        output_range: None (the paper: the final BN's output as is) or per-channel
            ``(low, high)`` sequences to squash the output into.
        width: channels of the seed and of the first convolution; the second has half as many
            (the paper: 128, i.e. 128 and 64). A narrower generator matches a small student's
            capacity (docs/methods/zskt.md, "Generator") and costs less.

    Returns:
        A Keras model from z (batch, z_dim) to images (batch, H, W, C), float32 output.
    """
    height, image_width, channels = (int(d) for d in output_shape)
    if width < 2:
        raise UserError(f"the generator's width must be at least 2, got {width}")
    if height % 4 or image_width % 4 or min(height, image_width, channels, z_dim) < 1:
        raise UserError(f"the ZSKT generator makes images whose height and width are multiples "
                        f"of 4 (it upsamples an H/4 x W/4 seed twice); got {tuple(output_shape)}")
    z = keras.Input(shape=(z_dim,), name="z")
    x = layers.Dense(width * (height // 4) * (image_width // 4), name="linear",
                     **_torch_default(z_dim))(z)
    x = layers.Reshape((height // 4, image_width // 4, width), name="seed")(x)
    x = BatchStatNorm(name="bn0")(x)
    x = layers.UpSampling2D(2, interpolation="nearest", name="up1")(x)
    x = _conv(x, width, "conv1")
    x = layers.LeakyReLU(negative_slope=0.2, name="lrelu1")(BatchStatNorm(name="bn1")(x))
    x = layers.UpSampling2D(2, interpolation="nearest", name="up2")(x)
    x = _conv(x, width // 2, "conv2")
    x = layers.LeakyReLU(negative_slope=0.2, name="lrelu2")(BatchStatNorm(name="bn2")(x))
    x = _conv(x, channels, "conv3")
    images = BatchStatNorm(name="bn3", dtype="float32")(x)
    if output_range is not None:
        low, high = ([float(v) for v in keras.ops.convert_to_numpy(b).reshape(-1)]
                     for b in output_range)
        if len(low) == 1 < channels:
            low, high = low * channels, high * channels
        images = RangeSquash(low, high, name="squash", dtype="float32")(images)
    return keras.Model(z, images, name=name)
