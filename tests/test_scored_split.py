"""--split on the procedures that score their model while training (train, distill, zero_shot):
with --split=holdout --holdout_first=N the student is scored on the first N training images, a
validation split, so that a choice of recipe never reads the test set."""
import os

import pytest

from helpers import assert_user_error, read_json, run_cli

HOLDOUT = ["--split=holdout", "--holdout_first=300"]


@pytest.fixture(scope="module")
def teacher_on_holdout(lenet5_teacher, tmp_path_factory):
    """The teacher's accuracy on the first 300 training images, by --procedure=evaluate."""
    out = str(tmp_path_factory.mktemp("holdout") / "teacher")
    run_cli("--procedure=evaluate", f"--run_dir={out}", f"--model_path={lenet5_teacher}",
            *HOLDOUT, check=True)
    return read_json(os.path.join(out, "result.json"))["accuracy"]


def _scored_on_the_holdout(run, teacher_accuracy):
    result = read_json(os.path.join(run, "result.json"))
    assert result["scored_on"] == "holdout"
    assert result["num_test_examples"] == 300
    # the teacher is scored on the same images as the student: evaluate's holdout figure
    assert result["teacher_test_accuracy"] == pytest.approx(teacher_accuracy, abs=1e-9)
    return result


@pytest.mark.slow
def test_zero_shot_scores_its_student_on_the_holdout(lenet5_teacher, teacher_on_holdout,
                                                     tmp_path):
    run = str(tmp_path / "zskt")
    proc = run_cli("--procedure=zero_shot", f"--run_dir={run}", f"--teacher={lenet5_teacher}",
                   "--student=lenet5_half", "--beta=0", "--iterations=2",
                   "--n_student_steps=1", "--batch_size=8", "--z_dim=16", "--seeds=0",
                   *HOLDOUT, check=True)
    assert "holdout accuracy" in proc.stdout
    _scored_on_the_holdout(run, teacher_on_holdout)
    assert read_json(os.path.join(run, "seed_0", "result.json"))["scored_on"] == "holdout"


@pytest.mark.slow
def test_distill_scores_on_the_holdout_from_real_and_synthetic_data(
        lenet5_teacher, teacher_on_holdout, tmp_path):
    student = ["--procedure=distill", f"--teacher={lenet5_teacher}", "--student=lenet5_half",
               "--epochs=1", "--batch_size=50", "--verbose=quiet"]
    real = str(tmp_path / "real")
    run_cli(*student, f"--run_dir={real}", "--dataset=fashion_mnist",
            "--max_train_examples=200", *HOLDOUT, check=True)
    _scored_on_the_holdout(real, teacher_on_holdout)

    impressions = str(tmp_path / "di")
    run_cli("--procedure=data_impressions", f"--run_dir={impressions}",
            f"--teacher={lenet5_teacher}", "--num_samples=20", "--synthesis_steps=2",
            "--verbose=quiet", check=True)
    synthetic = str(tmp_path / "synthetic")
    run_cli(*student, f"--run_dir={synthetic}",
            f"--dataset={impressions}/impressions.npz", *HOLDOUT, check=True)
    _scored_on_the_holdout(synthetic, teacher_on_holdout)

    default = str(tmp_path / "test")  # without --split: the test set, as before
    run_cli(*student, f"--run_dir={default}", f"--dataset={impressions}/impressions.npz",
            "--max_test_examples=400", check=True)
    result = read_json(os.path.join(default, "result.json"))
    assert result["scored_on"] == "test" and result["num_test_examples"] == 400


@pytest.mark.slow
@pytest.mark.parametrize("args,fragment", [
    (["--procedure=zero_shot", "--teacher=t", "--student=s", "--split=holdout"],
     "--holdout_first"),
    (["--procedure=distill", "--split=holdout"], "--holdout_first"),
    (["--procedure=distill", "--split=train", "--eval_data=x.npz"], "--eval_data"),
])
def test_a_split_that_cannot_be_scored_is_refused_before_anything_runs(args, fragment,
                                                                        tmp_path):
    run = str(tmp_path / "r")
    assert_user_error(run_cli(*args, f"--run_dir={run}"), fragment)
    assert not os.path.exists(run)


@pytest.mark.slow
def test_a_holdout_beyond_the_training_set_is_refused(lenet5_teacher, tmp_path):
    run = str(tmp_path / "r")
    proc = run_cli("--procedure=zero_shot", f"--run_dir={run}", f"--teacher={lenet5_teacher}",
                   "--student=lenet5_half", "--beta=0", "--iterations=2", "--split=holdout",
                   "--holdout_first=60000")
    assert_user_error(proc, "--holdout_first between 1 and 59999")
    assert not os.path.exists(run)


def test_the_python_api_checks_split_as_the_command_line(monkeypatch):
    from zskd_tf import api
    from zskd_tf.errors import UserError

    monkeypatch.setattr(api, "run", lambda procedure, run_dir=None, **o: api.config(
        procedure, run_dir or "/tmp/r", **o))
    # evaluate on your own images: no split is implied (it was, and was refused)
    cfg = api.evaluate("model.keras", eval_data="mine.npz")
    assert cfg.eval_data == "mine.npz" and "split" not in cfg.present
    assert api.evaluate("model.keras", split="holdout", holdout_first=10).split == "holdout"
    with pytest.raises(UserError, match="--eval_data gives the images"):
        api.evaluate("model.keras", split="train", eval_data="mine.npz")
    with pytest.raises(UserError, match="give --holdout_first"):
        api.config("zero_shot", "/tmp/r", teacher="t", student="s", split="holdout")
