"""``small_cnn``: the default student of a teacher outside the zoo (``--student=auto``).

A plain VGG-style CNN sized from the input shape: stages of two 3x3 "same" convolutions (ReLU)
and a 2x2 max pool, 16 channels in the first stage and twice as many in each next one, added
while the feature map is at least 8 pixels on its shorter side (at most four stages: 28x28 ->
two stages, 32x32 -> three, 224x224 -> four); then global average pooling and the logits. No
BatchNormalization, so that it trains the same on any batch of synthetic images. Taps: the
output of each stage's second convolution (``stage1`` ...), pre-ReLU. 16,698 parameters at
28x28x1 with 10 classes (two stages).
"""
import keras
from keras import layers

from zskd_tf.models import taps

FIRST_WIDTH = 16
MAX_STAGES = 4
MIN_SIDE = 8  # a stage is added while the feature map's shorter side is at least this


def num_stages(input_shape) -> int:
    """Conv stages of a ``small_cnn`` on inputs of ``input_shape`` (H, W, C); at least one."""
    side, stages = min(input_shape[:2]), 0
    while stages < MAX_STAGES and side >= MIN_SIDE:
        side //= 2
        stages += 1
    return max(stages, 1)


def small_cnn(*, num_classes: int = 10, input_shape=(32, 32, 3),
              name: str = "small_cnn") -> keras.Model:
    """The small CNN for ``input_shape``; see the module docstring."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for stage in range(1, num_stages(input_shape) + 1):
        width = FIRST_WIDTH * 2 ** (stage - 1)
        x = layers.Conv2D(width, 3, padding="same", activation="relu",
                          name=f"stage{stage}_conv1")(x)
        x = layers.Conv2D(width, 3, padding="same", name=taps.tap(f"stage{stage}"))(x)
        x = layers.ReLU(name=f"stage{stage}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = taps.logits_layer(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)
