"""Wide residual networks WRN-d-k with Moonshine's cheap convolutions
(docs/methods/kd_at_moonshine.md, "Wide ResNets and cheap convolutions").

Pre-activation BasicBlocks; PyTorch's symmetric padding (``ZeroPadding2D`` + "valid" conv), BN
momentum 0.9 / epsilon 1e-5, He fan-out normal init of every conv, PyTorch's default init of the
final Dense with a zero bias. The taps ``tap_group1..3`` are the raw outputs of the residual groups
(the sum after each group's last block, before any BN/ReLU).

``conv`` replaces every 3x3 conv inside the residual blocks (never the stem nor the 1x1
shortcut) by one of Moonshine's substitutes, ``block`` chooses two substitutes per block
("basic") or one ("bottle"). With m the bottleneck width (output channels // b):

- ``Conv``: 3x3 conv; ``Conv2x2``: 2x2 conv with dilation 2 (the corners of a 3x3).
- ``ConvB{b}``: 1x1 down to m, 3x3 m->m, 1x1 up.
- ``DConv``, ``DConvG{k}``, ``DConvA{g}``: 3x3 grouped conv in->in, then 1x1 up; groups = in
  (depthwise), in // k (k channels per group), or g.
- ``DConvB{b}``, ``G{k}B{b}``, ``A{g}B2``: 1x1 down to m, 3x3 grouped conv m->m with groups m
  (depthwise), m // k, or g, then 1x1 up.

Every conv but the last of a substitute is followed by BN and ReLU. Groups come from integer
division as in the PyTorch repo, so narrow layers may get one group (DConvG16, G16B2 and G8B4 are
dense in group 1 of WRN-40-2); zero groups (G16B4 on WRN-40-2) is a ``UserError``. A 3x3 conv
with as many groups as channels is a ``DepthwiseConv2D``, other grouped ones ``GroupedConv2D``.
"""
import dataclasses
import math
import re

import keras
from keras import layers

from zskd_tf.errors import UserError
from zskd_tf.models import taps
from zskd_tf.models.layers import GroupedConv2D

BLOCKS = ("basic", "bottle")


@dataclasses.dataclass(frozen=True)
class CheapConv:
    """One of Moonshine's substitutes for a 3x3 convolution."""
    name: str = "Conv"
    bottleneck: int | None = None   # 1x1 down to out // bottleneck channels first, 1x1 up last
    groups: int | None = None       # the 3x3 conv's number of groups ...
    group_width: int | None = None  # ... or its channels per group
    kernel: int = 3
    dilation: int = 1

    @property
    def pointwise(self) -> bool:
        """Whether a 1x1 conv to the output width follows the spatial conv."""
        return self.bottleneck is not None or self.groups != 1

    def groups_for(self, width: int) -> int:
        return self.groups if self.groups is not None else width // self.group_width


# Pattern (also the canonical spelling) -> the substitute, given the pattern's numbers.
_SUBSTITUTES = {
    "Conv": lambda: CheapConv(groups=1),
    "Conv2x2": lambda: CheapConv(groups=1, kernel=2, dilation=2),
    "ConvB{2,4,8,16}": lambda b: CheapConv(bottleneck=b, groups=1),
    "DConv": lambda: CheapConv(group_width=1),
    "DConvG{2,4,8,16}": lambda k: CheapConv(group_width=k),
    "DConvA{2,4,8,16}": lambda g: CheapConv(groups=g),
    "DConvB{2,4,8,16}": lambda b: CheapConv(bottleneck=b, group_width=1),
    "G{2,4,8,16}B{2,4}": lambda k, b: CheapConv(bottleneck=b, group_width=k),
    "A{2,4,8,16}B2": lambda g: CheapConv(bottleneck=2, groups=g),
}
CONV_PATTERNS = tuple(_SUBSTITUTES)
_CHOICES = re.compile(r"\{([\d,]+)\}")


def parse_conv(name: str) -> CheapConv:
    """The substitute called ``name`` (case-insensitive), e.g. ``"g8b2"`` -> ``G8B2``."""
    for pattern, make in _SUBSTITUTES.items():
        regex = _CHOICES.sub(lambda m: "(" + m.group(1).replace(",", "|") + ")", pattern)
        match = re.fullmatch(regex, name.strip(), re.IGNORECASE)
        if match:
            numbers = iter(match.groups())
            canonical = _CHOICES.sub(lambda _: next(numbers), pattern)
            return dataclasses.replace(make(*map(int, match.groups())), name=canonical)
    raise UserError(f"unknown conv {name!r}; valid: {', '.join(CONV_PATTERNS)} "
                    "(case-insensitive, {a,b} means one of a or b)")


def parse_block(name: str) -> str:
    block = name.strip().lower()
    if block not in BLOCKS:
        raise UserError(f"unknown block {name!r}; valid: {', '.join(BLOCKS)}")
    return block


