"""``--strategy=multi_worker``: a cluster of worker processes on 127.0.0.1 (TF_CONFIG).

Every subprocess runs with a timeout, so a worker waiting for a peer that died can never hang
the test session.
"""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import FASHION_MNIST_DIR, REPO, assert_user_error, cli_env, read_json
from zskd_tf.errors import UserError
from zskd_tf.runtime import cluster

TIMEOUT = 240  # seconds for any one process (a tiny run takes about 30 s on 2 shared cores)
TRAIN = ("--procedure=train", "--dataset=fashion_mnist", f"--data_dir={FASHION_MNIST_DIR}",
         "--model=lenet5", "--epochs=2", "--batch_size=64", "--max_train_examples=256",
         "--max_test_examples=128", "--augment=none", "--deterministic", "--verbose=quiet",
         "--checkpoint_every_secs=100000")


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
    """Waits for every process (killing all of them once one runs out of time)."""
    done = []
    try:
        for proc in processes:
            out, err = proc.communicate(timeout=TIMEOUT)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
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


def _run_cluster(run_dir: str, scratch: str, args=TRAIN) -> list[subprocess.CompletedProcess]:
    """Two workers run ``args`` into ``run_dir``; their temporary files go under ``scratch``."""
    ports = _free_ports(2)
    os.makedirs(scratch, exist_ok=True)
    workers = [_start((*args, "--strategy=multi_worker", f"--run_dir={run_dir}"),
                      _tf_config(ports, i), scratch) for i in range(2)]
    done = _finish(workers)
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


@pytest.mark.slow
def test_two_workers_equal_one_process_and_resume_from_the_chiefs_checkpoint(tmp_path):
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("the Debian package dataset-fashion-mnist is not installed (./setup.sh)")
    cluster, single = str(tmp_path / "cluster"), str(tmp_path / "single")
    scratch = str(tmp_path / "tmp")
    alone = _start((*TRAIN, "--strategy=default", f"--run_dir={single}"), None)
    _run_cluster(cluster, scratch)
    assert _finish([alone])[0].returncode == 0
    # 2 epochs x 4 steps of 64 images: each of the 2 replicas took 32 a step, same weights
    assert read_json(os.path.join(cluster, "result.json"))["steps"] == 8
    _assert_same_weights(cluster, single)
    assert not glob.glob(os.path.join(scratch, "zskd_worker*"))  # worker 1's, removed

    # The cluster stopped after the first epoch's checkpoint: both workers restart and go on
    # from the chief's step 4 (a worker starting at step 0 would wait for a chief that is
    # done, and the test would time out).
    for path in glob.glob(os.path.join(cluster, "checkpoints", "ckpt-8.*")):
        os.remove(path)
    os.remove(os.path.join(cluster, "result.json"))
    chief, worker = _run_cluster(cluster, scratch)
    assert "resuming at step 4 of 8" in chief.stdout
    assert "resuming at step 4 of 8" in worker.stdout
    assert "the products are the chief's" in worker.stdout
    _assert_same_weights(cluster, single)

    # Started again, the finished run is reported and the worker does not wait for the chief.
    chief, worker = _run_cluster(cluster, scratch)
    assert "run already finished" in chief.stdout
    assert "worker 1 has nothing to do" in worker.stdout
    assert not glob.glob(os.path.join(scratch, "zskd_worker*"))


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
