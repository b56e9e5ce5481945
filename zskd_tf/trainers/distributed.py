"""Two Keras 3.15 fixes for ``Model.fit`` under ``MultiWorkerMirroredStrategy``.

Keras reduces what a replica's step returns with ``strategy.reduce("MEAN", value, axis=0)``
when the strategy spans several workers, which fails for the scalars every ``train_step``
returns ("Invalid reduction dimension 0 for input with 0 dimensions", TensorFlow issue
72388). ``replica_logs`` gives each log a length-1 axis there, so the reduction averages over
the replicas and yields the scalar Keras expects.

Before its first step, ``fit`` also takes one batch of the distributed dataset to build the
model symbolically and averages the replicas' parts of it with ``strategy.reduce``, which the
multi-worker strategy cannot do for a tuple of per-replica values. Only the batch's shapes
and dtypes are used there, so ``SymbolicBuildFix`` hands Keras the first replica's part.
"""
from __future__ import annotations

import tensorflow as tf
from keras import tree


def _multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def replica_logs(logs: dict) -> dict:
    """What a ``train_step``/``test_step`` returns, made reducible across workers.

    Args:
        logs: name -> scalar tensor, as computed by one replica.

    Returns:
        ``logs`` unchanged, or under ``MultiWorkerMirroredStrategy`` each value reshaped to
        shape ``[1]`` (Keras then averages it over all replicas into a scalar).
    """
    if not _multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def _first_replica(strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


class SymbolicBuildFix:
    """Mixin for ``keras.Model`` subclasses trained with ``fit`` under any strategy."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and data_batch is None and _multi_worker(strategy):
            for _, _, batches in iterator:
                batch = next(batches)
                break
            data_batch = tree.map_structure(lambda v: _first_replica(strategy, v), batch)
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
