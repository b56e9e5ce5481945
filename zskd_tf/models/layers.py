"""Custom layers of the model zoo, registered so that ``.keras`` files load without extra
arguments."""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="zskd_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """``tf.nn.local_response_normalization`` over the channel (last) axis.

    out = x / (bias + alpha * sum of x**2 over the 2*depth_radius+1 nearest channels) ** beta.
    TensorFlow's alpha is not divided by the window size (torch's LocalResponseNorm is).
    """

    def __init__(self, depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        return tf.nn.local_response_normalization(
            inputs, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
            beta=self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="zskd_tf")
class GroupedConv2D(keras.layers.Conv2D):
    """``Conv2D(groups=g)`` computed as g convolutions on slices of the input and the kernel.

    Same weights and results as Keras's grouped ``Conv2D``, which the TF backend runs through XLA:
    on CPU its gradient is an order of magnitude or more slower than this (WRN-40-2 G8B2 training
    step ~9x, DConvG2 ~100x), and eagerly it recompiles at every call. TF's native grouped conv
    is no way out: it fails on CPU once grappler fuses it with a BN or bias+ReLU (oneDNN off).
    """

    def convolution_op(self, inputs, kernel):
        axis = -1 if self.data_format == "channels_last" else 1
        return keras.ops.concatenate([
            keras.ops.conv(x, k, strides=self.strides, padding=self.padding,
                           dilation_rate=self.dilation_rate, data_format=self.data_format)
            for x, k in zip(keras.ops.split(inputs, self.groups, axis=axis),
                            keras.ops.split(kernel, self.groups, axis=-1))], axis=axis)
