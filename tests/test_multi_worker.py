"""``--strategy=multi_worker``: a cluster of worker processes on 127.0.0.1 (TF_CONFIG).

Every subprocess runs with a timeout, so a worker waiting for a peer that died can never hang
the test session.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from helpers import FASHION_MNIST_DIR, REPO, assert_user_error, cli_env, read_json
from zskd_tf.errors import UserError
from zskd_tf.runtime import cluster

TIMEOUT = 240  # seconds for any one process (a tiny run takes about 30 s on 2 shared cores)
# 6 epochs x 2 steps of 64 images, a checkpoint at the end of every epoch (the time-based ones
# are pushed out of the run), the test set scored only at the end.
TRAIN = ("--procedure=train", "--dataset=fashion_mnist", f"--data_dir={FASHION_MNIST_DIR}",
         "--model=lenet5", "--epochs=6", "--batch_size=64", "--max_train_examples=128",
         "--max_test_examples=128", "--augment=none", "--deterministic", "--verbose=quiet",
         "--checkpoint_every_secs=100000", "--eval_every_epochs=6")
STEPS, STEPS_PER_EPOCH = 12, 2


def _env(tf_config: str | None, scratch: str | None = None) -> dict:
    env = cli_env()
    if scratch is not None:
        env["TMPDIR"] = scratch
    for name in [n for n in env if n == "TF_CONFIG" or n.startswith("SLURM_")]:
        del env[name]
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return env


def _start(args, tf_config: str | None, scratch: str | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zskd_tf.main", *args], cwd=REPO,
                            env=_env(tf_config, scratch), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(processes: list[subprocess.Popen]) -> list[subprocess.CompletedProcess]:
    """Waits for every process (killing all of them once one runs out of time, and then
    failing with what each had printed: a slow run and a hung one read differently)."""
    done = []
    try:
        for proc in processes:
            out, err = proc.communicate(timeout=TIMEOUT)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    except subprocess.TimeoutExpired:
        printed = []
        for proc in processes[len(done):]:
            proc.kill()
            out, err = proc.communicate()
            printed.append(f"{proc.args[-1]}: {(out or '')[-1000:]}\n{(err or '')[-2000:]}")
        raise AssertionError(f"a process ran over {TIMEOUT} s:\n" + "\n".join(printed)) from None
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return done


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start_cluster(run_dir: str, scratch: str, *task_args) -> list[subprocess.Popen]:
    """One worker process per ``task_args`` entry (its command line) on 127.0.0.1, all
    writing ``run_dir`` and keeping their temporary files under ``scratch``."""
    ports = _free_ports(len(task_args))
    os.makedirs(scratch, exist_ok=True)
    return [_start((*args, "--strategy=multi_worker", f"--run_dir={run_dir}"),
                   _tf_config(ports, i), scratch) for i, args in enumerate(task_args)]


@contextlib.contextmanager
def _stopped_at_exit(processes: list[subprocess.Popen]):
    """Kills whatever of ``processes`` still runs when the block ends (a failed assertion)."""
    try:
        yield processes
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _run_cluster(run_dir: str, scratch: str, args=TRAIN) -> list[subprocess.CompletedProcess]:
    """Two workers run ``args`` into ``run_dir``; their temporary files go under ``scratch``."""
    done = _finish(_start_cluster(run_dir, scratch, args, args))
    for proc in done:
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return done


def _weights(run_dir: str, model: str) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(os.path.join(run_dir, model),
                                   compile=False).get_weights()


def _assert_same_weights(a: str, b: str, model: str = "model.keras") -> None:
    for x, y in zip(_weights(a, model), _weights(b, model), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tf_config, fragment", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "task index 3"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief'"),
    ('{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}',
     "host:port"),
    ('{"cluster": {"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}, '
     '"task": {"type": "worker", "index": 0}}', '"ps"'),
    ('{"cluster": {"chief": ["127.0.0.1:1", "127.0.0.1:2"], "worker": ["127.0.0.1:3"]}, '
     '"task": {"type": "worker", "index": 0}}', "more than one chief"),
    ('["127.0.0.1:1"]', '"cluster" object'),
])
def test_check_tf_config_names_the_problem(tf_config, fragment):
    with pytest.raises(UserError, match="--strategy=multi_worker") as caught:
        cluster.check_tf_config(tf_config)
    assert fragment in str(caught.value)


def test_check_tf_config_returns_the_task():
    config = {"cluster": {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]},
              "task": {"type": "worker", "index": 1}}
    assert cluster.check_tf_config(json.dumps(config)) == ("worker", 1)


# What TensorFlow 2.21 reports (abridged) when a process of a two-worker cluster is gone.
_HEARTBEATS = ("{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0/"
               "device:CPU:0}} Collective ops is aborted by: Error reported from /job:worker/task:"
               "1: The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/"
               "replica:0/task:1\nThe tasks have crashed.")
_NO_LEADER = ("{{function_node __wrapped__CollectiveBcastRecv_device_/job:worker/replica:0/task:1/"
              "device:CPU:0}} Collective ops is aborted by: Failed to send RPC to coordination "
              "service. Either the leader task was preempted/died/restarted unexpectedly")
_NOT_REGISTERED = ("Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0. The first "
                   "task at the barrier: /job:worker/replica:0/task:0. Some timed out task "
                   "names:\n/job:worker/replica:0/task:1\n")
_LEADER_UNREACHABLE = ("Deadline Exceeded\nAdditional GRPC error information from remote target "
                       "/job:worker/replica:0/task:0 while calling /tensorflow.CoordinationService"
                       "/RegisterTask")
_SOCKET_CLOSED = ("{{function_node __wrapped__CollectiveBcastRecv_device_/job:worker/replica:0/"
                  "task:1/device:CPU:0}} Collective ops is aborted by: Socket closed")


@pytest.mark.parametrize("text, own, lost", [
    (_HEARTBEATS, "worker 0", ["worker 1"]),
    (_NO_LEADER, "worker 1", ["worker 0"]),
    (_NOT_REGISTERED, "worker 0", ["worker 1"]),
    (_LEADER_UNREACHABLE, "worker 1", ["worker 0"]),
    (_SOCKET_CLOSED, "worker 1", ["worker 0"]),  # no name: the leader is what a worker loses
    ("Socket closed", "worker 0", ["another process"]),
])
def test_the_lost_process_is_named_from_tensorflows_message(text, own, lost):
    assert cluster._lost_tasks(text, own, "worker 0") == lost


def test_no_cluster_no_peer_failure():
    import tensorflow as tf

    assert cluster.peer_failure(tf.errors.UnavailableError(None, None, "gone")) is None


@pytest.mark.parametrize("tf_config, fragment", [
    ("{not json", "not valid JSON"),
    (None, "set TF_CONFIG"),
])
def test_a_wrong_cluster_is_one_error_line_and_writes_nothing(tmp_path, tf_config, fragment):
    run_dir = tmp_path / "run"
    proc = _finish([_start((*TRAIN, "--strategy=multi_worker", f"--run_dir={run_dir}"),
                           tf_config)])[0]
    assert_user_error(proc, "--strategy=multi_worker", fragment)
    assert not run_dir.exists()


def test_a_single_machine_procedure_refuses_the_cluster(tmp_path):
    config = '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}'
    proc = _finish([_start(("--procedure=evaluate", "--strategy=multi_worker",
                            f"--run_dir={tmp_path / 'run'}", f"--model_path={tmp_path}"),
                           config)])[0]
    assert_user_error(proc, "--procedure=evaluate runs on one machine")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """TRAIN run to its end by two workers (``cluster``) and by one process (``single``)."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("the Debian package dataset-fashion-mnist is not installed (./setup.sh)")
    root = tmp_path_factory.mktemp("finished")
    runs = types.SimpleNamespace(cluster=str(root / "cluster"), single=str(root / "single"),
                                 scratch=str(root / "tmp"))
    alone = _start((*TRAIN, "--strategy=default", f"--run_dir={runs.single}"), None)
    _run_cluster(runs.cluster, runs.scratch)
    assert _finish([alone])[0].returncode == 0
    return runs


