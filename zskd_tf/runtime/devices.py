"""Devices, determinism and the choice of tf.distribute strategy."""
from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from zskd_tf.errors import UserError
from zskd_tf.runtime import cluster


def configure(logical_cpus: int = 0, deterministic: bool = False, seed: int = 0) -> None:
    """Must run before TensorFlow executes any op (virtual devices are fixed after that)."""
    if logical_cpus and logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        except RuntimeError:
            pass  # already initialised (e.g. inside tests that split the CPU themselves)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """auto: MirroredStrategy over all GPUs when more than one is visible, else the default.

    mirrored: MirroredStrategy over all GPUs, or over all logical CPUs when there is no GPU
    (see --logical_cpus).

    multi_worker: the MultiWorkerMirroredStrategy of the cluster this process joined
    (``cluster.join``, called before TensorFlow starts).
    """
    if kind == "multi_worker":
        member = cluster.joined()
        if member is None:
            raise UserError("--strategy=multi_worker: the cluster must be joined before "
                            "TensorFlow starts (zskd_tf.procedures.run does it)")
        return member.strategy
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "default" or (kind == "auto" and len(gpus) <= 1):
        return tf.distribute.get_strategy()
    if kind in ("auto", "mirrored"):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise UserError(f"--strategy must be auto, mirrored, default or multi_worker, got {kind!r}")


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"--batch_size={batch_size} must be divisible by the number of "
                        f"replicas ({replicas}) so every replica gets the same share")


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras models built inside compute with the dtype policy ``name`` (e.g.
    ``"mixed_bfloat16"``: bfloat16 arithmetic, float32 variables); the global policy is
    restored on exit."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
