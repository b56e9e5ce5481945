"""The command line: flag validation, run-directory rules, train -> evaluate -> export."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import FASHION_MNIST_DIR, REPO, assert_user_error, cli_env, read_json, run_cli

needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR),
    reason="the Debian package dataset-fashion-mnist is not installed (./setup.sh installs it)")

TINY = ["--dataset=fashion_mnist", "--model=lenet5", "--epochs=1", "--batch_size=100",
        "--max_train_examples=2000", "--max_test_examples=1000", "--verbose=epoch"]


@pytest.mark.parametrize("args, fragments", [
    (["--procedure=nope", "--run_dir=/tmp/x"], ["procedure"]),
    (["--run_dir=/tmp/x"], ["--procedure"]),
    (["--procedure=train"], ["--run_dir"]),
    (["--procedure=train", "--run_dir=/tmp/x", "--batch_size=0"], ["--batch_size"]),
    (["--procedure=train", "--run_dir=/tmp/x", "--epochs=-3"], ["--epochs"]),
    (["--procedure=train", "--run_dir=/tmp/x", "--batch_size=ten"], ["batch_size"]),
    (["--procedure=train", "--run_dir=/tmp/x", "--lr_milestones=0.5,2"], ["--lr_milestones"]),
    (["--procedure=evaluate", "--run_dir=/tmp/x"], ["--model_path"]),
    (["--procedure=train", "--run_dir=/tmp/x", "--flagfile=/nonexistent.cfg"], ["flag"]),
    (["--procedure=train", "--run_dir=/tmp/x", "stray"], ["stray"]),
])
@pytest.mark.slow
def test_bad_flags_exit_2_with_one_line(args, fragments):
    assert_user_error(run_cli(*args), *fragments)


@pytest.mark.slow
def test_bad_names_and_paths_exit_2(tmp_path):
    run = str(tmp_path / "r")
    assert_user_error(run_cli("--procedure=train", f"--run_dir={run}", "--model=resnet9000"),
                      "resnet9000")
    assert_user_error(run_cli("--procedure=train", f"--run_dir={run}", "--dataset=imagenet"),
                      "imagenet")
    assert_user_error(run_cli("--procedure=evaluate", f"--run_dir={run}",
                              f"--model_path={tmp_path}/missing.keras"), "missing.keras")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(run_cli("--procedure=train", f"--run_dir={blocker}"), "file")


@pytest.mark.slow
def test_absent_dataset_lists_what_was_tried(tmp_path):
    proc = run_cli("--procedure=train", f"--run_dir={tmp_path}/r", "--dataset=cifar10",
                   f"--data_dir={tmp_path}/empty", "--model=wrn-16-1")
    line = assert_user_error(proc, "cifar10")
    assert "data_dir" in line or str(tmp_path) in line


@pytest.mark.slow
@needs_fashion_mnist
def test_train_evaluate_export_end_to_end(tmp_path):
    run = str(tmp_path / "teacher")
    run_cli("--procedure=train", f"--run_dir={run}", *TINY, check=True)
    result = read_json(os.path.join(run, "result.json"))
    assert result["test_accuracy"] > 0.4, result  # chance is 0.1
    for name in ("flags.cfg", "metrics.jsonl", "model.keras", "model_info.json",
                 "saved_model/saved_model.pb", "checkpoints/checkpoint"):
        assert os.path.exists(os.path.join(run, name)), name
    assert os.listdir(os.path.join(run, "tensorboard"))
    loaded = tf.saved_model.load(os.path.join(run, "saved_model"))
    probs = loaded.serve(tf.zeros([2, 28, 28, 1]))["probabilities"].numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    # The same command again reports the finished run; other flags are refused.
    again = run_cli("--procedure=train", f"--run_dir={run}", *TINY, check=True)
    assert "already finished" in again.stdout
    assert_user_error(run_cli("--procedure=train", f"--run_dir={run}", *TINY, "--seed=5"),
                      "different flags", "--overwrite")
    assert_user_error(run_cli("--procedure=evaluate", f"--run_dir={run}",
                              f"--model_path={run}"), "another procedure")
    # flags.cfg is the command: replayed as a flagfile it reports the finished run.
    replay = run_cli(f"--flagfile={os.path.join(run, 'flags.cfg')}", check=True)
    assert "already finished" in replay.stdout

    # evaluate: the run dir, its .keras file and its SavedModel agree.
    accuracies = []
    for i, path in enumerate([run, os.path.join(run, "model.keras"),
                              os.path.join(run, "saved_model")]):
        out = str(tmp_path / f"eval{i}")
        run_cli("--procedure=evaluate", f"--run_dir={out}", f"--model_path={path}",
                "--max_test_examples=1000", check=True)
        ev = read_json(os.path.join(out, "result.json"))
        assert len(ev["per_class_accuracy"]) == 10
        accuracies.append(ev["test_accuracy"])
    assert accuracies[0] == pytest.approx(result["test_accuracy"], abs=1e-9)
    assert max(accuracies) - min(accuracies) < 1e-9, accuracies
    # evaluated without --dataset; replayed so (evaluate scores again into its run directory)
    run_cli(f"--flagfile={tmp_path / 'eval0' / 'flags.cfg'}", check=True)
    assert read_json(str(tmp_path / "eval0" / "result.json"))["test_accuracy"] == accuracies[0]

    # --split=holdout scores the first --holdout_first training images (a validation split).
    out = str(tmp_path / "holdout")
    run_cli("--procedure=evaluate", f"--run_dir={out}", f"--model_path={run}", "--split=holdout",
            "--holdout_first=300", check=True)
    ev = read_json(os.path.join(out, "result.json"))
    assert ev["split"] == "holdout" and ev["num_examples"] == 300
    assert ev["holdout_accuracy"] > 0.4, ev
    assert_user_error(run_cli("--procedure=evaluate", f"--run_dir={tmp_path / 'no_holdout'}",
                              f"--model_path={run}", "--split=holdout"), "--holdout_first")

    # export with TFLite: both reproduce the Keras model on random raw images.
    out = str(tmp_path / "export")
    run_cli("--procedure=export", f"--run_dir={out}", f"--model_path={run}", "--tflite",
            check=True)
    ex = read_json(os.path.join(out, "result.json"))
    assert ex["saved_model_max_abs_diff"] < 1e-5
    assert ex["tflite_max_abs_diff"] < 1e-4
    assert os.path.getsize(os.path.join(out, "model.tflite")) > 1000

    # Reloaded SavedModel and TFLite give the Keras model's predictions on real test images.
    from zskd_tf import export, model_io
    from zskd_tf.data import datasets
    images = datasets.load_dataset("fashion_mnist").test_x[:200].astype(np.float32)
    keras_probs = model_io.load_classifier(run).probabilities(images)
    saved = tf.saved_model.load(os.path.join(out, "saved_model"))
    saved_probs = saved.serve(tf.constant(images))["probabilities"].numpy()
    tflite_probs = export.tflite_probabilities(os.path.join(out, "model.tflite"), images)
    np.testing.assert_allclose(saved_probs, keras_probs, atol=1e-5)
    np.testing.assert_allclose(tflite_probs, keras_probs, atol=1e-4)
    assert (tflite_probs.argmax(1) == keras_probs.argmax(1)).mean() >= 0.99


@pytest.mark.slow
@needs_fashion_mnist
def test_overwrite_replaces_a_run(tmp_path):
    run = str(tmp_path / "r")
    base = ["--procedure=train", f"--run_dir={run}", *TINY, "--max_train_examples=200"]
    run_cli(*base, check=True)
    run_cli(*base, "--seed=1", "--overwrite", check=True)
    assert "--seed=1" in open(os.path.join(run, "flags.cfg")).read()


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("averaging", [[], ["--ema_momentum=0.9"]], ids=["final", "ema"])
def test_killed_training_resumes_to_the_same_weights(averaging, tmp_path):
    """SIGKILL mid-run, run again: it resumes, and (deterministic) ends where an
    uninterrupted run ends; with --ema_momentum the kept weight average resumes too."""
    args = ["--procedure=train", "--dataset=fashion_mnist", "--model=lenet5", "--epochs=6",
            "--batch_size=50", "--max_train_examples=1500", "--max_test_examples=200",
            "--checkpoint_every_secs=1", "--deterministic", "--verbose=epoch", *averaging]
    reference = str(tmp_path / "reference")
    run_cli(*args, f"--run_dir={reference}", check=True)

    run = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "-m", "zskd_tf.main", *args, f"--run_dir={run}"],
                            cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    index = os.path.join(run, "checkpoints", "checkpoint")
    while not os.path.exists(index) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(run, "result.json")), "killed too late"
    resumed = run_cli(*args, f"--run_dir={run}", check=True)
    assert "resuming at step" in resumed.stdout

    import keras
    a = keras.saving.load_model(os.path.join(reference, "model.keras"))
    b = keras.saving.load_model(os.path.join(run, "model.keras"))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    result = json.load(open(os.path.join(run, "result.json")))
    assert result["ema_momentum"] == (0.9 if averaging else 0.0)


EXPORT_TOOL = os.path.join(REPO, "tools", "export_savedmodel.py")


def _tool(*args):
    return subprocess.run([sys.executable, EXPORT_TOOL, *args], capture_output=True, text=True,
                          env=cli_env(), timeout=600)


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("student", ["lenet5_teacher", "wrn-16-1_G8B2"])
def test_export_tool_tflite_agrees_with_keras_on_real_images(student, tmp_path, request):
    """Any classifier, incl. a Moonshine WRN with grouped convolutions: TFLite top-1 = Keras."""
    from zskd_tf import export, model_io
    from zskd_tf.data import datasets
    from zskd_tf.data import preprocess as pp
    from zskd_tf.models import registry

    if student == "lenet5_teacher":
        model_path = request.getfixturevalue("lenet5_teacher")
    else:  # an untrained G8B2 student is enough: the check is Keras vs TFLite
        keras.utils.set_random_seed(0)
        model = registry.build_model("wrn-16-1", input_shape=(32, 32, 1), conv="G8B2")
        spec = pp.input_spec_for("fashion_mnist", "wrn", (32, 32, 1))
        model_path = str(tmp_path / "wrn")
        model_io.save_classifier(model_path, model, {
            "model": "wrn-16-1", "conv": "G8B2", "dataset": "fashion_mnist",
            "class_names": [str(i) for i in range(10)], "input_spec": spec.to_dict()})
    out = str(tmp_path / "export")
    proc = _tool(f"--model_path={model_path}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model.tflite" in proc.stdout
    images = datasets.load_dataset("fashion_mnist").test_x[:300].astype(np.float32)
    keras_probs = model_io.load_classifier(model_path).probabilities(images)
    tflite_probs = export.tflite_probabilities(os.path.join(out, "model.tflite"), images)
    assert (tflite_probs.argmax(1) == keras_probs.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(tflite_probs, keras_probs, atol=1e-4)
    again = _tool(f"--model_path={model_path}", f"--out={out}")  # refuses to overwrite
    assert again.returncode == 2 and "already holds" in again.stderr
    missing = _tool(f"--model_path={tmp_path}/none", f"--out={out}")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
