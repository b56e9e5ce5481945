"""LeNet-5 and LeNet-5-half (docs/methods/zskd.md, "Architectures"; docs/methods/lopes.md,
"Data and networks", calls them "lenet" / "lenet_half").

32x32 input, two 5x5 "valid" convs each followed by ReLU and a 2x2 max pool, then FC 120, FC 84
and the logits. LeNet-5-half halves only the conv widths (6, 16 -> 3, 8). Weights are drawn from
a normal of std 0.1 truncated at two stds, biases are zero. The taps ``conv1``, ``conv2``, ``fc1``
and ``fc2`` are the pre-ReLU outputs (the activations Lopes et al. record).
"""
import keras
from keras import layers

from zskd_tf.models import taps


def lenet5(*, num_classes: int = 10, input_shape=(32, 32, 1), name: str = "lenet5") -> keras.Model:
    """LeNet-5: 61,706 parameters for 10 classes."""
    return _lenet((6, 16), num_classes, input_shape, name)


def lenet5_half(*, num_classes: int = 10, input_shape=(32, 32, 1),
                name: str = "lenet5_half") -> keras.Model:
    """LeNet-5-half: 35,820 parameters for 10 classes."""
    return _lenet((3, 8), num_classes, input_shape, name)


def _lenet(conv_widths, num_classes, input_shape, name):
    def init():
        return keras.initializers.TruncatedNormal(stddev=0.1)

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, filters in enumerate(conv_widths, 1):
        x = layers.Conv2D(filters, 5, kernel_initializer=init(), name=taps.tap(f"conv{i}"))(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"conv{i}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate((120, 84), 1):
        x = layers.Dense(units, kernel_initializer=init(), name=taps.tap(f"fc{i}"))(x)
        x = layers.ReLU(name=f"fc{i}_relu")(x)
    outputs = taps.logits_layer(num_classes, kernel_initializer=init())(x)
    return keras.Model(inputs, outputs, name=name)
