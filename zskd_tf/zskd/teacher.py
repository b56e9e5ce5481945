"""The teacher of data-impression synthesis: logits, final Dense kernel and input space.

``--teacher`` may be:

* a zskd_tf run directory (or its ``model.keras``): ``model_info.json`` gives the dataset,
  the class names and the :class:`InputSpec`;
* a foreign ``.keras`` file: a functional or Sequential Keras model taking images
  (N, H, W, C) whose last layer is a ``Dense`` with a linear or softmax activation, or a
  ``Dense`` followed by a ``Softmax`` / ``Activation("softmax")`` layer. With a softmax, the
  Dense's pre-activation is used as logits. ``--final_layer=NAME`` names the Dense whose kernel
  makes the concentration matrix when the last layer is something else; the model's output is
  then the logits, or, if it is a probability vector, its log (softmax at any temperature gives
  the same distribution from log-probabilities as from logits);
* a foreign SavedModel (e.g. ``model.export(path)``) with a ``serve`` endpoint or a
  ``serving_default`` signature taking one image batch and returning one (N, K) tensor of
  logits or probabilities (log taken as above). Its final kernel must be a readable variable:
  the unique 2-D variable of shape (features, K) whose name ends in ``kernel`` (Keras names
  them ``<layer>/kernel``), or the one of ``--final_layer``.

Foreign models have no model_info.json: with ``--dataset`` they are taken to classify that
dataset and to be fed its images scaled to [0, 1] (or to ``input_range``) and bilinearly
resized to their input size, as ``evaluate`` does; without it they are described by
themselves (``--num_classes``, ``--class_names``, ``--input_range``; see
:mod:`zskd_tf.teacher_task`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import keras
import numpy as np

from zskd_tf import model_io
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.models import taps
from zskd_tf.teacher_task import Description, parse_input_range, resolve, spec_with_range  # noqa: F401  (re-exported)

_TINY_PROBABILITY = 1e-30  # floor before the log of a probability output (log = -69)


@dataclasses.dataclass
class ImpressionTeacher:
    logits_model: keras.Model     # model inputs -> logits (N, K)
    kernel: np.ndarray            # the final Dense kernel (features, K)
    final_layer: str
    logits_from: str              # how the logits are obtained, for result.json
    spec: pp.InputSpec            # raw images -> model inputs
    dataset: str
    class_names: tuple[str, ...]
    fingerprint: dict = dataclasses.field(default_factory=dict)  # model_io.fingerprint

    @property
    def num_classes(self) -> int:
        return int(self.kernel.shape[1])

    @property
    def value_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (low, high) of valid inputs: raw 0 and 255 through the normalisation."""
        return self.spec.value_range


def load_teacher(path: str, *, dataset: str, dataset_given: bool, final_layer: str | None = None,
                 input_range=None, strategy=None, num_classes: int | None = None,
                 class_names=None) -> ImpressionTeacher:
    """Loads ``--teacher``; UserError when it is unusable.

    A foreign teacher without ``dataset_given`` is described by itself (see
    :mod:`zskd_tf.teacher_task`): ``num_classes``, ``class_names`` and ``input_range``.

    A Keras teacher is built in ``strategy``'s scope, so its variables live where the replicas
    run. A SavedModel is restored outside it: restored under a MirroredStrategy its functions
    refuse to run in replica context, while restored plainly every replica reads its variables.
    """
    saved_model = (os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb"))
                   and not os.path.exists(os.path.join(path, model_io.MODEL_FILE)))
    keras_in_scope = strategy is not None and not saved_model
    with strategy.scope() if keras_in_scope else contextlib.nullcontext():
        try:
            return _load_teacher(path, dataset if dataset_given else None, final_layer,
                                 Description(num_classes, class_names, input_range))
        except UserError as e:
            if path in str(e):
                raise
            raise UserError(f"--teacher={path}: {e}") from None


