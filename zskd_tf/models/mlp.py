"""Hinton's fully connected MNIST nets "hinton1200" and "hinton800" (docs/methods/lopes.md,
"Data and networks").

The image is flattened inside the model. hinton1200 (teacher, 784-1200-1200-10) drops inputs with
rate 0.2 and each hidden ReLU output with rate 0.5 (inverted dropout, as TF1's ``tf.nn.dropout``);
hinton800 (student, 784-800-800-10) has no dropout. Weights: normal of std 1.0 truncated at two
stds (TF1's default, hence logits in the hundreds), biases 0.1. Taps ``fc1``, ``fc2``: pre-ReLU.
"""
import keras
from keras import layers

from zskd_tf.models import taps


def hinton1200(*, num_classes: int = 10, input_shape=(28, 28, 1),
               name: str = "hinton1200") -> keras.Model:
    """784-1200-1200-10 with dropout: 2,395,210 parameters."""
    return _mlp(1200, 0.2, 0.5, num_classes, input_shape, name)


def hinton800(*, num_classes: int = 10, input_shape=(28, 28, 1),
              name: str = "hinton800") -> keras.Model:
    """784-800-800-10 without dropout: 1,276,810 parameters."""
    return _mlp(800, 0.0, 0.0, num_classes, input_shape, name)


def _mlp(units, input_dropout, hidden_dropout, num_classes, input_shape, name):
    def init():  # fresh initializers for every layer
        return {"kernel_initializer": keras.initializers.TruncatedNormal(stddev=1.0),
                "bias_initializer": keras.initializers.Constant(0.1)}

    inputs = keras.Input(shape=input_shape)
    x = layers.Flatten(name="flatten")(inputs)
    if input_dropout:
        x = layers.Dropout(input_dropout, name="input_dropout")(x)
    for i in (1, 2):
        x = layers.Dense(units, name=taps.tap(f"fc{i}"), **init())(x)
        x = layers.ReLU(name=f"fc{i}_relu")(x)
        if hidden_dropout:
            x = layers.Dropout(hidden_dropout, name=f"fc{i}_dropout")(x)
    outputs = taps.logits_layer(num_classes, **init())(x)
    return keras.Model(inputs, outputs, name=name)
