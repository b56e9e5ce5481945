"""Saving a trained classifier into a run directory, and loading any classifier back.

A trained classifier in a run directory is ``model.keras`` (the logits model, trainable
state included) plus ``model_info.json`` (architecture name, dataset, class names and the
``InputSpec`` that turns raw dataset images into model inputs). ``load_classifier`` accepts a
run directory, a ``.keras`` file, a SavedModel directory or a ``.tflite`` file written by
``export`` (float or quantized).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import keras
import numpy as np
import tensorflow as tf

import zskd_tf.models.layers  # noqa: F401  (registers custom layers for .keras loading)
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.runtime import atomic, cluster, guarded, integrity

MODEL_FILE = "model.keras"
INFO_FILE = "model_info.json"
EXPORT_INFO_FILE = "zskd_info.json"  # beside saved_model.pb: marks a zskd_tf export
# raw_shape of a foreign model described by itself: its own input size (no resize).
NATIVE = "native"


def weights_sha256(model: keras.Model) -> str:
    """SHA-256 over all of ``model``'s weights (in order, raw bytes)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def fingerprint(loaded: "LoadedClassifier") -> dict:
    """What identifies a classifier: its architecture name and a SHA-256 of its weights (of
    a SavedModel: of its files, see runtime.integrity)."""
    if loaded.model is not None:
        return {"model": loaded.info.get("model") or loaded.model.name,
                "weights_sha256": weights_sha256(loaded.model)}
    return {"model": loaded.info.get("model") or os.path.basename(os.path.normpath(loaded.path)),
            "weights_sha256": integrity.path_sha256(loaded.path)}


def save_classifier(directory: str, model: keras.Model, info: dict) -> None:
    """Atomically writes ``model.keras`` and ``model_info.json`` into ``directory``."""
    with atomic.atomic_path(os.path.join(directory, MODEL_FILE), suffix=".keras") as tmp:
        model.save(tmp)
    atomic.write_json(os.path.join(directory, INFO_FILE), info)


