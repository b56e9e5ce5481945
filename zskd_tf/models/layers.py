"""Custom layers of the model zoo and of the ZSKT generator, registered so that ``.keras``
files load without extra arguments (``model_io`` imports this module)."""
import keras
import tensorflow as tf

BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default


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


@keras.saving.register_keras_serializable(package="zskd_tf")
class BatchStatNorm(keras.layers.Layer):
    """Batch normalisation over all axes but the last, always with the current batch's
    mean and (biased) variance, then a learnt per-channel scale and shift (gamma 1, beta 0)."""

    def __init__(self, epsilon=BN_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = (int(input_shape[-1]),)
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta")

    def call(self, inputs, training=None):  # ``training`` is ignored on purpose
        x = tf.cast(inputs, tf.float32)  # statistics in float32 under mixed precision
        mean, variance = tf.nn.moments(x, axes=list(range(len(x.shape) - 1)))
        y = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="zskd_tf")
class RangeSquash(keras.layers.Layer):
    """``low + (high - low) * sigmoid(x)`` per channel: any value into (low, high)."""

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = [float(v) for v in low], [float(v) for v in high]

    def call(self, inputs):
        low = tf.constant(self.low, inputs.dtype)
        return low + (tf.constant(self.high, inputs.dtype) - low) * tf.sigmoid(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}