def wrn(depth: int, width: int, *, num_classes: int = 10, input_shape=(32, 32, 3),
        conv: str = "Conv", block: str = "basic", name: str | None = None) -> keras.Model:
    """WRN-``depth``-``width``: (depth - 4) / 6 blocks in each of three groups of 16k, 32k,
    64k channels."""
    if (depth - 4) % 6 or depth < 10 or width < 1:
        raise UserError(f"no WRN-{depth}-{width}: depth must be 6n+4 with n >= 1 (10, 16, 22, 28, "
                        "40, ...) and width a positive integer")
    spec, block = parse_conv(conv), parse_block(block)
    blocks_per_group = (depth - 4) // 6
    inputs = keras.Input(shape=input_shape)
    x = _padded_conv(inputs, 16, 3, 1, "stem_conv")
    for group, (channels, stride) in enumerate(
            ((16 * width, 1), (32 * width, 2), (64 * width, 2)), 1):
        for i in range(1, blocks_per_group + 1):
            x = _block(x, channels, stride if i == 1 else 1, spec, block, f"group{group}_block{i}")
        x = layers.Identity(name=taps.tap(f"group{group}"))(x)
    x = _bn_relu(x, "head")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = taps.logits_layer(
        num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
        bias_initializer="zeros")(x)
    if name is None:  # e.g. wrn-40-2, wrn-40-2-G8B2, wrn-40-2-G8B2-bottle
        variants = [chosen for chosen, plain in ((spec.name, "Conv"), (block, "basic"))
                    if chosen != plain]
        name = "-".join([f"wrn-{depth}-{width}", *variants])
    return keras.Model(inputs, outputs, name=name)


def _block(x, channels, stride, spec, block, prefix):
    """Pre-activation residual block; the projection shortcut reads the activated input."""
    activated = _bn_relu(x, prefix, "1")
    if x.shape[-1] == channels:
        shortcut = x
    else:
        shortcut = _conv(channels, 1, stride, f"{prefix}_shortcut")(activated)
    h = _substitute(activated, channels, stride, spec, block, f"{prefix}_conv1")
    if block == "basic":
        h = _substitute(_bn_relu(h, prefix, "2"), channels, 1, spec, block, f"{prefix}_conv2")
    return layers.Add(name=f"{prefix}_add")([shortcut, h])


def _substitute(x, channels, stride, spec, block, prefix):
    """``spec`` standing in for a 3x3 conv from x's channels to ``channels``."""
    in_channels = x.shape[-1]
    width = in_channels if spec.bottleneck is None else channels // spec.bottleneck
    groups = spec.groups_for(width) if width else 0
    if groups < 1 or width % groups:
        raise UserError(
            f"conv {spec.name} with block {block} does not fit layer {prefix} "
            f"({in_channels}->{channels} channels): its {spec.kernel}x{spec.kernel} conv on "
            f"{width} channels would have {groups} groups; pick another conv or a wider network")
    if spec.bottleneck is not None:
        x = _bn_relu(_conv(width, 1, 1, f"{prefix}_reduce")(x), f"{prefix}_reduce")
    x = _padded_conv(x, width if spec.pointwise else channels, spec.kernel, stride, prefix,
                     groups=groups, dilation=spec.dilation)
    if spec.pointwise:
        x = _conv(channels, 1, 1, f"{prefix}_expand")(_bn_relu(x, prefix))
    return x


def _padded_conv(x, filters, kernel, stride, name, groups=1, dilation=1):
    """A conv with PyTorch's symmetric zero padding (the output keeps x's size at stride 1)."""
    x = layers.ZeroPadding2D((kernel - 1) * dilation // 2, name=f"{name}_pad")(x)
    if stride > 1 and dilation > 1:
        # Keras refuses strides with dilation. For stride == dilation (Conv2x2), the dilated conv
        # only reads every stride-th padded pixel: subsample first, then convolve undilated.
        x = layers.MaxPooling2D(1, stride, name=f"{name}_subsample")(x)
        stride = dilation = 1
    if groups > 1 and groups == filters == x.shape[-1]:
        # Keras's fan_out of a depthwise kernel is kh*kw; PyTorch's He init uses kh*kw*channels.
        std = math.sqrt(2.0 / (kernel * kernel * filters))
        conv = layers.DepthwiseConv2D(kernel, stride, use_bias=False, dilation_rate=dilation,
                                      depthwise_initializer=keras.initializers.RandomNormal(stddev=std),
                                      name=name)
    else:
        conv = _conv(filters, kernel, stride, name, groups=groups, dilation=dilation)
    return conv(x)


def _conv(filters, kernel, stride, name, groups=1, dilation=1):
    conv_class = GroupedConv2D if groups > 1 else layers.Conv2D
    return conv_class(
        filters, kernel, stride, groups=groups, dilation_rate=dilation, use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
        name=name)


def _bn_relu(x, prefix, suffix=""):
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{prefix}_bn{suffix}")(x)
    return layers.ReLU(name=f"{prefix}_relu{suffix}")(x)
