"""The one contract for "a classifier with feature taps".

Every model of the zoo is a functional ``keras.Model`` with a single output: the float32 logits of
a ``Dense`` layer named ``"logits"``. Some of its layers are *taps*: their name starts with
``"tap_"`` and their output is a feature tensor other code may read (attention transfer, the
Lopes et al. activation statistics, transition curves). ``with_taps`` turns such a model into
one whose call returns ``(logits, {tap: tensor})``; it shares the original's layers and weights.

A foreign Keras classifier has no taps. ``with_taps`` reads such a model (one without a single
``tap_`` layer) at the layers it names instead, so that a narrower copy of it, whose layers keep
the teacher's names (:mod:`zskd_tf.models.narrower`), can be compared with its teacher layer by
layer (channel hints).
"""
import keras

from zskd_tf.errors import UserError

TAP_PREFIX = "tap_"
LOGITS = "logits"


def tap(name: str) -> str:
    """The layer name that makes ``name`` a tap."""
    return TAP_PREFIX + name


def logits_layer(num_classes: int, **kwargs) -> keras.layers.Dense:
    """The final ``Dense`` of every classifier: named ``"logits"``, float32 even under mixed
    precision."""
    return keras.layers.Dense(num_classes, name=LOGITS, dtype="float32", **kwargs)


def graph_ends(model: keras.Model):
    """(inputs, output) of ``model``'s graph, to build models that share its layers.

    ``model.input``/``model.output`` fail on a ``keras.Sequential`` (also one loaded from a
    ``.keras`` file: "has never been called"); ``inputs``/``outputs`` work for every built
    functional or Sequential model. A single input is returned as a tensor, not a list."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return inputs, model.outputs[0]


def tap_names(model: keras.Model) -> list[str]:
    """Names of the model's taps without the ``tap_`` prefix, in graph order."""
    return [layer.name[len(TAP_PREFIX):] for layer in model.layers
            if layer.name.startswith(TAP_PREFIX)]


def with_taps(model: keras.Model, names=None) -> keras.Model:
    """A model sharing ``model``'s weights whose call returns ``(logits, {name: tap tensor})``.

    ``names`` selects taps (all of them when None); the dict keeps the order of ``names``.
    """
    available = tap_names(model)
    names = available if names is None else list(names)
    taps = {name: tap_layer(model, name).output for name in names}
    inputs, logits = graph_ends(model)
    return keras.Model(inputs, (logits, taps), name=f"{model.name}_with_taps")


def tap_layer(model: keras.Model, name: str):
    """The layer whose output is tap ``name``: ``tap_<name>``; in a model without taps (a
    foreign classifier), the layer called ``name``. A UserError naming what there is
    otherwise."""
    available = tap_names(model)
    if name in available:
        return model.get_layer(tap(name))
    if not available:
        layers = [layer.name for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer)]
        if name in layers:
            return model.get_layer(name)
        raise UserError(f"model {model.name!r} has no feature taps and no layer {name!r}; "
                        f"its layers: {', '.join(layers)}")
    raise UserError(f"unknown feature tap {name} of model {model.name!r}; "
                    f"available: {', '.join(available)}")


def has_batchnorm(model: keras.Model) -> bool:
    """Whether ``model`` has a ``BatchNormalization`` layer (whose statistics a prior can
    read)."""
    return bool(_batchnorm(model))


def _batchnorm(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def batchnorm_layers(model: keras.Model) -> list:
    """The model's ``BatchNormalization`` layers, in graph order; a UserError if it has
    none."""
    layers = _batchnorm(model)
    if not layers:
        raise UserError(f"model {model.name!r} has no BatchNormalization layer to read "
                        "statistics from (a Keras teacher of the zoo such as a WRN is needed)")
    return layers


def with_batchnorm_inputs(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s weights whose call returns ``(logits, [input of each
    BatchNormalization layer])``, in the order of ``batchnorm_layers(model)``."""
    layers = batchnorm_layers(model)
    inputs, logits = graph_ends(model)
    return keras.Model(inputs, (logits, [layer.input for layer in layers]),
                       name=f"{model.name}_with_batchnorm_inputs")


def common_spatial_taps(teacher, student) -> tuple:
    """Taps present in both models whose outputs are feature maps of equal spatial size."""
    def shapes(model):
        return {n: tuple(model.get_layer(tap(n)).output.shape)
                for n in tap_names(model)}
    t_shapes, s_shapes = shapes(teacher), shapes(student)
    return tuple(n for n, s in s_shapes.items()
                 if len(s) == 4 and n in t_shapes and t_shapes[n][1:3] == s[1:3])
