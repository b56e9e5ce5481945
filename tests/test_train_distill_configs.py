"""TrainConfig and DistillConfig: the flags' defaults, their checks, the one validation path the
command line and the Python API share, and run directories made before the configs existed."""
import dataclasses
import os
import shutil

import pytest
from absl import flags
from absl.testing import flagsaver

from helpers import REPO, assert_user_error, run_cli
from zskd_tf import api, cli_flags
from zskd_tf.errors import UserError
from zskd_tf.procedures import distill, registry
from zskd_tf.runtime.run_dir import FLAGS_FILE, RunDir, release_locks
from zskd_tf.trainers.distill_config import DistillConfig
from zskd_tf.trainers.train_config import TrainConfig

# Flags that several procedures share, left at None on the command line: distill fills them
# in from its config (procedures/distill.py's RECORDED_DEFAULTS, or "every shared tap", or
# "the student's last tap").
SHARED_NONE_FLAGS = {"temperature", "beta", "at_taps", "hint_taps"}
OLD_FLAGFILES = os.path.join(REPO, "tests", "data", "flags_before_typed_configs")


def _cli_config(*args):
    """What the command line hands a procedure for these flags (validated)."""
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["zskd_tf", *args])
        return cli_flags.config_from_flags()


@pytest.mark.parametrize("config_class", [TrainConfig, DistillConfig])
def test_the_flags_take_their_defaults_from_the_config(config_class):
    for field in dataclasses.fields(config_class):
        flag = flags.FLAGS[field.name]
        if field.name in SHARED_NONE_FLAGS:
            assert flag.default is None, field.name
        else:
            assert flag.default == field.default, field.name


@pytest.mark.parametrize("procedure, config_class",
                         [("train", TrainConfig), ("distill", DistillConfig)])
def test_the_registry_names_the_config_and_the_procedure_reads_every_field(procedure,
                                                                          config_class):
    entry = registry.get(procedure)
    assert entry.config is config_class
    assert {f.name for f in dataclasses.fields(config_class)} <= set(entry.flags)


def test_from_flags_takes_the_given_values_and_the_defaults_for_the_rest():
    cfg = _cli_config("--procedure=distill", "--run_dir=r", "--alpha=0.5",
                      "--lr_milestones=.5,0.75", "--at_taps=group1,group2")
    config = DistillConfig.from_flags(cfg)
    assert (config.alpha, config.lr_milestones, config.at_taps) == (
        0.5, (0.5, 0.75), ("group1", "group2"))
    assert (config.temperature, config.beta, config.epochs, config.loss) == (4.0, 0.0, None, "kd")
    assert cfg.lr_milestones == [0.5, 0.75]  # flags.cfg records numbers, as before the configs
    assert TrainConfig.from_flags(_cli_config("--procedure=train", "--run_dir=r")) == TrainConfig()


@pytest.mark.parametrize("config_class, values, message", [
    (TrainConfig, {"epochs": 0}, "--epochs must be a positive number, got 0"),
    (TrainConfig, {"batch_size": -4}, "--batch_size must be a positive number, got -4"),
    (TrainConfig, {"learning_rate": 0.0}, "--learning_rate must be > 0, got 0.0"),
    (TrainConfig, {"momentum": -0.1}, "--momentum must be >= 0, got -0.1"),
    (TrainConfig, {"weight_decay": -1e-4}, "--weight_decay must be >= 0, got -0.0001"),
    (TrainConfig, {"lr_decay": 1.5}, "--lr_decay must be in (0, 1], got 1.5"),
    (TrainConfig, {"lr_milestones": ["0.5", "x"]},
     "--lr_milestones must be fractions like 0.3,0.6,0.8, got 0.5,x"),
    (TrainConfig, {"lr_milestones": ["0.5", "2"]},
     "--lr_milestones must be fractions strictly between 0 and 1"),
    (TrainConfig, {"optimizer": "rmsprop"}, "--optimizer must be one of sgd, adam, got 'rmsprop'"),
    (TrainConfig, {"lr_schedule": "linear"},
     "--lr_schedule must be one of step, cosine, constant, got 'linear'"),
    (TrainConfig, {"augment": "sideways"}, "--augment must be one of auto, "),
    (TrainConfig, {"augment": "affine_mixup"}, "--augment=affine_mixup blends two images"),
    (TrainConfig, {"input_noise": -0.1}, "--input_noise must be a finite number >= 0, got -0.1"),
    (TrainConfig, {"adversarial_eps": float("inf")},
     "--adversarial_eps must be a finite number >= 0, got inf"),
    (TrainConfig, {"adversarial_train_steps": 0}, "--adversarial_train_steps must be >= 1, got 0"),
    (DistillConfig, {"alpha": 1.5}, "--alpha must be in [0, 1], got 1.5"),
    (DistillConfig, {"loss": "mse"}, "--loss must be one of kd, soft_ce, got 'mse'"),
    (DistillConfig, {"targets": "x"}, "--targets must be one of auto, teacher, stored, got 'x'"),
    (DistillConfig, {"temperature": 0.0}, "--temperature must be a positive number, got 0.0"),
    (DistillConfig, {"soft_ce_scale": -1.0}, "--soft_ce_scale must be a positive number"),
    (DistillConfig, {"samples_per_class": 0}, "--samples_per_class must be a positive number"),
    (DistillConfig, {"beta": -1.0}, "--beta must be >= 0, got -1.0"),
    (DistillConfig, {"anchor_weight": -1.0}, "--anchor_weight must be >= 0, got -1.0"),
    (DistillConfig, {"epochs": -3}, "--epochs must be a positive number, got -3"),
    (DistillConfig, {"disagreement_eps": -1.0}, "--disagreement_eps must be >= 0, got -1.0"),
    (DistillConfig, {"disagreement_steps": 0}, "--disagreement_steps must be a positive number"),
])
def test_each_bad_value_is_refused_naming_its_flag(config_class, values, message):
    with pytest.raises(UserError) as raised:
        config_class(**values)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("procedure, flag, value", [
    ("train", "adversarial_train_steps", "0"),
    ("train", "lr_decay", "2"),
    ("train", "lr_milestones", "0.5,1.5"),
    ("distill", "alpha", "1.5"),
    ("distill", "anchor_weight", "-1"),
])
def test_api_and_command_line_refuse_a_bad_value_with_the_same_message(procedure, flag, value,
                                                                       tmp_path):
    run = tmp_path / "run"
    with pytest.raises(UserError) as from_cli:
        _cli_config(f"--procedure={procedure}", f"--run_dir={run}", f"--{flag}={value}")
    with pytest.raises(UserError) as from_api:
        api.config(procedure, run, **{flag: value})
    assert str(from_api.value) == str(from_cli.value)
    assert f"--{flag}" in str(from_api.value)
    assert not run.exists()


