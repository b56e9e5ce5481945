"""A narrower copy started from the teacher's own weights: ``--student_init=teacher``.

:func:`zskd_tf.models.narrower.narrower_copy` gives every convolution and dense layer a share
of the teacher's filters or units, with fresh weights. Here the copy instead receives, layer by
layer, the teacher's weights of the channels judged most important, so the student starts as a
pruned teacher rather than from noise (channel pruning with data-free importance scores: the
batch-normalisation scale |gamma| / sqrt(var + eps) of the channel when a BatchNormalization
layer reads it, as network slimming does; else the L1 norm of the channel's filter, as in
Li et al.'s filter pruning). Only the teacher's weights are read: no data.

Supported: chains of layers, each reading the previous one's output, made of convolutions
(``Conv1D/2D/3D``, ``DepthwiseConv2D``, ``SeparableConv2D``), ``Dense``, ``BatchNormalization``
and ``LayerNormalization`` over the last axis, ``Flatten``, and layers without weights that keep
the channel axis (activations, pooling, dropout, padding, rescaling). Anything else (a merge of
branches, a reshape, channels-first data) raises :class:`UserError`; the caller keeps the fresh
weights then.
"""
from __future__ import annotations

import keras
import numpy as np

from zskd_tf.errors import UserError

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_NORMALISATIONS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
_RESHAPING = (keras.layers.Reshape, keras.layers.Permute, keras.layers.RepeatVector)


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
    narrow_layers = {layer.name: layer for layer in copy.layers}
    pairs = [(t, narrow_layers.get(t.name)) for t in teacher.layers
             if not isinstance(t, keras.layers.InputLayer)]
    if any(c is None and t.weights for t, c in pairs):
        raise UserError(f"{copy.name} is not a layer-for-layer copy of {teacher.name}")
    inbound, outbound, readers = _graph(teacher)
    kept, weights = {}, []  # kept: id(teacher tensor) -> channel indices (None: all)
    for layer, narrow in pairs:
        if narrow is None:  # a softmax after the class scores, left out of the copy
            continue
        sources = inbound.get(layer.name, [])
        if len(sources) > 1:
            raise UserError(f"layer {layer.name} ({type(layer).__name__}) reads several "
                            "tensors: the teacher's channels can be taken only along a chain")
        channels = kept.get(sources[0]) if sources else None
        reader = readers.get(outbound.get(layer.name), [])
        new, out = _slice(layer, narrow, channels, reader[0] if len(reader) == 1 else None)
        if new and [w.shape for w in new] != [w.shape for w in narrow.get_weights()]:
            raise UserError(f"layer {layer.name} ({type(layer).__name__}) of the copy does "
                            "not match the teacher's channels it would take")
        weights.append((narrow, new))
        kept[outbound.get(layer.name)] = out
    for narrow, new in weights:  # only once every layer could be sliced
        if new:
            narrow.set_weights(new)
    return copy


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


def _slice(layer, narrow, channels, reader):
    """(the narrow layer's new weights, or [] to leave it; the channels kept at its output)."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise UserError(f"layer {layer.name} is channels-first: not supported")
    weights = layer.get_weights()
    if isinstance(layer, (*_CONVOLUTIONS, keras.layers.Dense)):
        kernel = _take(weights[0], channels, axis=-2)
        out = _strongest(kernel, reader, narrow.get_weights()[0].shape[-1])
        return [kernel[..., out]] + [b[out] for b in weights[1:]], out
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = _depthwise_outputs(channels, weights[0].shape[-1])
        return ([_take(weights[0], channels, axis=-2)]
                + [_take(b, out, axis=0) for b in weights[1:]]), out
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise, pointwise = weights[0], weights[1]
        rows = _depthwise_outputs(channels, depthwise.shape[-1])
        pointwise = _take(pointwise, rows, axis=-2)
        out = _strongest(pointwise, reader, narrow.get_weights()[1].shape[-1])
        return ([_take(depthwise, channels, axis=-2), pointwise[..., out]]
                + [b[out] for b in weights[2:]]), out
    if isinstance(layer, _NORMALISATIONS):
        if not _on_channels(layer):
            raise UserError(f"layer {layer.name} normalises another axis than the channels")
        return [_take(w, channels, axis=0) for w in weights], channels
    if isinstance(layer, keras.layers.Flatten):
        if channels is None:
            return [], None
        grid = np.arange(int(np.prod(layer.input.shape[1:]))).reshape(layer.input.shape[1:])
        return [], grid[..., channels].reshape(-1)
    if isinstance(layer, _RESHAPING) or (weights and channels is not None):
        raise UserError(f"layer {layer.name} ({type(layer).__name__}) cannot be narrowed "
                        "channel by channel")
    return weights, channels


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


def _strongest(kernel, reader, count: int):
    """The ``count`` output channels of ``kernel`` that matter most, in their order; all of
    them when the copy keeps every channel (the class scores)."""
    if count == kernel.shape[-1]:
        return np.arange(count)
    if isinstance(reader, keras.layers.BatchNormalization) and _on_channels(reader):
        gamma = reader.gamma.numpy() if reader.gamma is not None else np.ones(kernel.shape[-1])
        score = np.abs(gamma) / np.sqrt(reader.moving_variance.numpy() + reader.epsilon)
    else:
        score = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    return np.sort(np.argsort(-score, kind="stable")[:count])
