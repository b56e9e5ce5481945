"""Model names -> builders. Names are case-insensitive.

Every model is a functional ``keras.Model`` returning float32 logits from a Dense named
``"logits"``, with feature taps as described in ``zskd_tf.models.taps``.
"""
import functools
import re

import keras

from zskd_tf.errors import UserError
from zskd_tf.models import alexnet, lenet, mlp, small_cnn, wrn
from zskd_tf.runtime import cluster

_FIXED = {  # name -> (family, builder)
    "lenet5": ("lenet", lenet.lenet5),
    "lenet5_half": ("lenet", lenet.lenet5_half),
    "lenet": ("lenet", lenet.lenet5),            # Lopes et al.'s name for LeNet-5
    "lenet_half": ("lenet", lenet.lenet5_half),  # ... and for LeNet-5-half
    "hinton1200": ("mlp", mlp.hinton1200),
    "hinton800": ("mlp", mlp.hinton800),
    "alexnet": ("alexnet", alexnet.alexnet),
    "alexnet_half": ("alexnet", alexnet.alexnet_half),
    "small_cnn": ("small_cnn", small_cnn.small_cnn),  # the default student outside the zoo
}
MODEL_NAMES = (*_FIXED, "wrn-D-K (D = 6n+4, K >= 1: wrn-16-1, wrn-16-2, wrn-40-1, wrn-40-2, ...)")
_INPUT_SIZE = {"lenet": (32, 32), "mlp": (28, 28), "wrn": (32, 32), "alexnet": (32, 32),
               "small_cnn": (32, 32)}
_CHANNELS = {"lenet": 1, "mlp": 1, "wrn": 3, "alexnet": 3, "small_cnn": 3}
# A zoo teacher's narrower sibling: the student --student=auto picks for it.
_NARROWER = {"lenet5": "lenet5_half", "lenet": "lenet_half", "hinton1200": "hinton800",
             "alexnet": "alexnet_half"}
DEFAULT_STUDENT = "small_cnn"  # --student=auto for a teacher outside the zoo


def _resolve(name: str):
    """(family, canonical name, builder taking num_classes, input_shape and name)."""
    key = name.strip().lower()
    if key in _FIXED:
        family, builder = _FIXED[key]
        return family, key, builder
    match = re.fullmatch(r"wrn-(\d+)-(\d+)", key)
    if match:
        return "wrn", key, functools.partial(wrn.wrn, *map(int, match.groups()))
    raise UserError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")


def model_family(name: str) -> str:
    """"wrn", "lenet", "mlp" or "alexnet"."""
    return _resolve(name)[0]


def default_input_shape(name: str, channels: int | None = None) -> tuple[int, int, int]:
    """(H, W, C) the model is defined on; ``channels`` defaults to 1 (lenet, mlp) or 3
    (wrn, alexnet)."""
    family = model_family(name)
    return (*_INPUT_SIZE[family], _CHANNELS[family] if channels is None else channels)


def build_model(name: str, *, num_classes: int = 10, input_shape=None, conv: str = "Conv",
                block: str = "basic") -> keras.Model:
    """A fresh, randomly initialised model. ``conv`` and ``block`` apply to WRNs only."""
    family, canonical, builder = _resolve(name)
    kwargs = {}
    if family == "wrn":
        kwargs = {"conv": conv, "block": block}
    elif (conv.strip().lower(), block.strip().lower()) != ("conv", "basic"):
        raise UserError(f"conv={conv!r} and block={block!r} only apply to WRN models, "
                        f"not to {name!r}")
    if num_classes < 1:
        raise UserError(f"num_classes must be positive, got {num_classes}")
    if input_shape is None:
        input_shape = default_input_shape(name)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UserError(f"input shape must be (height, width, channels), got {input_shape}")
    try:
        return builder(num_classes=num_classes, input_shape=input_shape, **kwargs)
    except UserError:
        raise
    except ValueError as err:  # Keras: e.g. an input too small for the convs and pools
        raise UserError(f"cannot build {canonical} on inputs of shape {input_shape}: "
                        f"{str(err).splitlines()[0]}") from err


def is_model_file(name: str) -> bool:
    """Whether a student is given as a ``.keras`` file rather than an architecture name."""
    return str(name).lower().endswith(".keras")


def auto_student(teacher_model_name: str | None) -> str:
    """``--student=auto``: the narrower zoo sibling of a zoo teacher, else ``small_cnn``.

    Args:
        teacher_model_name: the teacher's architecture (model_info.json), None if foreign.

    Returns:
        An architecture name.
    """
    key = (teacher_model_name or "").strip().lower()
    if key in _NARROWER:
        return _NARROWER[key]
    match = re.fullmatch(r"wrn-(\d+)-(\d+)", key)
    if match:
        depth, width = map(int, match.groups())
        return f"wrn-{depth}-{width // 2}" if width > 1 else f"wrn-{max(16, depth - 24)}-1"
    return DEFAULT_STUDENT


def build_student(name: str, *, num_classes: int, input_shape, conv: str = "Conv",
                  block: str = "basic") -> keras.Model:
    """A student to train: ``build_model(name)``, or the model in the ``.keras`` file ``name``
    (its weights are the starting point), checked against the classes and input shape.

    Args:
        name: an architecture name or a ``.keras`` file path.
        num_classes: the teacher's class count.
        input_shape: the teacher's input shape (H, W, C).
        conv, block: WRN options (architecture names only).

    Returns:
        The student ``keras.Model``.
    """
    if not is_model_file(name):
        return build_model(name, num_classes=num_classes, input_shape=input_shape, conv=conv,
                           block=block)
    try:
        model = keras.saving.load_model(name, compile=False)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the user's input
        if cluster.is_peer_loss(e):
            raise
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"--student={name} is not a Keras model file ({reason})") from None
    if not isinstance(model, keras.Model) or len(model.inputs or ()) != 1:
        raise UserError(f"--student={name} must be a Keras model with one image input")
    outputs = model.output_shape
    if len(outputs) != 2 or outputs[-1] != num_classes:
        raise UserError(f"--student={name} outputs {tuple(outputs)} but the teacher has "
                        f"{num_classes} classes: the student needs one score per class")
    if tuple(model.input_shape[1:]) != tuple(input_shape):
        raise UserError(f"--student={name} takes inputs of shape {tuple(model.input_shape[1:])} "
                        f"but the teacher's are {tuple(input_shape)}: build the student for "
                        "the teacher's input shape")
    return model