def test_the_api_makes_no_temporary_directory_for_a_bad_value(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(UserError, match="--alpha must be in"):
        api.config("distill", alpha=2.0)
    assert os.listdir(tmp_path) == []
    cfg = api.config("distill", alpha=0.5)
    assert os.path.dirname(cfg.run_dir) == str(tmp_path) and os.path.isdir(cfg.run_dir)


def test_the_command_line_prints_the_configs_message_in_one_line(tmp_path):
    run = str(tmp_path / "run")
    proc = run_cli("--procedure=distill", f"--run_dir={run}", "--alpha=1.5")
    assert assert_user_error(proc) == "error: --alpha must be in [0, 1], got 1.5"
    assert not os.path.exists(run)


@pytest.mark.parametrize("views, message", [
    ("--augment=affine_mixup", "--augment=affine_mixup blends two images into one whose class"),
    ("--disagreement_eps=1", "--disagreement_eps moves images to where the student and the "
                             "teacher disagree, into ones whose class"),
])
@pytest.mark.parametrize("args", [
    ("--targets=stored", "--loss=soft_ce"),  # the stored targets are of the images unchanged
    ("--loss=kd", "--alpha=0.9"),            # a tenth of the loss reads the labels
    ("--loss=soft_ce",),                     # no --teacher: --targets=auto means stored
])
def test_views_only_the_teacher_can_label_are_refused_where_anything_else_labels_them(
        args, views, message, tmp_path):
    run = tmp_path / "run"
    cfg = _cli_config("--procedure=distill", f"--run_dir={run}", views, *args,
                      "--student=lenet5_half", "--dataset=/nowhere/synthetic.npz")
    with pytest.raises(UserError, match=message):
        distill.run(cfg)  # before anything is read or written
    assert not run.exists()


def test_the_command_line_refuses_blended_views_with_stored_targets_in_one_line(tmp_path):
    run = str(tmp_path / "run")
    proc = run_cli("--procedure=distill", f"--run_dir={run}", "--augment=affine_mixup",
                   "--loss=soft_ce", "--targets=stored", "--student=lenet5_half",
                   "--dataset=/nowhere/synthetic.npz")
    assert "--targets=teacher" in assert_user_error(proc, "--augment=affine_mixup")
    assert not os.path.exists(run)


@pytest.mark.parametrize("procedure, args", [
    ("train", ("--model=lenet5", "--epochs=2", "--lr_milestones=.5,0.75", "--augment=none",
               "--input_noise=0.1", "--learning_rate=0.01")),
    ("distill", ("--student=lenet5_half", "--alpha=0", "--epochs=1", "--lr_schedule=cosine",
                 "--max_train_examples=64", "--soft_ce_scale=2.0")),
])
def test_a_run_directory_made_before_the_configs_resumes(procedure, args, tmp_path):
    """flags.cfg files written by the code before TrainConfig/DistillConfig (same flags) are
    the same run; one flag changed is another run."""
    run = str(tmp_path / "run")
    os.makedirs(run)
    shutil.copy(os.path.join(OLD_FLAGFILES, f"{procedure}.cfg"), os.path.join(run, FLAGS_FILE))
    base = (f"--procedure={procedure}", f"--run_dir={run}", *args)
    try:
        assert RunDir(run).check(_recorded(_cli_config(*base))) is True
        with pytest.raises(UserError, match="different flags: --epochs=3"):
            RunDir(run).check(_recorded(_cli_config(*base, "--epochs=3")))
    finally:
        release_locks()


def _recorded(cfg):
    """``cfg`` as the procedure records it in flags.cfg (distill fills in some defaults)."""
    if cfg.procedure != "distill":
        return cfg
    from zskd_tf.procedures import distill
    from zskd_tf.procedures.common import with_config_defaults

    return with_config_defaults(cfg, DistillConfig.from_flags(cfg), distill.RECORDED_DEFAULTS)
