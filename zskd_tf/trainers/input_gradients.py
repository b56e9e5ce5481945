"""A faster gradient with respect to the images through a frozen teacher's first convolution.

Image synthesis (ZSKD impressions, Lopes reconstructions) differentiates the teacher with
respect to its *input*. For a first convolution with few input channels (LeNet-5: 1 channel
in, 6 out, 5x5) that input gradient is a transposed convolution producing a 1-channel image,
which oneDNN runs at a small fraction of the CPU's speed: it was ~40 % of a LeNet-5 synthesis
step on our 2-core Xeon.

The same gradient is a convolution on space-to-depth blocks: with the image cut into 2x2
blocks (``H/2 x W/2 x 4C``) and the output likewise (``Ho/2 x Wo/2 x 4F``), a ``k x k`` valid
convolution becomes a ``(k//2 + 1)``-square valid convolution from ``4C`` to ``4F`` channels
whose kernel is the original one rearranged (zero where a block offset falls outside it). Its
input gradient has ``4C`` output channels and runs ~2.7x faster for LeNet-5's first layer.

:func:`accelerate_input_gradients` gives every eligible ``Conv2D`` of a Keras model a
convolution whose *forward* pass is the layer's own op (identical outputs) and whose gradient
with respect to the input goes through the block form (equal up to float rounding). The
gradient with respect to the kernel is not computed: use it on frozen models only.
Eligible: 2-D, channels-last, stride 1, no dilation, ``valid`` padding, at most
``MAX_CHANNELS`` input channels, even input and output sizes.

With ``gradient_dtype="bfloat16"`` (``--bfloat16_input_gradient``) every convolution's input
gradient, block form or not, is computed in bfloat16 (upstream gradient and kernel rounded to
bfloat16; oneDNN accumulates in float32) and cast back to float32. The forward pass and
everything else stay float32. On a CPU with AMX or AVX512-BF16 this runs more LeNet-5
image-steps/s (1.3-1.9x measured, by the host's state); the gradient differs from float32's by
bfloat16 rounding (cosine ~0.99999).
Without such hardware it is slower: leave it off there.
"""
from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

MAX_CHANNELS = 4
BLOCK = 2


def block_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """(k_h, k_w, C, F) kernel -> the (q_h, q_w, 4C, 4F) kernel of the 2x2 space-to-depth form.

    ``out[q_h, q_w, (s_h, s_w, c), (r_h, r_w, f)] = kernel[2 q_h + s_h - r_h, 2 q_w + s_w - r_w,
    c, f]`` (zero outside the kernel), the depth orders of ``tf.nn.space_to_depth``.
    """
    k_h, k_w, channels, filters = kernel.shape
    index = _block_kernel_index(k_h, k_w)  # (q_h, q_w, 4, 4) into the zero-padded taps
    taps = tf.reshape(kernel, (k_h * k_w, channels, filters))
    taps = tf.concat([taps, tf.zeros((1, channels, filters), kernel.dtype)], axis=0)
    blocks = tf.gather(taps, index)                    # (q_h, q_w, 4[s], 4[r], C, F)
    blocks = tf.transpose(blocks, (0, 1, 2, 4, 3, 5))  # (q_h, q_w, s, C, r, F)
    q_h, q_w = index.shape[:2]
    return tf.reshape(blocks, (q_h, q_w, BLOCK * BLOCK * channels, BLOCK * BLOCK * filters))


def _block_kernel_index(k_h: int, k_w: int) -> np.ndarray:
    q_h, q_w = k_h // BLOCK + 1, k_w // BLOCK + 1
    index = np.full((q_h, q_w, BLOCK * BLOCK, BLOCK * BLOCK), k_h * k_w, dtype=np.int32)
    for qh in range(q_h):
        for qw in range(q_w):
            for s in range(BLOCK * BLOCK):
                for r in range(BLOCK * BLOCK):
                    a = BLOCK * qh + s // BLOCK - r // BLOCK
                    b = BLOCK * qw + s % BLOCK - r % BLOCK
                    if 0 <= a < k_h and 0 <= b < k_w:
                        index[qh, qw, s, r] = a * k_w + b
    return index


