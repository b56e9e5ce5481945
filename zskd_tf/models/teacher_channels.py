"""A narrower copy started from the teacher's own weights: ``--student_init=teacher``.

:func:`zskd_tf.models.narrower.narrower_copy` gives every convolution and dense layer a share
of the teacher's filters or units, with fresh weights. Here the copy instead receives, layer by
layer, the teacher's weights of the channels judged most important, so the student starts as a
pruned teacher rather than from noise (channel pruning with data-free importance scores: the
batch-normalisation scale |gamma| / sqrt(var + eps) of the channel when a BatchNormalization
layer reads it, as network slimming does; else the L1 norm of the channel's filter, as in
Li et al.'s filter pruning). Only the teacher's weights are read: no data.

Supported: networks of convolutions (``Conv1D/2D/3D``, ``DepthwiseConv2D``,
``SeparableConv2D``), ``Dense``, ``BatchNormalization`` and ``LayerNormalization`` over the last
axis, ``Flatten``, layers without weights that keep the channel axis (activations, pooling,
dropout, padding, rescaling) and element-wise merges (``Add``, ``Subtract``, ``Multiply``,
``Average``, ``Maximum``, ``Minimum``): residual networks such as ResNets and WRNs. Tensors
that a merge joins share their channels, so they form one *channel group*: every tensor of a
group keeps the same channels, chosen by the summed importance of all the layers that write into
it (each layer's scores normalised to sum 1). Along a chain each group has one writer, and the
choice is that layer's own. Anything else (a concatenation, a reshape, channels-first data)
raises :class:`UserError`; the caller keeps the fresh weights then.
"""
from __future__ import annotations

import keras
import numpy as np

from zskd_tf.errors import UserError

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_WRITERS = (*_CONVOLUTIONS, keras.layers.Dense, keras.layers.SeparableConv2D)  # new channels
_NORMALISATIONS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
_RESHAPING = (keras.layers.Reshape, keras.layers.Permute, keras.layers.RepeatVector)
_MERGES = (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
           keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum)


def take_teacher_channels(teacher: keras.Model, copy: keras.Model) -> keras.Model:
    """Fills ``copy`` (a narrower copy of ``teacher``, layer for layer) with the teacher's
    weights of its most important channels; returns ``copy``.

    Args:
        teacher: the trained classifier.
        copy: ``narrower_copy(teacher)``: the same layers in the same order, narrower.

    Returns:
        ``copy``, its weights replaced.

    Raises:
        UserError: a layer this module cannot slice (module docstring); ``copy`` is then
            unchanged.
    """
    weights = []
    for layer, narrow, channels, out in _channel_walk(teacher, copy):
        new = _slice(layer, narrow, channels, out)
        if new and [w.shape for w in new] != [w.shape for w in narrow.get_weights()]:
            raise UserError(f"layer {layer.name} ({type(layer).__name__}) of the copy does "
                            "not match the teacher's channels it would take")
        weights.append((narrow, new))
    for narrow, new in weights:  # only once every layer could be sliced
        if new:
            narrow.set_weights(new)
    return copy


def kept_channels(teacher: keras.Model, copy: keras.Model) -> dict:
    """Which of the teacher's output channels each layer of a narrower copy stands for: the
    channels :func:`take_teacher_channels` gives it. They depend on the teacher's weights and
    the copy's widths only, not on the copy's weights, so they hold for the copy at any point
    of its training (e.g. after a resume).

    Args:
        teacher: the trained classifier.
        copy: a narrower copy of it, layer for layer (same layer names).

    Returns:
        {layer name: sorted indices into the teacher layer's output channels, or None when
        the layer keeps all of them}, for every layer of the teacher the copy also has.

    Raises:
        UserError: as :func:`take_teacher_channels`.
    """
    return {layer.name: out for layer, _, _, out in _channel_walk(teacher, copy)}


