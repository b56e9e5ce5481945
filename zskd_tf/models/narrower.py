"""A narrower copy of a Keras classifier: ``--student=auto`` for a foreign Keras teacher.

The copy has the teacher's layers in the teacher's order (its convolutions, pools,
BatchNormalization and dense layers), each convolution and dense layer with ``factor`` of its
filters or units, at least one, except the last layer with weights, which keeps one score per
class. Its weights are drawn afresh; a softmax on the class scores is dropped, so that the copy
outputs logits as every student does. Layers without a width (pools, BatchNormalization,
activations, reshapes) are copied as they are.

On the worked example's BatchNorm CNN (docs/any_teacher.md, "Choosing the student") the
half-width copy learnt far more from the same data impressions than ``small_cnn``, in a quarter
of the time: a student of the teacher's own design at half its width is what the zoo's
``--student=auto`` already picks for its own teachers (``lenet5`` -> ``lenet5_half``).
"""
from __future__ import annotations

import keras

from zskd_tf.errors import UserError

HALF = 0.5
WIDTHS = ("filters", "units")  # the config keys that set a layer's output width


def _has_width(layer) -> bool:
    """Whether ``layer`` sets an output width (filters or units): a convolution or dense layer."""
    config = layer.get_config()
    return any(isinstance(config.get(key), int) for key in WIDTHS)


def _head(model: keras.Model):
    """The last layer with a width: the one that gives the class scores."""
    for layer in reversed(model.layers):
        if _has_width(layer):
            return layer
    raise UserError(f"{model.name} has no convolution or dense layer to make narrower")


def last_hidden_layer(model: keras.Model) -> str:
    """The name of the last convolution or dense layer before the one that gives the class
    scores: the deepest features a narrower copy shares with its teacher (where channel hints
    read a foreign classifier, which has no feature taps). A UserError if there is none."""
    head = _head(model)
    hidden = [layer for layer in model.layers[:model.layers.index(head)] if _has_width(layer)]
    if not hidden:
        raise UserError(f"{model.name} has no convolution or dense layer before its class "
                        "scores")
    return hidden[-1].name


def _is_softmax(layer) -> bool:
    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation)
        and layer.get_config().get("activation") == "softmax")


def narrower_copy(model: keras.Model, factor: float = HALF, seed: int = 0) -> keras.Model:
    """A freshly initialised copy of ``model`` with ``factor`` of its widths (module docstring).

    Args:
        model: a Sequential or functional Keras classifier with one image input.
        factor: the share of filters or units each layer keeps, in (0, 1].
        seed: the seed of the copy's initial weights (set with ``keras.utils.set_random_seed``,
            which also seeds Python's, NumPy's and the backend's global generators).

    Returns:
        The copy, which outputs logits with ``model``'s class count.

    Raises:
        UserError: ``model`` cannot be copied layer by layer (a subclassed model, a custom
            layer Keras cannot rebuild from its config) or has no layer with a width.
    """
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    head = _head(model)

    def narrower(layer):
        config = layer.get_config()
        for key in WIDTHS:
            if isinstance(config.get(key), int) and layer is not head:
                config[key] = max(1, round(config[key] * factor))
        if layer is head and config.get("activation") == "softmax":
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    keras.utils.set_random_seed(seed)
    try:
        copy = keras.models.clone_model(model, clone_function=narrower)
    except Exception as e:  # noqa: BLE001 - any failure to rebuild is the model's design
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"{model.name} cannot be copied layer by layer ({reason})") from None
    last = copy.layers[-1]
    if _is_softmax(last):  # a softmax layer after the class scores
        copy = keras.Model(copy.inputs, last.input, name=copy.name)
    if tuple(copy.output_shape) != tuple(model.output_shape):
        raise UserError(f"a narrower copy of {model.name} outputs {copy.output_shape}, not "
                        f"{model.output_shape}")
    return copy