def _wait_for_file(pattern: str, processes: list[subprocess.Popen]) -> None:
    """Polls until a file matches ``pattern`` (failing if a process ends first)."""
    deadline = time.monotonic() + TIMEOUT
    while not glob.glob(pattern):
        assert all(proc.poll() is None for proc in processes), f"ended before {pattern}"
        assert time.monotonic() < deadline, f"no {pattern} within {TIMEOUT} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_workers_equal_one_process_and_report_a_finished_run(finished):
    # 6 epochs x 2 steps of 64 images: each of the 2 replicas took 32 a step, same weights
    assert read_json(os.path.join(finished.cluster, "result.json"))["steps"] == STEPS
    _assert_same_weights(finished.cluster, finished.single)
    assert not glob.glob(os.path.join(finished.scratch, "zskd_worker*"))  # worker 1's, removed

    # Started again, the finished run is reported and the worker does not wait for the chief.
    chief, worker = _run_cluster(finished.cluster, finished.scratch)
    assert "run already finished" in chief.stdout
    assert "worker 1 has nothing to do" in worker.stdout
    assert not glob.glob(os.path.join(finished.scratch, "zskd_worker*"))


@pytest.mark.slow
def test_a_killed_worker_stops_the_chief_and_both_resume_from_its_checkpoint(tmp_path,
                                                                            finished):
    run, scratch = str(tmp_path / "run"), str(tmp_path / "tmp")
    with _stopped_at_exit(_start_cluster(run, scratch, TRAIN, TRAIN)) as (chief, worker):
        # the chief's first checkpoint (end of epoch 1), 5 epochs before the end
        _wait_for_file(os.path.join(run, "checkpoints", "ckpt-*.index"), [chief, worker])
        worker.send_signal(signal.SIGKILL)
        stopped = _finish([chief])[0]  # TensorFlow notices the missing heartbeats
    assert worker.returncode == -signal.SIGKILL
    assert_user_error(stopped, "--strategy=multi_worker: worker 1 of the cluster stopped",
                      "start every process again with the same command")
    assert not os.path.exists(os.path.join(run, "result.json"))

    chief, worker = _run_cluster(run, scratch)
    resumed = [re.search(rf"resuming at step (\d+) of {STEPS}\b", proc.stdout)
               for proc in (chief, worker)]
    assert all(resumed), (chief.stdout, worker.stdout)
    step = int(resumed[0].group(1))
    assert int(resumed[1].group(1)) == step  # the worker restored the chief's checkpoint
    assert 0 < step < STEPS and step % STEPS_PER_EPOCH == 0, step
    assert "the products are the chief's" in worker.stdout
    _assert_same_weights(run, finished.cluster)
    # SIGKILL left the killed worker no time to remove its scratch directory
    assert len(glob.glob(os.path.join(scratch, "zskd_worker1_*"))) == 1


