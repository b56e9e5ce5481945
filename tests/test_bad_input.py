"""Bad input, across the procedures: one ``error:`` line naming the problem, exit status 2, no
traceback, and finished products left as they were (docs/reliability.md, "Bad input").

Cases already covered next to their method (stats from another teacher, spectral parts missing,
NaN impressions, foreign teachers, ...) are listed in that table with their test.
"""
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from helpers import REPO, assert_user_error, cli_env, run_cli
from zskd_tf.data import preprocess as pp
from zskd_tf.data import synthetic
from zskd_tf.data.datasets import DEBIAN_FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST_DIR),
    reason="the Debian package dataset-fashion-mnist is not installed (./setup.sh installs it)")

SPEC = pp.input_spec_for("fashion_mnist", "lenet", (32, 32, 1))


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (20, 32, 32, 1)).astype(np.float32)
    y = np.arange(20) % 10
    good = str(d / "good.npz")
    synthetic.save_synthetic(good, x, y, input_spec=SPEC, dataset="fashion_mnist", method="test")
    with np.load(good) as data:
        meta = data["meta"]
    nan_x = x.copy()
    nan_x[3, 4, 5, 0] = np.nan
    files = {
        "missing_x": _npz(d / "missing_x.npz", y=y, meta=meta),
        "string_x": _npz(d / "string_x.npz", x=np.full((20, 32, 32, 1), "a"), y=y, meta=meta),
        "nan_x": _npz(d / "nan_x.npz", x=nan_x, y=y, meta=meta),
        "float_y": _npz(d / "float_y.npz", x=x, y=y + 0.5, meta=meta),
        "bad_meta": _npz(d / "bad_meta.npz", x=x, y=y, meta=np.array("{not json")),
        "wrong_shape": _npz(d / "wrong_shape.npz", x=x[:, :28, :28], y=y, meta=meta),
        "not_npz": str(d / "not_npz.npz"),
    }
    with open(files["not_npz"], "w") as f:
        f.write("this is not an archive")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    features = keras.layers.Conv2D(4, 3)(inputs)  # a feature map, not class scores
    feature_model = keras.Model(inputs, features)
    files["feature_teacher"] = str(d / "features.keras")
    feature_model.save(files["feature_teacher"])
    return files


def test_a_synthetic_dataset_that_is_not_one(bad_files, lenet5_teacher, tmp_path):
    expected = {"missing_x": "x", "string_x": "x", "nan_x": "NaN", "float_y": "y",
                "bad_meta": "meta", "wrong_shape": "(28, 28, 1)", "not_npz": "not a readable"}
    for name, fragment in expected.items():
        run = str(tmp_path / name)
        proc = run_cli("--procedure=distill", f"--teacher={lenet5_teacher}",
                       "--student=lenet5_half", f"--dataset={bad_files[name]}", f"--run_dir={run}")
        line = assert_user_error(proc, os.path.basename(bad_files[name]))
        assert fragment in line, (name, line)
        assert not os.path.exists(run), name


@pytest.mark.parametrize("procedure", ["data_impressions", "distill", "zero_shot"])
def test_a_teacher_whose_output_is_not_a_class_distribution(procedure, bad_files, tmp_path):
    args = {"data_impressions": ["--num_samples=20"],
            "distill": ["--student=lenet5_half", "--max_train_examples=100"],
            "zero_shot": ["--student=lenet5_half", "--beta=0", "--iterations=2"]}[procedure]
    run = str(tmp_path / "r")
    proc = run_cli(f"--procedure={procedure}", f"--teacher={bad_files['feature_teacher']}",
                   "--dataset=fashion_mnist", *args, f"--run_dir={run}")
    assert_user_error(proc, "features.keras")
    assert not os.path.exists(run)


