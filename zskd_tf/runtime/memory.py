"""A quick check that a batch can fit in the machine's memory, before any work starts.

The estimate is kept low on purpose, so that only batches far too large are refused: per
example, the float32 outputs of every layer of the networks one step runs (what Keras can see:
the layers of functional and Sequential models), which a training or synthesis step keeps for
its backward pass, at ``BYTES_PER_ACTIVATION`` bytes each. Their gradients, the weights,
optimizer state, the dataset and TensorFlow's own buffers come on top.
"""
from __future__ import annotations

import math
import os

from zskd_tf.errors import UserError

BYTES_PER_ACTIVATION = 4  # float32


def physical_memory_bytes() -> int | None:
    """The machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _size(shape) -> int:
    dims = [d for d in tuple(shape)[1:] if d is not None]
    return math.prod(dims) if dims else 0


def activations_per_example(*models) -> int:
    """Floats each layer of ``models`` outputs for one example (inputs included).

    Args:
      *models: Keras models (None entries and models whose layers are not inspectable count
        as zero, keeping the estimate a lower bound).

    Returns:
      The number of floats.
    """
    total = 0
    for model in models:
        for layer in getattr(model, "layers", ()) or ():
            try:
                outputs = layer.output
            except (AttributeError, ValueError):  # shared or never-called layers
                continue
            for tensor in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
                total += _size(getattr(tensor, "shape", ()))
    return total


def check_batch_fits(flag: str, batch_size: int, per_example: int) -> None:
    """UserError when ``batch_size`` examples of ``per_example`` activations exceed memory.

    Args:
      flag: the flag that sets the batch size, named in the message.
      batch_size: examples per step.
      per_example: activations per example (:func:`activations_per_example`).
    """
    total = physical_memory_bytes()
    need = batch_size * per_example * BYTES_PER_ACTIVATION
    if total and need > total:
        raise UserError(f"--{flag}={batch_size} needs at least {need / 2**30:.1f} GiB for the "
                        f"activations of one step ({per_example} per example) but this machine "
                        f"has {total / 2**30:.1f} GiB of memory: lower --{flag}")
