"""Analytic model size and cost per sample (the convention of docs/methods/kd_at_moonshine.md,
"Counting parameters and multiply-accumulates").

MACs are counted for Conv2D, DepthwiseConv2D and Dense layers: the layer's weights (a grouped
conv's real kernel, plus one per bias) times its output positions. This is Moonshine's
``count_flops.py`` convention, whose FC counts its bias; BN, activations and pooling are free.
"""
import math

import keras

_MAC_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def count_trainable_params(model: keras.Model) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass of one sample."""
    return sum(_weights(layer) * math.prod(layer.output.shape[1:-1])
               for layer in model.layers if isinstance(layer, _MAC_LAYERS))


def _weights(layer) -> int:
    bias = math.prod(layer.bias.shape) if layer.use_bias else 0
    return math.prod(layer.kernel.shape) + bias