@dataclasses.dataclass
class LoadedClassifier:
    """A classifier ready to score raw dataset images.

    ``model`` is the Keras logits model (None for a SavedModel or a TFLite model, which are
    inference-only); ``spec`` maps raw images to its inputs; ``info`` is model_info.json (may
    be empty); ``tflite`` is the :class:`~zskd_tf.tflite_runtime.TFLiteClassifier` of a
    ``.tflite`` file.
    """
    path: str
    model: keras.Model | None
    spec: pp.InputSpec | None
    info: dict
    _serve: object = None
    # A loaded SavedModel must stay referenced (docs/methods/keras_notes.md, "SavedModels").
    _keep_alive: object = None
    tflite: object = None

    @property
    def kind(self) -> str:
        """What was loaded, for messages: "a Keras model", "a TFLite model", "a SavedModel"."""
        if self.model is not None:
            return "a Keras model"
        return "a TFLite model" if self.tflite is not None else "a SavedModel"

    def probabilities(self, raw_images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Class probabilities for raw images (N, H, W, C) in [0, 255]."""
        if self.tflite is not None:
            if tuple(raw_images.shape[1:]) != self.tflite.raw_shape:
                raise UserError(f"{self.path} takes raw images of shape {self.tflite.raw_shape}, "
                                f"not {tuple(raw_images.shape[1:])}: give the dataset it "
                                "classifies")
            return self.tflite.probabilities(np.asarray(raw_images, np.float32), batch_size)
        out = []
        for start in range(0, len(raw_images), batch_size):
            batch = tf.constant(raw_images[start:start + batch_size], tf.float32)
            out.append(self._probabilities(batch).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _probabilities(self, batch):
        if self.model is not None:
            return tf.nn.softmax(self.model(pp.preprocess(batch, self.spec), training=False))
        if self.spec is None:  # our export: raw images in, probabilities out
            return self._serve(batch)["probabilities"]
        outputs = self._serve(pp.preprocess(batch, self.spec))
        scores = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
        total = tf.reduce_sum(scores, axis=-1, keepdims=True)
        is_distribution = tf.reduce_all(tf.abs(total - 1.0) < 1e-3) and tf.reduce_all(scores >= 0)
        return scores if is_distribution else tf.nn.softmax(scores)


def _plain_spec(input_shape, raw_shape) -> pp.InputSpec:
    """For models without model_info.json: raw/255, bilinear resize to the model's input
    (``raw_shape`` :data:`NATIVE`: raw images of the model's own input size)."""
    if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
        raise UserError(f"the model takes inputs of shape {tuple(input_shape)}; it must take "
                        "images (N, height, width, channels) of a fixed size")
    height, width, channels = (int(d) for d in input_shape[-3:])
    if raw_shape == NATIVE:
        raw_shape = (height, width, channels)
    resize = "none" if (height, width) == tuple(raw_shape[:2]) else "bilinear"
    return pp.InputSpec(height=height, width=width, channels=channels, resize=resize,
                        mean=(0.0,) * channels, std=(1.0,) * channels,
                        raw_height=int(raw_shape[0]), raw_width=int(raw_shape[1]))


def load_keras_model(path: str) -> keras.Model:
    """The Keras model of a zskd_tf run directory or a ``.keras`` file, as saved (no input
    mapping is needed, unlike :func:`load_classifier`); UserError for anything else."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, MODEL_FILE)):
        path = os.path.join(path, MODEL_FILE)
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise UserError(f"{path} is neither a .keras file nor a finished zskd_tf run directory")
    return _load_keras(path)


def _load_keras(path: str) -> keras.Model:
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the user's input
        if cluster.is_peer_loss(e):
            raise
        raise UserError(f"cannot load the Keras model {path}: "
                        f"{str(e).splitlines()[0][:200]}") from None


def load_classifier(path: str, raw_shape=None) -> LoadedClassifier:
    """Loads a run directory, a ``.keras`` file or a SavedModel directory.

    ``raw_shape`` (H, W, C of the dataset's raw images) is used to build an input mapping
    for models that come without ``model_info.json``.
    """
    if not path or not os.path.exists(path):
        raise UserError(f"model path {path!r} does not exist (expected a run directory, "
                        "a .keras file or a SavedModel directory)")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, MODEL_FILE)):
        return _from_keras_file(os.path.join(path, MODEL_FILE), raw_shape)
    if os.path.isfile(path) and path.endswith(".keras"):
        return _from_keras_file(path, raw_shape)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return _from_savedmodel(path, raw_shape)
    if os.path.isfile(path) and path.endswith(".tflite"):
        return _from_tflite(path)
    if os.path.isdir(path):
        raise UserError(f"{path} holds neither {MODEL_FILE} nor saved_model.pb: is it a "
                        "finished run directory? (a run still training has no model yet)")
    raise UserError(f"{path} is not a .keras file, a .tflite file nor a SavedModel directory")


def load_keras_classifier(path: str, flag: str, raw_shape=None,
                          why: str = "which cannot be differentiated through") -> LoadedClassifier:
    """A classifier held as a Keras model: a run directory or .keras, not a SavedModel.

    Args:
        path: a run directory or ``.keras`` file.
        flag: the flag naming ``path``, for messages.
        raw_shape: see :func:`load_classifier`.
        why: what the caller cannot do with a SavedModel, for the message.

    Returns:
        The :class:`LoadedClassifier`; UserError for a SavedModel or TFLite file.
    """
    loaded = load_classifier(path, raw_shape)
    if loaded.model is None:
        raise UserError(f"{flag}={path} is {loaded.kind}, {why}: give a run directory or a "
                        ".keras file")
    return loaded


def check_class_count(loaded: "LoadedClassifier", path: str, num_classes: int,
                      dataset: str) -> None:
    """UserError naming ``path`` when the model's output is not one score per class of
    ``dataset``."""
    outputs = loaded.model.output_shape[-1]
    if outputs != num_classes:
        raise UserError(f"--teacher={path} has {outputs} outputs but {dataset} has "
                        f"{num_classes} classes: give a classifier of {dataset} (one score "
                        "per class)")


def init_weights_from(model: keras.Model, path: str, name: str) -> None:
    """``--init_from``: gives ``model`` (architecture ``name``) the weights of the classifier
    at ``path`` (a run directory or .keras file of the same architecture)."""
    init = load_classifier(path)
    if init.model is None:
        raise UserError(f"--init_from={path} must be a run directory or .keras file")
    try:
        model.set_weights(init.model.get_weights())
    except ValueError:
        raise UserError(f"--init_from={path} holds another architecture than "
                        f"--student={name}") from None


def _read_info(directory: str) -> dict:
    for name in (INFO_FILE, EXPORT_INFO_FILE):
        info_path = os.path.join(directory, name)
        if os.path.exists(info_path):
            return _read_json(info_path)
    return {}


def _read_json(path: str) -> dict:
    """A model's info file; UserError naming it when it is damaged."""
    try:
        info = guarded.read_json(path)
    except guarded.DamagedFile as e:
        raise guarded.damaged_input(e, "make the model again (run its procedure with "
                                       "--overwrite)") from None
    if not isinstance(info, dict):
        raise UserError(f"{path} is damaged (not a JSON object); make the model again")
    return info


def read_info(path: str) -> dict:
    """model_info.json of a run directory, .keras file or zskd_tf SavedModel, or the
    SavedModel's beside a ``.tflite`` made by export ({} if none)."""
    if not path or not os.path.exists(path):
        return {}
    if os.path.isfile(path) and path.endswith(".tflite"):
        return _read_info(os.path.join(os.path.dirname(os.path.abspath(path)), "saved_model"))
    return _read_info(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))


def _from_keras_file(path: str, raw_shape) -> LoadedClassifier:
    model = _load_keras(path)
    info = _read_info(os.path.dirname(os.path.abspath(path)))
    if "input_spec" in info:
        spec = pp.InputSpec.from_dict(info["input_spec"])
    elif raw_shape is not None:
        spec = _plain_spec(model.input_shape, raw_shape)
    else:
        raise UserError(f"{path} has no {INFO_FILE} beside it; give --dataset so its input "
                        "size can be matched")
    return LoadedClassifier(path, model, spec, info)


def _from_savedmodel(path: str, raw_shape) -> LoadedClassifier:
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001
        if cluster.is_peer_loss(e):
            raise
        raise UserError(f"cannot load the SavedModel {path}: "
                        f"{str(e).splitlines()[0][:200]}") from None
    info_path = os.path.join(path, EXPORT_INFO_FILE)
    if os.path.exists(info_path):  # a zskd_tf export: raw images in
        result = LoadedClassifier(path, None, None, _read_json(info_path), loaded.serve)
    else:
        serve, shape = _foreign_endpoint(loaded, path)
        if raw_shape is None:
            raise UserError(f"give --dataset to evaluate the SavedModel {path}")
        result = LoadedClassifier(path, None, _plain_spec(shape, raw_shape), {}, serve)
    result._keep_alive = loaded
    return result


def _from_tflite(path: str) -> LoadedClassifier:
    """A ``.tflite`` written by export; its info is the export's saved_model/zskd_info.json."""
    from zskd_tf.tflite_runtime import TFLiteClassifier

    try:
        runner = TFLiteClassifier(path)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"cannot load the TFLite model {path}: "
                        f"{str(e).splitlines()[0][:200]}") from None
    return LoadedClassifier(path, None, None, read_info(path), tflite=runner)


def _foreign_endpoint(loaded, path: str):
    """(callable taking one image batch, its 4-D input shape) of a SavedModel not made here."""
    serve = getattr(loaded, "serve", None)
    if serve is not None and hasattr(serve, "input_signature") and serve.input_signature:
        specs = tf.nest.flatten(serve.input_signature)
        if len(specs) == 1 and specs[0].shape.rank == 4:
            return serve, specs[0].shape.as_list()
    signature = loaded.signatures.get("serving_default")
    if signature is not None:
        inputs = signature.structured_input_signature[1]
        if len(inputs) == 1:
            (name, spec), = inputs.items()
            if spec.shape.rank == 4:
                return (lambda x: signature(**{name: x})), spec.shape.as_list()
    raise UserError(f"the SavedModel {path} needs a 'serve' or 'serving_default' signature "
                    "taking one batch of images (N, H, W, C)")
