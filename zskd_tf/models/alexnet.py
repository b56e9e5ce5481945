"""The CIFAR-10 AlexNet teacher and AlexNet-half student of ZSKD (docs/methods/zskd.md,
"Architectures").

Input 32x32x3 in [0, 1]. Conv blocks: conv ("same", stride 1) -> ReLU -> [LRN] -> [3x3/2 "valid"
max pool] -> BN; FC blocks: Dense -> ReLU -> dropout 0.5 -> BN; then the logits. BN as
tf.contrib's defaults (momentum 0.999, epsilon 1e-3). Weights N(0, 0.01); biases 0 except conv2,
conv4 and conv5 (1.0). AlexNet-half halves every conv and hidden FC width.

Parameters of conv and dense layers: AlexNet 1,656,266, AlexNet-half 415,978; the BNs add 2,912
and 1,456 trainable gammas/betas. Taps: the pre-ReLU outputs ``conv1``..``conv5``, ``fc1``, ``fc2``.
"""
import keras
from keras import layers

from zskd_tf.models import taps
from zskd_tf.models.layers import LocalResponseNormalization

# filters, kernel, bias init, LRN, max pool
_CONVS = ((48, 5, 0.0, True, True), (128, 5, 1.0, True, True), (192, 3, 0.0, False, False),
          (192, 3, 1.0, False, False), (128, 3, 1.0, False, True))
_FCS = (512, 256)


def alexnet(*, num_classes: int = 10, input_shape=(32, 32, 3),
            name: str = "alexnet") -> keras.Model:
    return _alexnet(1, num_classes, input_shape, name)


def alexnet_half(*, num_classes: int = 10, input_shape=(32, 32, 3),
                 name: str = "alexnet_half") -> keras.Model:
    return _alexnet(2, num_classes, input_shape, name)


def _alexnet(divisor, num_classes, input_shape, name):
    def normal():
        return keras.initializers.RandomNormal(stddev=0.01)

    def bn(layer_name):
        return layers.BatchNormalization(momentum=0.999, epsilon=1e-3, name=layer_name)

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, (filters, kernel, bias, lrn, pool) in enumerate(_CONVS, 1):
        x = layers.Conv2D(filters // divisor, kernel, padding="same", kernel_initializer=normal(),
                          bias_initializer=keras.initializers.Constant(bias),
                          name=taps.tap(f"conv{i}"))(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        if lrn:
            x = LocalResponseNormalization(name=f"conv{i}_lrn")(x)
        if pool:
            x = layers.MaxPooling2D(3, 2, name=f"conv{i}_pool")(x)
        x = bn(f"conv{i}_bn")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(_FCS, 1):
        x = layers.Dense(units // divisor, kernel_initializer=normal(), name=taps.tap(f"fc{i}"))(x)
        x = layers.ReLU(name=f"fc{i}_relu")(x)
        x = layers.Dropout(0.5, name=f"fc{i}_dropout")(x)
        x = bn(f"fc{i}_bn")(x)
    outputs = taps.logits_layer(num_classes, kernel_initializer=normal())(x)
    return keras.Model(inputs, outputs, name=name)