def _channel_walk(teacher, copy):
    """(teacher layer, copy layer, the input channels it reads, the output channels it keeps)
    for every layer pair in the teacher's layer order (channels None: all)."""
    narrow_layers = {layer.name: layer for layer in copy.layers}
    pairs = [(t, narrow_layers.get(t.name)) for t in teacher.layers
             if not isinstance(t, keras.layers.InputLayer)]
    if any(c is None and t.weights for t, c in pairs):
        raise UserError(f"{copy.name} is not a layer-for-layer copy of {teacher.name}")
    pairs = [(t, c) for t, c in pairs if c is not None]  # a softmax after the class scores
    inbound, outbound, readers = _graph(teacher)
    groups = _ChannelGroups(pairs, inbound, outbound, readers)
    walk = []
    for layer, narrow in pairs:  # in this order: a writer's importance reads its input's
        sources = inbound.get(layer.name, [])
        channels = groups.kept(sources[0]) if sources else None
        walk.append((layer, narrow, channels, groups.kept(outbound[layer.name])))
    return walk


class _ChannelGroups:
    """Which channels of the teacher every tensor keeps (tensor id -> sorted indices, or None
    for all of them), decided one channel group at a time when first asked for."""

    def __init__(self, pairs, inbound, outbound, readers):
        self._parent, self._readers = {}, readers
        self._inbound, self._outbound = inbound, outbound
        self._writers = {}  # group root -> [(teacher layer, narrow layer)] writing its channels
        self._derived = {}  # tensor id -> (layer, its input tensor id): channels follow the input
        self._kept = {}
        for layer, narrow in pairs:
            sources, out = inbound.get(layer.name, []), outbound[layer.name]
            if len(sources) > 1 and not isinstance(layer, _MERGES):
                raise UserError(f"layer {layer.name} ({type(layer).__name__}) reads several "
                                "tensors: the teacher's channels can be taken along chains "
                                "and element-wise merges (Add, ...) only")
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise UserError(f"layer {layer.name} is channels-first: not supported")
            if isinstance(layer, _RESHAPING):
                raise UserError(f"layer {layer.name} ({type(layer).__name__}) cannot be "
                                "narrowed channel by channel")
            if isinstance(layer, _WRITERS):
                self._writers.setdefault(out, []).append((layer, narrow))
            elif isinstance(layer, keras.layers.Flatten) or (
                    isinstance(layer, keras.layers.DepthwiseConv2D)
                    and layer.depth_multiplier != 1):
                self._derived[out] = (layer, sources[0])
            else:  # the input's channels: normalisations, weightless layers, merges
                for source in sources:
                    self._union(source, out)
        for out in list(self._writers):  # regroup the writers under their groups' roots
            root = self._find(out)
            if root != out:
                self._writers.setdefault(root, []).extend(self._writers.pop(out))

    def _find(self, tensor):
        while self._parent.get(tensor, tensor) != tensor:
            tensor = self._parent[tensor]
        return tensor

    def _union(self, a, b):
        a, b = self._find(a), self._find(b)
        if a != b:
            self._parent[b] = a

    def kept(self, tensor):
        """The teacher's channels that ``tensor`` keeps in the copy (None: all)."""
        root = self._find(tensor)
        if root not in self._kept:
            self._kept[root] = self._decide(root)
        return self._kept[root]

    def _decide(self, root):
        writers = self._writers.get(root, [])
        derived = [t for t in self._derived if self._find(t) == root]
        if derived and (writers or len(derived) > 1):
            layer = self._derived[derived[0]][0]
            raise UserError(f"layer {layer.name} ({type(layer).__name__}) is merged with other "
                            "tensors: its channels cannot be narrowed")
        if derived:
            layer, source = self._derived[derived[0]]
            return _derived_channels(layer, self.kept(source))
        if not writers:  # the model's input and what keeps its channels
            return None
        counts = {_out_width(narrow) for _, narrow in writers}
        full = _out_width(writers[0][0])
        if len(counts) != 1:
            raise UserError(f"layers {', '.join(t.name for t, _ in writers)} write into one "
                            "merge but have different widths in the copy")
        count = counts.pop()
        if count == full:
            return None
        score = sum(_importance(layer, self._kept_input(layer),
                                self._readers.get(self._outbound[layer.name], []))
                    for layer, _ in writers)
        return np.sort(np.argsort(-score, kind="stable")[:count])

    def _kept_input(self, layer):
        """The channels a writer reads, if its input's group is decided already (the rows of
        its kernel that count); None: all of them."""
        return self._kept.get(self._find(self._inbound[layer.name][0]))


