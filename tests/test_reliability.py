"""Kill test: every long procedure survives SIGKILL at random points with nothing lost.

Each procedure runs on tiny settings with ``--deterministic``: once uninterrupted (the
reference), then again in a new run directory where it is killed with SIGKILL at several
random moments (seeded: ``KILL_SEED``, default 0) and restarted with the same command until it
finishes. After every kill, every product present must be whole (JSON parses, ``.npz`` and
``.keras`` archives read completely); at the end the products must equal the reference's bit for
bit. The kill points land anywhere: during start-up, training, checkpointing or writing.
"""
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from helpers import REPO, cli_env, run_cli

KILLS = 3  # kill attempts per procedure, each at a random moment within the reference's duration
RNG = random.Random(int(os.environ.get("KILL_SEED", "0")))


def _whole(run_dir: str) -> None:
    """Every product under ``run_dir`` is complete (temporary ``.*.tmp`` dirs aside)."""
    for path in glob.glob(os.path.join(run_dir, "**", "*"), recursive=True):
        if "/." in path.replace(run_dir, "", 1):  # atomic writers' temporary directories
            continue
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
        elif path.endswith(".npz"):
            with np.load(path) as data:
                for key in data.files:
                    data[key]  # noqa: B018  (reads and checks the member's CRC)
        elif path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None, path
        elif os.path.basename(path) == "saved_model" and os.path.isdir(path):
            assert os.path.exists(os.path.join(path, "saved_model.pb")), path


def kill_and_finish(args, run_dir: str, duration: float) -> int:
    """Runs the command, SIGKILLing it at ``KILLS`` random moments between 1 s and 90 % of
    ``duration`` (the uninterrupted run's seconds) after each start, then runs it to the end.

    Returns how many kills hit a running process (a run that ends before its kill point is
    simply finished)."""
    command = [sys.executable, "-m", "zskd_tf.main", *args, f"--run_dir={run_dir}"]
    kills = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(command, cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=RNG.uniform(1.0, max(1.5, 0.9 * duration)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
        else:
            assert proc.returncode == 0, f"exit status {proc.returncode} before any kill"
        _whole(run_dir)
        if os.path.exists(os.path.join(run_dir, "result.json")):
            if kills == 0 and duration > 3:  # faster than the reference (a busy machine
                shutil.rmtree(run_dir)       # timed it): start over with earlier kills
                duration /= 2
                continue
            break
    run_cli(*args, f"--run_dir={run_dir}", check=True, timeout=900)
    _whole(run_dir)
    print(f"\n{args[0]}: {kills} kill(s) hit a running process", flush=True)
    return kills


def _weights(path):
    import keras

    import zskd_tf.models.layers  # noqa: F401  (registers the generator's layers)
    return keras.saving.load_model(path, compile=False).get_weights()


def _same_weights(a, b):
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)


def _same_arrays(a, b, key="x"):
    with np.load(a) as first, np.load(b) as second:
        np.testing.assert_array_equal(first[key], second[key])


@pytest.fixture(scope="module")
def lopes_stats(lenet5_teacher, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("stats") / "stats")
    run_cli("--procedure=compute_stats", f"--teacher={lenet5_teacher}", "--dataset=fashion_mnist",
            "--max_train_examples=1000", f"--run_dir={run}", check=True)
    return run


CASES = {  # procedure -> (flags, products compared with the reference)
    "train": (["--procedure=train", "--model=lenet5", "--dataset=fashion_mnist", "--epochs=8",
               "--batch_size=50", "--max_train_examples=1500", "--max_test_examples=200"],
              [("model.keras", _same_weights)]),
    "distill": (["--procedure=distill", "--student=lenet5_half", "--dataset=fashion_mnist",
                 "--epochs=8", "--batch_size=50", "--max_train_examples=1500",
                 "--max_test_examples=200"],
                [("model.keras", _same_weights)]),
    "data_impressions": (["--procedure=data_impressions", "--num_samples=160",
                          "--synthesis_batch_size=20", "--synthesis_steps=150"],
                         [("impressions.npz", _same_arrays)]),
    "optimize_dataset": (["--procedure=optimize_dataset", "--objective=all_layers",
                          "--num_samples=160", "--synthesis_batch_size=20",
                          "--synthesis_steps=150"],
                         [("all_layers.npz", _same_arrays)]),
    "zero_shot": (["--procedure=zero_shot", "--student=lenet5_half", "--dataset=fashion_mnist",
                   "--beta=0", "--iterations=30", "--batch_size=32", "--seeds=0",
                   "--max_test_examples=200"],
                  [("seed_0/model.keras", _same_weights),
                   ("seed_0/generator.keras", _same_weights)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("procedure", list(CASES))
def test_sigkill_at_random_points_loses_nothing(procedure, lenet5_teacher, tmp_path, request):
    flags, products = CASES[procedure]
    args = [*flags, "--deterministic", "--checkpoint_every_secs=1", "--verbose=quiet"]
    if procedure != "train":
        args.append(f"--teacher={lenet5_teacher}")
    if procedure == "optimize_dataset":
        args.append(f"--stats={request.getfixturevalue('lopes_stats')}")
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    start = time.monotonic()
    run_cli(*args, f"--run_dir={reference}", check=True, timeout=900)
    duration = time.monotonic() - start
    print(f"\n{procedure}: uninterrupted run {duration:.0f} s", flush=True)
    assert kill_and_finish(args, killed, duration) >= 1, "no kill hit a running process"
    for name, same in products:
        same(os.path.join(reference, name), os.path.join(killed, name))
