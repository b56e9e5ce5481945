"""``--strategy=multi_worker`` inside a Slurm job: the cluster comes from the ``SLURM_*``
variables that ``srun`` sets for each task (no Slurm is needed to check that)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from helpers import FASHION_MNIST_DIR, REPO, assert_user_error, cli_env
from zskd_tf.errors import UserError
from zskd_tf.runtime import cluster, slurm

# What srun sets for task 1 of a 2-task step on one node (srun -N1 -n2 on node "localhost").
TWO_TASKS = {
    "SLURM_JOB_ID": "4242", "SLURM_PROCID": "1", "SLURM_NTASKS": "2",
    "SLURM_JOB_NODELIST": "localhost", "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_TASKS_PER_NODE": "2",
    "SLURM_TASKS_PER_NODE": "2",
}


@pytest.fixture
def slurm_task(monkeypatch, tmp_path):
    """The environment of a Slurm task, without TF_CONFIG, and with ``scontrol`` and
    ``nvidia-smi`` on PATH failing if anything calls them (none is needed)."""
    for name in [n for n in os.environ if n == "TF_CONFIG" or n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for tool in ("scontrol", "nvidia-smi"):
        path = tmp_path / tool
        path.write_text("#!/bin/sh\necho \"$0 must not be called\" >&2\nexit 1\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for name, value in TWO_TASKS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_a_two_task_step_on_one_node(slurm_task):
    resolver = cluster._resolver()  # what join() gives MultiWorkerMirroredStrategy
    assert resolver.cluster_spec().as_dict() == {"worker": ["localhost:8888", "localhost:8889"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.num_accelerators() == {"GPU": 0}  # the GPUs this process sees: none
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # left to Slurm


def test_tasks_on_several_nodes_follow_the_node_list(slurm_task):
    slurm_task.setenv("SLURM_STEP_NODELIST", "cpu1,gpu[07-08]")
    slurm_task.setenv("SLURM_STEP_TASKS_PER_NODE", "1,2(x2)")
    slurm_task.setenv("SLURM_STEP_NUM_TASKS", "5")
    slurm_task.setenv("SLURM_PROCID", "4")
    resolver = slurm.resolver()
    assert resolver.cluster_spec().as_dict() == {"worker": [
        "cpu1:8888", "gpu07:8888", "gpu07:8889", "gpu08:8888", "gpu08:8889"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 4)


def test_tf_config_comes_before_slurm(slurm_task):
    slurm_task.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, '
                                   '"task": {"type": "worker", "index": 0}}')
    assert cluster._resolver().cluster_spec().as_dict() == {"worker": ["127.0.0.1:1"]}


@pytest.mark.parametrize("changes, fragment", [
    ({"SLURM_STEP_NUM_TASKS": None}, "SLURM_STEP_NUM_TASKS not set: start every task with srun"),
    ({"SLURM_PROCID": "2"}, "SLURM_PROCID=2 is not one of the step's 2 task(s)"),
    ({"SLURM_PROCID": "one"}, "SLURM_PROCID='one' is not a whole number"),
    ({"SLURM_STEP_NUM_TASKS": "3"}, "places 2 task(s) but SLURM_STEP_NUM_TASKS=3"),
    ({"SLURM_STEP_NODELIST": "n[1-2]"}, "names 2 node(s) but SLURM_STEP_TASKS_PER_NODE gives "
                                        "task counts for 1"),
    ({"SLURM_STEP_NODELIST": "n[1-"}, 'Invalid hostlist format "n[1-"'),
    ({"SLURM_STEP_TASKS_PER_NODE": "2(x"}, 'Invalid tasks-per-node list format "2(x"'),
    ({"SLURM_STEP_NODELIST": "n1,n1", "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}, "a node twice"),
])
def test_inconsistent_variables_name_the_problem(slurm_task, changes, fragment):
    for name, value in changes.items():
        if value is None:
            slurm_task.delenv(name)
        else:
            slurm_task.setenv(name, value)
    with pytest.raises(UserError, match="--strategy=multi_worker in a Slurm job") as caught:
        cluster._resolver()
    assert fragment in str(caught.value)


def test_inconsistent_variables_are_one_error_line_and_write_nothing(tmp_path):
    env = {n: v for n, v in cli_env().items() if n != "TF_CONFIG" and not n.startswith("SLURM_")}
    env.update(TWO_TASKS, SLURM_PROCID="5")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "zskd_tf.main", "--procedure=train", "--strategy=multi_worker",
         f"--run_dir={run_dir}", f"--data_dir={FASHION_MNIST_DIR}", "--model=lenet5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert_user_error(proc, "Slurm job", "SLURM_PROCID=5 is not one of the step's 2 task(s)")
    assert not run_dir.exists()