def _derived_channels(layer, channels):
    """The output channels of a Flatten or a depthwise convolution that come from ``channels``
    of its input (None: all)."""
    if channels is None:
        return None
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _depthwise_outputs(channels, layer.depth_multiplier)
    grid = np.arange(int(np.prod(layer.input.shape[1:]))).reshape(layer.input.shape[1:])
    return grid[..., channels].reshape(-1)


def _out_width(layer) -> int:
    """How many channels a convolution or dense layer writes."""
    return _output_kernel(layer, layer.get_weights(), None).shape[-1]


def _output_kernel(layer, weights, channels):
    """The kernel of a writer whose last axis is its output channels (a separable
    convolution's pointwise one), with only the rows its input ``channels`` feed (None: all)."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        return _take(weights[1], _depthwise_outputs(channels, weights[0].shape[-1]), axis=-2)
    return _take(weights[0], channels, axis=-2)


def _importance(layer, channels, readers) -> np.ndarray:
    """The importance of each output channel of a writer, normalised to sum 1: the scale of the
    BatchNormalization that alone reads its output (``readers``: the layers that do), else the
    L1 norm of the channel's filter over the input ``channels`` it reads."""
    kernel = _output_kernel(layer, layer.get_weights(), channels)
    bn = readers[0] if len(readers) == 1 else None
    if isinstance(bn, keras.layers.BatchNormalization) and _on_channels(bn):
        gamma = bn.gamma.numpy() if bn.gamma is not None else np.ones(kernel.shape[-1])
        score = np.abs(gamma) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    else:
        score = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    return score / max(float(score.sum()), 1e-30)


def _graph(model):
    """The model's own graph, walked back from its outputs: layer name -> ids of the tensors
    it reads, layer name -> id of its output, tensor id -> the layers that read it."""
    inbound, outbound, readers, seen = {}, {}, {}, set()
    stack = list(model.outputs)
    while stack:
        tensor = stack.pop()
        layer, node_index, _ = tensor._keras_history
        if layer.name in seen:
            continue
        seen.add(layer.name)
        node = layer._inbound_nodes[node_index]
        if len(node.output_tensors) != 1:
            raise UserError(f"layer {layer.name} has several outputs: not supported")
        outbound[layer.name] = id(node.output_tensors[0])
        inbound[layer.name] = [id(x) for x in node.input_tensors]
        for x in node.input_tensors:
            readers.setdefault(id(x), []).append(layer)
            stack.append(x)
    return inbound, outbound, readers


def _slice(layer, narrow, channels, out):
    """The narrow layer's new weights ([] to leave it), for the teacher's input ``channels``
    and output channels ``out`` (None: all)."""
    weights = layer.get_weights()
    if isinstance(layer, (*_CONVOLUTIONS, keras.layers.Dense)):
        return ([_take(_output_kernel(layer, weights, channels), out, axis=-1)]
                + [_take(b, out, axis=0) for b in weights[1:]])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return ([_take(weights[0], channels, axis=-2)]
                + [_take(b, out, axis=0) for b in weights[1:]])
    if isinstance(layer, keras.layers.SeparableConv2D):
        return ([_take(weights[0], channels, axis=-2),
                 _take(_output_kernel(layer, weights, channels), out, axis=-1)]
                + [_take(b, out, axis=0) for b in weights[2:]])
    if isinstance(layer, _NORMALISATIONS):
        if not _on_channels(layer):
            raise UserError(f"layer {layer.name} normalises another axis than the channels")
        return [_take(w, channels, axis=0) for w in weights]
    if isinstance(layer, keras.layers.Flatten):
        return []
    if weights and channels is not None:
        raise UserError(f"layer {layer.name} ({type(layer).__name__}) cannot be narrowed "
                        "channel by channel")
    return weights


def _depthwise_outputs(channels, multiplier: int):
    """The outputs of a depthwise convolution that come from ``channels`` (input channel c
    gives outputs c * multiplier .. c * multiplier + multiplier - 1); None: all."""
    if channels is None:
        return None
    return (channels[:, None] * multiplier + np.arange(multiplier)).reshape(-1)


def _on_channels(layer) -> bool:
    """Whether a normalisation layer works on the last axis only."""
    axis = layer.axis
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return axis in (-1, len(layer.input.shape) - 1)


def _take(array, indices, axis):
    return array if indices is None else np.take(array, indices, axis=axis)
