"""Test set-up shared by every test module.

* Splits the one physical CPU into two logical devices before TensorFlow starts, so that
  multi-replica code (MirroredStrategy) is exercised on CI machines without GPUs.
* Marks absl flags as parsed: pytest never calls ``app.run``.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


def pytest_configure(config):
    flags.FLAGS.mark_as_parsed()
