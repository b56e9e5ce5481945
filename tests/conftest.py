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


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lenet5_teacher(tmp_path_factory):
    """A LeNet-5 trained briefly on real Fashion-MNIST (a run directory), shared by tests."""
    from helpers import FASHION_MNIST_DIR, run_cli

    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("the Debian package dataset-fashion-mnist is not installed (./setup.sh)")
    run = str(tmp_path_factory.mktemp("teacher") / "lenet5")
    run_cli("--procedure=train", f"--run_dir={run}", "--dataset=fashion_mnist",
            "--model=lenet5", "--epochs=2", "--batch_size=64", "--max_train_examples=3000",
            "--max_test_examples=1000", "--verbose=quiet", check=True)
    return run
