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

A cluster cannot go on without one of its processes. ``join`` waits a bounded time for all of
them (``wait_secs``), and ``peer_failure`` turns TensorFlow's errors about a process that is
gone (stopped, killed, or never started because it refused its input) into one line saying
which one and what to do.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile

from zskd_tf.errors import UserError
from zskd_tf.runtime import slurm

# Procedures whose training loop runs under the cluster's strategy.
PROCEDURES = ("train", "distill", "zero_shot")
DEFAULT_WAIT_SECS = 300  # how long a process waits for the others to start
_TASK = re.compile(r"/job:(chief|worker)/replica:\d+/task:(\d+)")


@dataclasses.dataclass
class Member:
    """This process's place in the cluster.

    Attributes:
        strategy: the ``MultiWorkerMirroredStrategy`` shared by the cluster.
        is_chief: whether this process writes the run directory.
        name: ``"worker 1"``-style name of this process's task.
        run_dir: the run directory every process was given (the chief's).
        scratch_dir: where a non-chief worker writes instead (None on the chief).
        leader: ``"worker 0"``-style name of the task that hosts TensorFlow's coordination
            service (the chief).
    """
    strategy: object
    is_chief: bool
    name: str
    run_dir: str
    scratch_dir: str | None = None
    leader: str = "worker 0"


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


def _task_name(kind: str, index) -> str:
    return f"{kind} {index}"


def _configure_coordination(spec, wait_secs: int) -> str:
    """Sets up TensorFlow's coordination service as ``MultiWorkerMirroredStrategy`` would,
    but with a bounded wait for the other processes: by default a worker waits an hour for a
    missing chief, and the chief forever for a missing worker. Returns the leader's name.

    With ``cluster_register_with_barrier`` every process, the leader included, fails with
    DEADLINE_EXCEEDED naming the missing tasks once ``wait_secs`` have passed.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    leader = multi_worker_util.coordination_leader(spec)
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
            for job in ("chief", "worker") if job in spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader, coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=int(wait_secs * 1000))
    context.context().coordination_service.cluster_register_with_barrier = True
    return _task_name(*_TASK.search(leader).groups())


def join(procedure: str, run_dir: str, wait_secs: float = DEFAULT_WAIT_SECS) -> Member:
    """Creates the cluster's strategy (before any TensorFlow operation runs) and this process's
    role in it. Calling it again returns the same member.

    Args:
        procedure: the ``--procedure`` being run (only those in ``PROCEDURES`` may).
        run_dir: the ``--run_dir`` every process of the cluster was given.
        wait_secs: how long to wait for every other process of the cluster to start.

    Returns:
        The ``Member``; a non-chief worker's ``scratch_dir`` is a new temporary directory.

    Raises:
        UserError: the procedure cannot run on a cluster, the cluster is described wrongly,
            or a process of it did not start within ``wait_secs``.
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

    kind, index = resolver.task_type, resolver.task_id
    leader = _configure_coordination(resolver.cluster_spec(), wait_secs)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except tf.errors.OpError as e:
        missing = _lost_tasks(str(e), _task_name(kind, index), leader)
        _fail(f"{_described(missing, leader)} did not join the cluster within {wait_secs:g} s "
              "(--cluster_wait_secs): start every process with the same command; one that "
              "stopped says why in its own output")
    is_chief = strategy.extended.should_checkpoint
    scratch = None if is_chief else tempfile.mkdtemp(prefix=f"zskd_{kind}{index}_")
    member = Member(strategy, is_chief, _task_name(kind, index), os.path.abspath(run_dir),
                    scratch, leader)
    _MEMBER.append(member)
    return member


def _lost_tasks(text: str, own: str, leader: str) -> list[str]:
    """The tasks that a TensorFlow error message ``text`` reports missing, seen from ``own``.

    The coordination service lists them after "unhealthy" (no heartbeats) or "timed out task
    names" (not registered in time); an error without such a list comes from a process that
    cannot reach the service, so the leader hosting it is gone.
    """
    if "leader task" in text:
        return [leader]
    for marker in ("timed out task names", "unhealthy"):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    names = []
    for kind, index in _TASK.findall(text):
        name = _task_name(kind, index)
        if name != own and name not in names:
            names.append(name)
    return names or ([leader] if leader != own else ["another process"])


def _described(names: list[str], leader: str) -> str:
    return " and ".join(f"{name} (the chief)" if name == leader and not name.startswith("chief")
                        else name for name in names)


def is_peer_loss(error: BaseException) -> bool:
    """Whether ``error`` is TensorFlow's way of saying that another process of the cluster is
    gone. Code that turns any failure (e.g. of loading a model) into a UserError about its
    input lets such an error through: the input is fine.

    Args:
        error: an exception.

    Returns:
        True when this process joined a cluster and ``error`` is one of the errors an aborted
        collective operation or a lost coordination service raises.
    """
    if joined() is None:
        return False
    import tensorflow as tf

    return isinstance(error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                              tf.errors.AbortedError, tf.errors.CancelledError))


def peer_failure(error: BaseException) -> UserError | None:
    """What to tell the user when a TensorFlow error means another process of the cluster is
    gone (killed, crashed, or stopped because it refused its input).

    TensorFlow's coordination service notices a process that stops sending heartbeats within
    seconds and aborts the collective operations every other process is waiting in.

    Args:
        error: an exception raised while this process ran a procedure.

    Returns:
        A UserError naming the lost process and what to do, or None when ``error`` is not
        about the cluster (or this process joined none).
    """
    if not is_peer_loss(error):
        return None
    member = joined()
    lost = _lost_tasks(str(error), member.name, member.leader)
    return UserError(
        f"--strategy=multi_worker: {_described(lost, member.leader)} of the cluster stopped, and "
        f"{member.name} cannot go on without it; start every process again with the same "
        "command: they resume from the chief's last checkpoint (a process that refused its "
        "input says why in its own output)")


def chief_decides(value: bool) -> bool:
    """The chief's ``value``, on every process of the cluster (one collective operation, so
    every process must call it at the same point).

    Args:
        value: this process's answer; only the chief's counts.

    Returns:
        The chief's ``value`` (``value`` itself when no cluster was joined).
    """
    member = joined()
    if member is None:
        return value
    import tensorflow as tf

    strategy = member.strategy
    mine = 1.0 if member.is_chief and value else 0.0
    votes = strategy.run(lambda: tf.constant(mine))
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)) > 0


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


def chiefs_record(path: str) -> dict:
    """The JSON object the chief wrote at the counterpart of ``path`` (see ``shared_path``), as
    far as it can be read: a worker that the chief told a run or a seed is finished reports
    the chief's result instead of its own. Nothing is deleted or repaired (the chief's files
    are the chief's).

    Args:
        path: a JSON file's path, under a worker's scratch directory or the run directory.

    Returns:
        The file's object, or an empty dict when it is missing, not JSON or not an object.
    """
    try:
        with open(shared_path(path), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def leave() -> None:
    """Removes a worker's scratch directory (the chief has none)."""
    member = joined()
    if member is not None and member.scratch_dir is not None:
        shutil.rmtree(member.scratch_dir, ignore_errors=True)
