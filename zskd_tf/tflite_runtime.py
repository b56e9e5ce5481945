"""Running ``.tflite`` classifiers: LiteRT's interpreter where installed, else ``tf.lite``.

TensorFlow deprecates ``tf.lite.Interpreter`` in favour of LiteRT (the ``ai-edge-litert``
package, ``ai_edge_litert.interpreter``), the runtime TFLite models are deployed with. Both have
the same Python API; :func:`runtime_name` says which one runs here.

Every ``.tflite`` written by zskd_tf has a ``serve`` signature taking raw images (``images``,
N x H x W x C, values in [0, 255]) and returning ``probabilities`` and ``logits``. In a
full-integer model (``--quantize=int8 --quantize_io=int8``) these ends are int8 tensors with a
scale and zero point; :class:`TFLiteClassifier` quantizes the images and dequantizes the outputs
with them, so callers always pass and get floats.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np

SIGNATURE = "serve"
# Ops that only convert between float and int8 at a model's ends.
_END_OPS = ("QUANTIZE", "DEQUANTIZE")


def _litert():
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        return None
    return interpreter


def runtime_name() -> str:
    """``"ai_edge_litert X.Y.Z"`` when LiteRT is installed, else ``"tf.lite X.Y.Z"``."""
    if _litert() is not None:
        import ai_edge_litert
        return f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}"
    import tensorflow as tf
    return f"tf.lite {tf.__version__}"


@contextlib.contextmanager
def quiet_deprecation():
    """Silences tf.lite's "use LiteRT" warning (the converter's calibration runs tf.lite)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        yield


def load_interpreter(path: str | None = None, num_threads: int | None = None,
                     content: bytes | None = None):
    """An interpreter (LiteRT's, else tf.lite's) for the ``.tflite`` file ``path`` or the
    model bytes ``content``."""
    litert = _litert()
    if litert is not None:
        return litert.Interpreter(model_path=path, model_content=content,
                                  num_threads=num_threads)
    import tensorflow as tf
    with quiet_deprecation():
        return tf.lite.Interpreter(model_path=path, model_content=content,
                                   num_threads=num_threads)


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.round(values / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if not np.issubdtype(detail["dtype"], np.integer):
        return np.asarray(values, np.float32)
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TFLiteClassifier:
    """A ``.tflite`` classifier written by zskd_tf, fed raw images as floats in [0, 255].

    Args:
        path: the ``.tflite`` file.
        num_threads: interpreter threads (None: the runtime's default, one).
    """

    def __init__(self, path: str, num_threads: int | None = None):
        self.path = path
        self.interpreter = load_interpreter(path, num_threads)
        if SIGNATURE not in self.interpreter.get_signature_list():
            from zskd_tf.errors import UserError
            raise UserError(f"{path} has no '{SIGNATURE}' signature: it was not written by "
                            "zskd_tf's export")
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self._input = self.runner.get_input_details()["images"]
        self._outputs = self.runner.get_output_details()

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the raw images the model takes."""
        return tuple(int(d) for d in self._input["shape"][1:])

    @property
    def input_dtype(self):
        return self._input["dtype"]

    def outputs(self, raw_images: np.ndarray) -> dict[str, np.ndarray]:
        """``probabilities`` and ``logits`` (float32) of one batch of raw images."""
        images = np.asarray(raw_images, np.float32)
        if np.issubdtype(self._input["dtype"], np.integer):
            images = _quantize(images, self._input)
        out = self.runner(images=images)
        return {name: _dequantize(value, self._outputs[name]) for name, value in out.items()}

    def probabilities(self, raw_images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities of raw images (N, H, W, C), ``batch_size`` at a time."""
        out = [self.outputs(raw_images[i:i + batch_size])["probabilities"]
               for i in range(0, len(raw_images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def float_ops(content: bytes) -> list[str]:
    """Ops of a quantized model that still compute in float32, as ``"OP (output tensor)"``.

    Args:
        content: the ``.tflite`` model's bytes.

    Returns:
        The float ops, e.g. ``["NEG (model/layer_normalization/Neg)"]``; empty when the model
        is full-integer. QUANTIZE / DEQUANTIZE ops are only listed when nothing else is float:
        those at the signature's ends (``--quantize_io=float``) never, those around a float
        op are implied by it.
    """
    interpreter = load_interpreter(content=content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    runner = interpreter.get_signature_runner(SIGNATURE)
    ends = ({d["index"] for d in runner.get_input_details().values()}
            | {d["index"] for d in runner.get_output_details().values()})
    computing, converting = [], []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - the only per-op view of both runtimes
        indices = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        floats = {i for i in indices if tensors[i]["dtype"] == np.float32}
        if not floats or (op["op_name"] in _END_OPS and floats <= ends):
            continue
        output = next((i for i in op["outputs"] if i >= 0), indices[0])
        described = f"{op['op_name']} ({tensors[output]['name']})"
        (converting if op["op_name"] in _END_OPS else computing).append(described)
    return computing or converting


def tensor_dtypes(path: str) -> dict[str, str]:
    """Tensor name -> dtype name of every tensor of the model's main graph."""
    interpreter = load_interpreter(path)
    return {t["name"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
