"""Shared test utilities: running the CLI in a subprocess and reading run directories."""
from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_cli(*args, check=False, timeout=600, **popen) -> subprocess.CompletedProcess:
    """Runs ``python -m zskd_tf.main ARGS`` and returns the completed process."""
    proc = subprocess.run([sys.executable, "-m", "zskd_tf.main", *args], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=timeout,
                          **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, one ``error:`` line naming the problem, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


_TWO_CPUS = []


def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test in the process.

    Each MirroredStrategy numbers its collective operations from the same start; two of them
    in one process can issue clashing collectives ("Collective instance ... expected type").
    """
    import tensorflow as tf

    if not _TWO_CPUS:
        _TWO_CPUS.append(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _TWO_CPUS[0]


def parsed_flags(*args):
    """The config the command line would hand a procedure for these flags."""
    from absl import flags
    from absl.testing import flagsaver

    from zskd_tf import cli_flags

    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["zskd_tf", *args])
        return cli_flags.config_from_flags()


def teacher_with_dead_half():
    """A Keras classifier (convolution, BatchNorm, depthwise and separable convolutions, dense
    layers) whose dropped channels are exactly dead: the half-width copy that keeps the
    live ones computes the teacher's function. Live and dead channels are interleaved, so a
    copy that kept the first half would be wrong."""
    import keras
    import numpy as np

    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.SeparableConv2D(6, 1, activation="relu", name="separable")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(4, name="scores")(x)
    model = keras.Model(inputs, keras.layers.Softmax()(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype("float32")
                           for w in layer.get_weights()])
    bn = model.get_layer("bn")
    gamma, beta, mean, variance = bn.get_weights()
    dead = np.arange(8) % 2 == 1
    gamma[dead], beta[dead], variance[:] = 0.0, 0.0, np.abs(variance) + 0.5
    gamma[~dead] = np.sign(gamma[~dead]) * (np.abs(gamma[~dead]) + 1.0)
    bn.set_weights([gamma, beta, mean, variance])
    depthwise = model.get_layer("depthwise")
    kernel, bias = depthwise.get_weights()
    bias[np.repeat(dead, 2)] = 0.0  # channel c's outputs are 2c and 2c + 1
    depthwise.set_weights([kernel, bias])
    for name, dead_out in (("separable", [0, 2, 5]), ("hidden", [1, 3, 4, 7, 8])):
        layer = model.get_layer(name)
        weights = layer.get_weights()
        weights[-2][..., dead_out] = 0.0  # the kernel (pointwise) columns and the bias
        weights[-1][dead_out] = 0.0
        layer.set_weights(weights)
    return model