@pytest.mark.slow
def test_a_damaged_result_of_the_chief_is_completed_again_by_both(tmp_path, finished):
    """JSON, but not the record the chief wrote: the chief discards it and completes the run
    again (nothing is left to train); the worker follows the chief's decision instead of
    reading the file itself (it took such a file for a finished run and left the chief
    alone)."""
    run, scratch = str(tmp_path / "run"), str(tmp_path / "tmp")
    shutil.copytree(finished.cluster, run)
    with open(os.path.join(run, "result.json"), "w", encoding="utf-8") as f:
        f.write("[]")
    chief, worker = _run_cluster(run, scratch)
    for proc in (chief, worker):
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "result.json is damaged" in chief.stderr, chief.stderr[-2000:]
    assert "resuming at step 12 of 12" in worker.stdout
    assert "the products are the chief's" in worker.stdout
    assert read_json(os.path.join(run, "result.json"))["steps"] == STEPS
    _assert_same_weights(run, finished.cluster)


@pytest.mark.slow
def test_a_chief_refusing_its_input_stops_every_worker(tmp_path, lenet5_teacher):
    """The chief's machine lacks the teacher (after joining the cluster), or the chief's
    command has a bad flag (before joining): each worker, whose own input is fine, ends
    with one error line instead of waiting for the chief."""
    zero_shot = ("--procedure=zero_shot", "--student=lenet5_half", "--beta=0",
                 f"--data_dir={FASHION_MNIST_DIR}", "--iterations=3", "--batch_size=16",
                 "--seeds=0", "--max_test_examples=100", "--verbose=quiet")
    missing = str(tmp_path / "no_teacher")
    teacher_runs = _start_cluster(str(tmp_path / "zero_shot"), str(tmp_path / "tmp"),
                                  (*zero_shot, f"--teacher={missing}"),
                                  (*zero_shot, f"--teacher={lenet5_teacher}"))
    wait = ("--cluster_wait_secs=10",)
    flag_runs = _start_cluster(str(tmp_path / "train"), str(tmp_path / "tmp"),
                               (*TRAIN, *wait, "--epochs=0"), (*TRAIN, *wait))
    with _stopped_at_exit(teacher_runs + flag_runs):
        chief, worker = _finish(teacher_runs)
        assert_user_error(chief, f"{missing}' does not exist")
        assert_user_error(worker, "worker 0 (the chief) of the cluster stopped")
        chief, worker = _finish(flag_runs)
        assert_user_error(chief, "--epochs must be a positive number")
        assert_user_error(worker, "worker 0 (the chief) did not join the cluster within 10 s")
    assert not os.path.exists(tmp_path / "zero_shot") and not os.path.exists(tmp_path / "train")


