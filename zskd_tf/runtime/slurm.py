"""The cluster of a Slurm job step, for ``--strategy=multi_worker`` without ``TF_CONFIG``.

``srun`` starts one task per process and describes the step in ``SLURM_*`` variables;
TensorFlow's ``SlurmClusterResolver`` turns them into a cluster: task ``SLURM_PROCID`` of
``SLURM_STEP_NUM_TASKS``, on the nodes of ``SLURM_STEP_NODELIST`` with the counts of
``SLURM_STEP_TASKS_PER_NODE``, the tasks of one node on ports 8888, 8889, ...

The resolver's own GPU bookkeeping fails on nodes without GPUs (with no ``nvidia-smi`` it
raises ``FileNotFoundError``; with ``CUDA_VISIBLE_DEVICES=""`` it gives each task zero GPUs and
then divides by zero), so zskd_tf takes only the cluster's layout from it. Each task then uses
the GPUs it sees, as with ``TF_CONFIG``: Slurm binds GPUs to tasks (``--gpus-per-task``).
"""
from __future__ import annotations

import os

from zskd_tf.errors import UserError

# Set in every Slurm job; with TF_CONFIG absent they select this module's cluster.
JOB_VARIABLES = ("SLURM_JOB_ID", "SLURM_PROCID")
# What TensorFlow's resolver reads; srun sets them for each task of a job step.
STEP_VARIABLES = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                  "SLURM_STEP_TASKS_PER_NODE")


def _fail(problem: str):
    raise UserError(f"--strategy=multi_worker in a Slurm job: {problem}")


def in_job(environ=os.environ) -> bool:
    """Whether the process runs inside a Slurm job.

    Args:
        environ: the environment to look at.

    Returns:
        True when every one of ``JOB_VARIABLES`` is set and not empty.
    """
    return all(environ.get(name) for name in JOB_VARIABLES)


def _count(environ, name: str) -> int:
    text = environ[name]
    if not text.isdigit():
        _fail(f"{name}={text!r} is not a whole number")
    return int(text)


def check_step(environ=os.environ) -> tuple[int, int]:
    """Checks that the Slurm variables describe one consistent job step.

    Args:
        environ: the environment holding the ``SLURM_*`` variables.

    Returns:
        (this task's rank, the number of tasks of the step).

    Raises:
        UserError: a variable is missing or malformed, or they contradict each other.
    """
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as tf_slurm

    missing = [name for name in STEP_VARIABLES if not environ.get(name)]
    if missing:
        _fail(f"{', '.join(missing)} not set: start every task with srun (in a batch script, "
              "srun python -m zskd_tf.main ...), or describe the cluster in TF_CONFIG")
    rank, tasks = _count(environ, "SLURM_PROCID"), _count(environ, "SLURM_STEP_NUM_TASKS")
    try:
        nodes = tf_slurm.expand_hostlist(environ["SLURM_STEP_NODELIST"])
        per_node = tf_slurm.expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"])
    except ValueError as e:
        _fail(str(e).splitlines()[0])
    if len(nodes) != len(per_node):
        _fail(f"SLURM_STEP_NODELIST names {len(nodes)} node(s) but SLURM_STEP_TASKS_PER_NODE "
              f"gives task counts for {len(per_node)}")
    if len(set(nodes)) != len(nodes):
        _fail(f"SLURM_STEP_NODELIST names a node twice ({environ['SLURM_STEP_NODELIST']})")
    if sum(per_node) != tasks:
        _fail(f"SLURM_STEP_TASKS_PER_NODE places {sum(per_node)} task(s) but "
              f"SLURM_STEP_NUM_TASKS={tasks}")
    if not rank < tasks:
        _fail(f"SLURM_PROCID={rank} is not one of the step's {tasks} task(s) (0 to {tasks - 1})")
    return rank, tasks


def resolver():
    """TensorFlow's cluster resolver for this task of the Slurm job step.

    Returns:
        A ``SimpleClusterResolver`` with the cluster and task that ``SlurmClusterResolver``
        reads from the environment, and the GPUs this process sees.

    Raises:
        UserError: the Slurm variables are missing or inconsistent (see ``check_step``).
    """
    import tensorflow as tf

    _, tasks = check_step()
    # Layout only: enough nominal "GPUs" that the resolver's arithmetic holds; it must not
    # touch CUDA_VISIBLE_DEVICES (auto_set_gpu) and its GPU count is replaced below.
    slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(
        gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
    spec = slurm.cluster_spec()
    gpus = len(tf.config.list_physical_devices("GPU"))
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=slurm.task_type, task_id=slurm.task_id,
        num_accelerators={"GPU": gpus}, rpc_layer="grpc")