def _load_teacher(path, dataset, final_layer, description) -> ImpressionTeacher:
    recorded = model_io.read_info(path).get("dataset")
    if "input_spec" in model_io.read_info(path) and description.input_range is not None:
        raise UserError("--input_range is for foreign teachers; this teacher's "
                        "model_info.json already fixes its input mapping")
    if recorded and dataset is not None and dataset != recorded:
        raise UserError(f"--dataset={dataset} but the teacher classifies {recorded}; "
                        "drop --dataset (it is read from the teacher)")
    loaded, task = resolve(path, dataset=dataset, description=description)
    if loaded.model is None and loaded.spec is None:
        raise UserError(f"--teacher={path} is {loaded.kind} exported by zskd_tf (raw images in): "
                        "give the run directory it came from, or its model.keras")
    if loaded.model is not None:
        logits_model, kernel, name, how = _keras_head(loaded.model, final_layer, task.spec)
    else:
        logits_model, kernel, name, how = _savedmodel_head(path, final_layer, task.spec)
    if kernel.shape[1] != task.num_classes:
        raise UserError(f"the teacher has {kernel.shape[1]} outputs but {task.dataset} has "
                        f"{task.num_classes} classes: use --dataset for the classes it predicts")
    return ImpressionTeacher(logits_model, kernel, name, how, task.spec, task.dataset,
                             task.class_names, model_io.fingerprint(loaded))


# --- Keras models ------------------------------------------------------------------------------
def _activation_name(layer) -> str:
    return keras.activations.serialize(layer.activation) if hasattr(layer, "activation") else ""


def _is_softmax_layer(layer) -> bool:
    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax")


def _producer(model: keras.Model, tensor):
    """The layer of ``model`` whose output is ``tensor`` (None if none)."""
    for layer in model.layers:
        try:
            if layer.output is tensor:
                return layer
        except (AttributeError, ValueError):  # a layer used several times has no single output
            continue
    return None


def _final_dense(model: keras.Model, final_layer: str | None):
    """(the final Dense, whether it is the model's head: its output is the model's output,
    possibly through a softmax layer)."""
    last = model.layers[-1]
    head = _producer(model, last.input) if _is_softmax_layer(last) else last
    if final_layer:
        try:
            layer = model.get_layer(final_layer)
        except ValueError:
            raise UserError(f"--final_layer={final_layer}: the teacher has no such layer "
                            f"(its last layers: "
                            f"{', '.join(layer.name for layer in model.layers[-4:])})"
                            ) from None
        if not isinstance(layer, keras.layers.Dense):
            raise UserError(f"--final_layer={final_layer} is a {type(layer).__name__}, not a "
                            "Dense layer")
        return layer, layer is head
    if not isinstance(head, keras.layers.Dense):
        raise UserError(f"the teacher's last layer {last.name!r} is a {type(last).__name__}, "
                        "not a Dense layer: ZSKD needs the final Dense (logits) layer; name it "
                        "with --final_layer")
    return head, True


def _keras_head(model: keras.Model, final_layer, spec):
    try:
        inputs, outputs = model.inputs or (), model.outputs or ()
    except (AttributeError, ValueError):  # subclassed, or a Sequential never built
        inputs = outputs = ()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError("the teacher must be a functional or Sequential Keras model with one "
                        "input and one output (a subclassed model's layers cannot be inspected)")
    _check_class_vector(model.output_shape)
    dense, is_head = _final_dense(model, final_layer)
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float32)
    if kernel.shape[1] != model.output_shape[-1]:
        raise UserError(f"the Dense layer {dense.name!r} has {kernel.shape[1]} units but the "
                        f"teacher outputs {model.output_shape[-1]} classes")
    if not is_head:  # an inner Dense named by --final_layer: logits come from the output
        logits_model, how, _ = _logits_of(model, spec)
        return logits_model, kernel, dense.name, how
    activation = _activation_name(dense)
    if activation == "linear" and dense is model.layers[-1]:
        return model, kernel, dense.name, "output"
    if activation not in ("linear", "softmax"):
        raise UserError(f"the teacher's final Dense {dense.name!r} has a {activation!r} "
                        "activation; ZSKD needs logits (linear) or softmax")
    return _pre_activation(model, dense), kernel, dense.name, f"pre-activation of {dense.name}"


