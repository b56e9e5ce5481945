"""Training on several machines: ``--strategy=multi_worker``.

Every process of the cluster runs the same command. TensorFlow's
``MultiWorkerMirroredStrategy`` finds the cluster in ``TF_CONFIG`` (or, when that is absent,
in a Slurm job's ``SLURM_*`` variables) and keeps the replicas of all workers in step. Only
the chief writes the run directory. The other workers run the same code (checkpoints and
model saving take part in the cluster's collective operations) but write into a temporary
directory of their own, removed when they finish, and restore the chief's checkpoints, so a
restarted cluster resumes where the chief's last checkpoint left it.

The strategy must exist before TensorFlow runs its first operation: ``join`` is called once
at the start of a procedure, and ``devices.make_strategy("multi_worker")`` returns it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

from zskd_tf.errors import UserError
from zskd_tf.runtime import slurm

# Procedures whose training loop runs under the cluster's strategy.
PROCEDURES = ("train", "distill", "zero_shot")


@dataclasses.dataclass
class Member:
    """This process's place in the cluster.

    Attributes:
        strategy: the ``MultiWorkerMirroredStrategy`` shared by the cluster.
        is_chief: whether this process writes the run directory.
        name: ``"worker 1"``-style name of this process's task.
        run_dir: the run directory every process was given (the chief's).
        scratch_dir: where a non-chief worker writes instead (None on the chief).
    """
    strategy: object
    is_chief: bool
    name: str
    run_dir: str
    scratch_dir: str | None = None


_MEMBER: list[Member] = []  # the one cluster this process joined


def _fail(problem: str):
    raise UserError(f"--strategy=multi_worker: {problem}")


def check_tf_config(text: str) -> tuple[str, int]:
    """Validates a ``TF_CONFIG`` value without starting TensorFlow.

    Args:
        text: the value of the ``TF_CONFIG`` environment variable.

    Returns:
        This process's (task type, task index).

    Raises:
        UserError: the JSON is malformed, or the cluster or task does not make sense.
    """
    try:
        config = json.loads(text)
    except ValueError as e:
        _fail(f"TF_CONFIG is not valid JSON ({e})")
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        _fail('TF_CONFIG needs a "cluster" object, e.g. {"cluster": {"worker": '
              '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    cluster, task = config["cluster"], config.get("task")
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            _fail(f'TF_CONFIG names the job "{job}"; only "chief" and "worker" take part')
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and _is_address(a) for a in addresses):
            _fail(f'TF_CONFIG\'s "{job}" must be a non-empty list of "host:port" strings, '
                  f"got {addresses!r}")
    if "worker" not in cluster:
        _fail('TF_CONFIG\'s cluster has no "worker" list')
    if len(cluster.get("chief", [])) > 1:
        _fail("TF_CONFIG names more than one chief")
    if not isinstance(task, dict):
        _fail('TF_CONFIG needs a "task" object, e.g. {"type": "worker", "index": 0}')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        _fail(f'TF_CONFIG\'s task type {kind!r} is not a job of its cluster '
              f"({', '.join(sorted(cluster))})")
    if not isinstance(index, int) or isinstance(index, bool) \
            or not 0 <= index < len(cluster[kind]):
        _fail(f"TF_CONFIG's task index {index!r} is not one of the {len(cluster[kind])} "
              f'"{kind}" addresses')
    return kind, index


def _is_address(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def _resolver():
    """TensorFlow's cluster resolver for TF_CONFIG, else for a Slurm job."""
    import tensorflow as tf

    text = os.environ.get("TF_CONFIG")
    if text is not None:
        check_tf_config(text)
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if slurm.in_job():
        return slurm.resolver()
    _fail("set TF_CONFIG to describe the cluster (or run inside a Slurm job)")


def join(procedure: str, run_dir: str) -> Member:
    """Creates the cluster's strategy (before any TensorFlow operation runs) and this process's
    role in it. Calling it again returns the same member.

    Args:
        procedure: the ``--procedure`` being run (only those in ``PROCEDURES`` may).
        run_dir: the ``--run_dir`` every process of the cluster was given.

    Returns:
        The ``Member``; a non-chief worker's ``scratch_dir`` is a new temporary directory.

    Raises:
        UserError: the procedure cannot run on a cluster, or the cluster is described wrongly.
    """
    if _MEMBER:  # a second run in the same process (the Python API)
        if _MEMBER[0].scratch_dir is not None:
            os.makedirs(_MEMBER[0].scratch_dir, exist_ok=True)  # ``leave`` removed it
        return _MEMBER[0]
    if procedure not in PROCEDURES:
        _fail(f"--procedure={procedure} runs on one machine; --strategy=multi_worker is for "
              f"{', '.join(PROCEDURES)}")
    resolver = _resolver()
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    kind, index = resolver.task_type, resolver.task_id
    is_chief = strategy.extended.should_checkpoint
    scratch = None if is_chief else tempfile.mkdtemp(prefix=f"zskd_{kind}{index}_")
    member = Member(strategy, is_chief, f"{kind} {index}", os.path.abspath(run_dir), scratch)
    _MEMBER.append(member)
    return member


def joined() -> Member | None:
    """The cluster this process joined, or None."""
    return _MEMBER[0] if _MEMBER else None


def shared_path(path: str) -> str:
    """The chief's counterpart of ``path``, a path under a worker's scratch directory (other
    paths come back unchanged): workers restore the checkpoints the chief wrote.

    Args:
        path: a file or directory path.

    Returns:
        The path inside the chief's run directory, or ``path`` itself.
    """
    member = joined()
    if member is None or member.scratch_dir is None:
        return path
    relative = os.path.relpath(os.path.abspath(path), member.scratch_dir)
    if relative == os.curdir:
        return member.run_dir
    if relative.startswith(os.pardir):
        return path
    return os.path.join(member.run_dir, relative)


def leave() -> None:
    """Removes a worker's scratch directory (the chief has none)."""
    member = joined()
    if member is not None and member.scratch_dir is not None:
        shutil.rmtree(member.scratch_dir, ignore_errors=True)