@pytest.mark.parametrize("args,fragment", [
    (["--procedure=train", "--epochs=abc"], "--epochs"),
    (["--procedure=train", "--batch_size=-4"], "--batch_size"),
    (["--procedure=train", "--input_noise=-0.1"], "--input_noise"),
    (["--procedure=train", "--adversarial_eps=nan"], "--adversarial_eps"),
    (["--procedure=train", "--learning_rate=nan"], "--learning_rate must be a finite number"),
    (["--procedure=distill", "--temperature=inf"], "--temperature must be a finite number"),
    (["--procedure=train", "--momentum=-inf"], "--momentum must be a finite number"),
    (["--procedure=zero_shot", "--teacher=t", "--student=s", "--student_lr=nan"],
     "--student_lr must be a finite number"),
    (["--procedure=train", "--adversarial_eps=1", "--adversarial_train_steps=0"],
     "--adversarial_train_steps"),
    (["--procedure=nope"], "--procedure"),
    (["--procedure=distill"], "--run_dir"),
    (["--procedure=data_impressions", "--betas=1.0,x"], "--teacher"),
    (["--procedure=optimize_dataset", "--objective=bogus"], "--objective"),
    (["--procedure=zero_shot", "--variant=bad"], "--variant"),
    (["--procedure=transition_curves", "--teacher=t", "--student_run=s", "--num_images=-1"],
     "--num_images"),
    (["--procedure=pipeline", "--preset=huge"], "--preset"),
    (["--procedure=train", "unexpected"], "unexpected arguments"),
])
def test_malformed_flags(args, fragment, tmp_path):
    run = str(tmp_path / "r")
    has_run_dir = args != ["--procedure=distill"]
    proc = run_cli(*args, *([f"--run_dir={run}"] if has_run_dir else []))
    assert_user_error(proc, fragment)
    assert not os.path.exists(run)


def test_a_run_directory_of_another_procedure_is_left_alone(lenet5_teacher):
    before = {n: os.path.getmtime(os.path.join(lenet5_teacher, n))
              for n in os.listdir(lenet5_teacher)}
    proc = run_cli("--procedure=data_impressions", f"--teacher={lenet5_teacher}",
                   "--num_samples=20", f"--run_dir={lenet5_teacher}")
    assert_user_error(proc, "another procedure (--procedure=train, not "
                            "--procedure=data_impressions)")
    assert {n: os.path.getmtime(os.path.join(lenet5_teacher, n))
            for n in os.listdir(lenet5_teacher)} == before


