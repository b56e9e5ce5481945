"""zskd_tf: data-free knowledge distillation for TensorFlow 2 / Keras 3.

The Python entry points (``zskd_tf.data_impressions``, ``zskd_tf.distill``,
``zskd_tf.zero_shot``, ``zskd_tf.train``, ``zskd_tf.evaluate``, ``zskd_tf.export_model``,
``zskd_tf.quantize_model``, ``zskd_tf.narrower_student``, ``zskd_tf.run``) live in
:mod:`zskd_tf.api`; they are loaded on first use, so that importing the package stays cheap.
"""

__version__ = "0.1.0"

_API = ("run", "train", "data_impressions", "distill", "zero_shot", "evaluate",
        "export_model", "quantize_model", "narrower_student")


def __getattr__(name):
    if name in _API:
        from zskd_tf import api
        return getattr(api, name)
    raise AttributeError(f"module 'zskd_tf' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