def _pre_activation(model: keras.Model, dense) -> keras.Model:
    """A model sharing ``model``'s layers up to ``dense``, ending in a linear copy of it."""
    linear = keras.layers.Dense(dense.units, use_bias=dense.use_bias, dtype="float32",
                                name=f"{dense.name}_logits")
    logits = linear(dense.input)
    linear.set_weights(dense.get_weights())
    return keras.Model(taps.graph_ends(model)[0], logits, name=f"{model.name}_logits")


# --- SavedModels -------------------------------------------------------------------------------
def _savedmodel_head(path: str, final_layer, spec):
    layer = None
    for endpoint in ("serve", "serving_default"):
        try:
            layer = keras.layers.TFSMLayer(path, call_endpoint=endpoint, trainable=False)
            break
        except ValueError:
            continue
    if layer is None:
        raise UserError(f"the SavedModel {path} has neither a 'serve' endpoint nor a "
                        "'serving_default' signature")
    model, how, num_classes = _logits_of(layer, spec)
    kernel, name = _savedmodel_kernel(layer, num_classes, final_layer, path)
    return model, kernel, name, how


def _savedmodel_kernel(layer, num_classes: int, final_layer, path: str):
    def short(variable) -> str:  # "head/kernel:0" or "head_kernel:0" -> "head_kernel"
        return variable.name.split(":")[0].replace("/", "_")

    matrices = [v for v in layer.weights if len(v.shape) == 2 and v.shape[1] == num_classes]
    if final_layer:
        found = [v for v in matrices if short(v) == f"{final_layer}_kernel"]
    else:
        found = [v for v in matrices if short(v).endswith("kernel")]
    if len(found) != 1:
        names = ", ".join(short(v) for v in matrices) or "none"
        what = f"--final_layer={final_layer}'s kernel" if final_layer else "one final Dense kernel"
        raise UserError(f"cannot find {what} of shape (features, {num_classes}) among the "
                        f"SavedModel's variables (candidates: {names}) in {path}; name it with "
                        "--final_layer, or give the teacher as a .keras file")
    variable = found[0]
    layer_name = short(variable)[:-len("_kernel")]
    return keras.ops.convert_to_numpy(variable).astype(np.float32), layer_name


# --- outputs that may be dicts or probabilities -------------------------------------------------
class _LogitsOf(keras.Model):
    """Logits of a model whose output is a one-entry dict and/or a probability vector."""

    def __init__(self, inner, log_of_output: bool, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.log_of_output = log_of_output
        self.built = True

    def call(self, x, training=False):
        out = _single_output(self.inner(x, training=training))
        if self.log_of_output:
            return keras.ops.log(keras.ops.maximum(out, _TINY_PROBABILITY))
        return out


def _single_output(out):
    if isinstance(out, dict):
        if len(out) != 1:
            raise UserError(f"the teacher returns {len(out)} outputs ({', '.join(out)}); it "
                            "must return one class vector")
        out = next(iter(out.values()))
    return out


def _logits_of(model, spec) -> tuple[keras.Model, str, int]:
    """(logits model, how its logits are obtained, K), judging the output on a probe batch."""
    probe = pp.preprocess(np.random.default_rng(0).uniform(0, 255, (8, *spec.raw_shape)), spec)
    out = keras.ops.convert_to_numpy(_single_output(model(probe, training=False)))
    _check_class_vector(out.shape)
    probabilities = bool((out >= 0).all() and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))
    how = "log of the probability output" if probabilities else "output"
    return _LogitsOf(model, probabilities, name="teacher_logits"), how, int(out.shape[-1])


def _check_class_vector(shape) -> None:
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise UserError(f"the teacher's output has shape {tuple(shape)}; ZSKD needs one "
                        "vector of class scores per image (N, K) with K >= 2")