@pytest.mark.parametrize("run_dir,fragment", [
    ("/proc/zskd_tf_run", "cannot write"),
    ("{file}/run", "cannot write"),
])
def test_an_unwritable_run_directory(run_dir, fragment, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = run_cli("--procedure=train", "--epochs=1", "--max_train_examples=100",
                   f"--run_dir={run_dir.format(file=blocker)}")
    assert_user_error(proc, fragment)


_FULL_DISK = """
import contextlib, errno, runpy, sys
from zskd_tf.runtime import atomic
real = atomic.atomic_path
@contextlib.contextmanager
def full(path, suffix=""):
    if path.endswith({target!r}):
        raise OSError(errno.ENOSPC, "No space left on device", path)
    with real(path, suffix) as tmp:
        yield tmp
atomic.atomic_path = full
sys.argv = ["zskd_tf.main", *{args!r}]
runpy.run_module("zskd_tf.main", run_name="__main__")
"""


def _with_full_disk(target, args):
    return subprocess.run([sys.executable, "-c", _FULL_DISK.format(target=target, args=args)],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)


def test_a_disk_that_fills_keeps_finished_products_and_resumes(lenet5_teacher, tmp_path):
    """The disk "fills" when impressions.npz is assembled: one error line, the finished batches
    stay, and the same command completes once there is room."""
    run = str(tmp_path / "di")
    args = ["--procedure=data_impressions", f"--teacher={lenet5_teacher}", "--num_samples=40",
            "--synthesis_batch_size=20", "--synthesis_steps=5", f"--run_dir={run}"]
    proc = _with_full_disk("impressions.npz", args)
    line = assert_user_error(proc, "No space left on device", "impressions.npz")
    assert "resumes" in line
    batches = sorted(os.listdir(os.path.join(run, "batches")))
    assert len(batches) == 2 and not os.path.exists(os.path.join(run, "result.json"))
    done = run_cli(*args, check=True)
    assert "0 batch(es) to make" in done.stdout
    assert os.path.exists(os.path.join(run, "impressions.npz"))


def test_a_full_disk_while_training(tmp_path):
    run = str(tmp_path / "t")
    args = ["--procedure=train", "--model=lenet5", "--epochs=1", "--max_train_examples=200",
            "--max_test_examples=100", f"--run_dir={run}"]
    proc = _with_full_disk("model.keras", args)
    assert_user_error(proc, "No space left on device")
    assert not os.path.exists(os.path.join(run, "result.json"))
    assert os.path.isdir(os.path.join(run, "checkpoints"))  # the trained state is kept
    resumed = run_cli(*args, check=True)
    assert "test accuracy" in resumed.stdout


def test_nan_loss_mid_run_stops_and_keeps_the_last_checkpoint(tmp_path):
    run = str(tmp_path / "t")
    proc = run_cli("--procedure=train", "--model=lenet5", "--epochs=2", "--learning_rate=1e6",
                   "--max_train_examples=500", "--checkpoint_every_secs=1", f"--run_dir={run}")
    line = assert_user_error(proc, "training stopped", "lower the learning rate")
    assert "nan" in line or "inf" in line
    assert not os.path.exists(os.path.join(run, "result.json"))
    assert not os.path.exists(os.path.join(run, "model.keras"))
    with open(os.path.join(run, "flags.cfg")) as f:
        assert "--learning_rate=1000000.0" in f.read()
    if os.path.exists(os.path.join(run, "metrics.jsonl")):  # no NaN record was written
        for line in open(os.path.join(run, "metrics.jsonl")):
            assert all(np.isfinite(v) for v in json.loads(line).values()
                       if isinstance(v, float))


@pytest.mark.parametrize("args,flag", [
    (["--procedure=train", "--model=lenet5", "--batch_size=100000000"], "--batch_size"),
    (["--procedure=data_impressions", "--num_samples=100000000",
      "--synthesis_batch_size=100000000"], "--synthesis_batch_size"),
])
def test_a_batch_larger_than_the_machine_is_refused_before_it_is_allocated(args, flag,
                                                                         lenet5_teacher,
                                                                         tmp_path):
    run = str(tmp_path / "r")
    teacher = [f"--teacher={lenet5_teacher}"] if "data_impressions" in args[0] else []
    proc = run_cli(*args, *teacher, "--max_train_examples=100", f"--run_dir={run}",
                   timeout=300)
    assert_user_error(proc, flag, "GiB", "memory")
    assert not os.path.exists(run)


def _flip_middle(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        chunk = f.read(64)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))


@pytest.mark.parametrize("damaged", ["model_info.json", "model.keras"])
def test_a_damaged_teacher_is_one_error_line_naming_the_file(damaged, lenet5_teacher, tmp_path):
    teacher = str(tmp_path / "teacher")
    shutil.copytree(lenet5_teacher, teacher)
    path = os.path.join(teacher, damaged)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    run = str(tmp_path / "r")
    proc = run_cli("--procedure=data_impressions", f"--teacher={teacher}", "--num_samples=20",
                   f"--run_dir={run}")
    assert_user_error(proc, path)
    assert not os.path.exists(run)


def test_damaged_statistics_are_one_error_line_naming_the_file(lenet5_teacher, tmp_path):
    stats_run = str(tmp_path / "stats")
    run_cli("--procedure=compute_stats", f"--teacher={lenet5_teacher}",
            "--max_train_examples=300", f"--run_dir={stats_run}", check=True)
    stats = os.path.join(stats_run, "stats.npz")
    _flip_middle(stats)
    run = str(tmp_path / "r")
    proc = run_cli("--procedure=optimize_dataset", f"--teacher={lenet5_teacher}",
                   f"--stats={stats}", "--num_samples=20", "--synthesis_batch_size=10",
                   f"--run_dir={run}")
    assert_user_error(proc, stats, "damaged")
    assert not os.path.exists(run)