def conv_with_block_input_gradient(inputs, kernel, gradient_dtype=tf.float32):
    """``valid`` stride-1 ``conv2d(inputs, kernel)``; d/d inputs via the block form, computed
    in ``gradient_dtype``."""
    kernel = tf.convert_to_tensor(kernel)

    @tf.custom_gradient
    def conv(x):
        def gradient(upstream):
            blocks = tf.nn.space_to_depth(upstream, BLOCK)
            shape = tf.shape(x)
            block_shape = tf.stack([shape[0], shape[1] // BLOCK, shape[2] // BLOCK,
                                    shape[3] * BLOCK * BLOCK])
            grad = _input_gradient(block_shape, block_kernel(kernel), blocks, (1, 1), "VALID",
                                   gradient_dtype)
            return tf.nn.depth_to_space(grad, BLOCK)

        return tf.nn.conv2d(x, kernel, 1, "VALID"), gradient

    return conv(inputs)


def conv_with_input_gradient_in(forward, strides, padding: str, gradient_dtype):
    """A layer's ``convolution_op(inputs, kernel)``: the forward is ``forward`` (the layer's
    own op), d/d inputs is ``Conv2DBackpropInput`` in ``gradient_dtype``."""
    def convolution_op(inputs, kernel):
        kernel = tf.convert_to_tensor(kernel)

        @tf.custom_gradient
        def conv(x):
            def gradient(upstream):
                return _input_gradient(tf.shape(x), kernel, upstream, strides, padding,
                                       gradient_dtype)

            return forward(x, kernel), gradient

        return conv(inputs)

    return convolution_op


def _input_gradient(input_sizes, kernel, upstream, strides, padding, dtype):
    grad = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=input_sizes, filter=tf.cast(kernel, dtype),
        out_backprop=tf.cast(upstream, dtype), strides=[1, *strides, 1], padding=padding)
    return tf.cast(grad, upstream.dtype)


def eligible(layer) -> bool:
    """A :func:`low_precision_eligible` layer that the block form also fits."""
    if not low_precision_eligible(layer):
        return False
    shape = layer.input.shape if _has_input(layer) else None
    if shape is None or None in shape[1:3]:
        return False
    k_h, k_w = layer.kernel_size
    height, width, channels = shape[1:]
    return (tuple(layer.strides) == (1, 1) and layer.padding == "valid"
            and channels <= MAX_CHANNELS
            and height % BLOCK == 0 and width % BLOCK == 0
            and (height - k_h + 1) % BLOCK == 0 and (width - k_w + 1) % BLOCK == 0)


def _has_input(layer) -> bool:
    try:
        layer.input  # noqa: B018 (only functional-graph layers have one)
    except (AttributeError, ValueError):
        return False
    return True


def low_precision_eligible(layer) -> bool:
    """Any channels-last, ungrouped, undilated Conv2D: its input gradient is one
    ``Conv2DBackpropInput``."""
    return (type(layer) is keras.layers.Conv2D and layer.built
            and layer.data_format == "channels_last" and layer.groups == 1
            and tuple(layer.dilation_rate) == (1, 1))


def accelerate_input_gradients(model: keras.Model, block_form: bool = True,
                               gradient_dtype: str = "float32") -> list[str]:
    """Patches the Conv2D layers of ``model`` in place: the eligible ones get the block form
    (if ``block_form``); with ``gradient_dtype="bfloat16"`` every layer that
    :func:`low_precision_eligible` accepts computes its input gradient in bfloat16. Returns the
    names of the patched layers."""
    dtype = tf.as_dtype(gradient_dtype)
    patched = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if block_form and eligible(layer):
            layer.convolution_op = functools.partial(conv_with_block_input_gradient,
                                                     gradient_dtype=dtype)
        elif dtype != tf.float32 and low_precision_eligible(layer):
            layer.convolution_op = conv_with_input_gradient_in(
                layer.convolution_op, tuple(layer.strides), layer.padding.upper(), dtype)
        else:
            continue
        patched.append(layer.name)
    return patched