@pytest.mark.slow
def test_zero_shot_on_two_workers_equals_two_replicas_on_one_machine(tmp_path, lenet5_teacher):
    """Not one replica: the generator's BatchNorm normalises each replica's half-batch, so
    the run depends on the number of replicas, wherever they are."""
    args = ("--procedure=zero_shot", f"--teacher={lenet5_teacher}", "--student=lenet5_half",
            f"--data_dir={FASHION_MNIST_DIR}", "--beta=0", "--iterations=3", "--batch_size=16",
            "--seeds=0", "--max_test_examples=100", "--deterministic", "--verbose=quiet")
    cluster, mirrored = str(tmp_path / "cluster"), str(tmp_path / "mirrored")
    alone = _start((*args, "--strategy=mirrored", "--logical_cpus=2",
                    f"--run_dir={mirrored}"), None)
    _run_cluster(cluster, str(tmp_path / "tmp"), args)
    assert _finish([alone])[0].returncode == 0
    _assert_same_weights(cluster, mirrored, os.path.join("seed_0", "model.keras"))
    assert not glob.glob(os.path.join(tmp_path, "tmp", "zskd_worker*"))


@pytest.mark.slow
def test_zero_shot_seeds_resume_on_two_workers_after_a_finished_seed(tmp_path, lenet5_teacher):
    """--seeds=0,1 on two workers, both killed once seed 0 has finished, then both started
    again: every process skips seed 0 (the chief's decision: the worker's scratch directory
    has no seed_0/result.json) and trains seed 1, which equals seed 1 run alone (on two
    replicas of one machine, which equal two workers: the test above)."""
    args = ("--procedure=zero_shot", f"--teacher={lenet5_teacher}", "--student=lenet5_half",
            f"--data_dir={FASHION_MNIST_DIR}", "--beta=0", "--iterations=2", "--batch_size=16",
            "--max_test_examples=100", "--deterministic", "--verbose=quiet")
    run, alone, scratch = (str(tmp_path / name) for name in ("run", "alone", "tmp"))
    reference = _start((*args, "--seeds=1", "--strategy=mirrored", "--logical_cpus=2",
                        f"--run_dir={alone}"), None)
    seeds = (*args, "--seeds=0,1")
    with _stopped_at_exit([reference, *_start_cluster(run, scratch, seeds, seeds)]) as (
            _, chief, worker):
        _wait_for_file(os.path.join(run, "seed_0", "result.json"), [chief, worker])
        for proc in (chief, worker):
            proc.kill()
            proc.wait()
        chief, worker = _run_cluster(run, scratch, seeds)
        assert _finish([reference])[0].returncode == 0
    for proc in (chief, worker):
        assert "seed 0: already finished" in proc.stdout, proc.stdout
        assert "seed 1: done" in proc.stdout, proc.stdout
    accuracy = read_json(os.path.join(run, "seed_0", "result.json"))["test_accuracy"]
    assert f"seed 0: already finished, test accuracy {accuracy:.4f}" in worker.stdout
    per_seed = read_json(os.path.join(run, "result.json"))["per_seed_test_accuracy"]
    assert per_seed[0] == accuracy and len(per_seed) == 2
    _assert_same_weights(run, alone, os.path.join("seed_1", "model.keras"))
