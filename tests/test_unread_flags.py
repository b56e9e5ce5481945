"""A flag typed on the command line that the procedure does not read is named in a warning.

Flag files are left alone (every run directory's flags.cfg holds every flag), the Python API
warns with ``UserWarning``, and the pipeline hands each step only flags that step reads.
"""
import itertools
import types
import warnings

import pytest

from helpers import run_cli
from zskd_tf import api, cli_flags, cli_help
from zskd_tf.pipeline import any_teacher
from zskd_tf.pipeline import steps as steps_lib
from zskd_tf.procedures import pipeline as pipeline_procedure
from zskd_tf.procedures import registry


def test_flags_typed_are_those_on_the_command_line_only():
    argv = ["main", "--procedure=train", "--flagfile=f.cfg", "--noimpression_flip", "--seed", "3",
            "-epochs=2", "positional", "--", "--hint_weight=1"]
    assert cli_help.flags_typed(argv) == {"procedure", "impression_flip", "seed", "epochs"}


def test_unread_names_what_the_procedure_does_not_read():
    assert cli_flags.unread("train", {"epochs", "seed", "disagreement_eps", "verbosity"}) == [
        "disagreement_eps"]  # verbosity is absl's, not ours
    assert cli_flags.unread("distill", {"disagreement_eps", "hint_weight"}) == []
    assert "verbose" not in registry.get("evaluate").flags
    assert cli_flags.unread("evaluate", {"verbose"}) == []  # prints only: taken everywhere


def test_the_command_line_warns_of_a_typed_flag_and_not_of_a_flag_file(tmp_path):
    flagfile = tmp_path / "shared.cfg"
    flagfile.write_text("--impression_l2=0.1\n", encoding="utf-8")
    common = ("--procedure=evaluate", f"--model_path={tmp_path}/missing", f"--run_dir={tmp_path}/r")
    typed = run_cli(*common, "--disagreement_eps=1", "--noimpression_flip")
    assert typed.returncode == 2  # the missing model: the warning comes first, then the error
    assert ("warning: --procedure=evaluate does not read --disagreement_eps, --impression_flip, "
            "so they are ignored") in typed.stderr, typed.stderr
    shared = run_cli(*common, f"--flagfile={flagfile}")
    assert shared.returncode == 2 and "does not read" not in shared.stderr, shared.stderr


def test_the_python_api_warns_from_the_callers_line(tmp_path):
    with pytest.warns(UserWarning, match="procedure 'train' does not read impression_l2, so it "
                                         "is ignored") as caught:
        api.config("train", tmp_path / "r", model="lenet5", impression_l2=0.1)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.config("train", tmp_path / "r2", model="lenet5", epochs=1)


def _pipeline_cfg():
    """A pipeline's flags with every PASSED_ON flag given."""
    values = {"data_dir": "/d", "seed": 1, "deterministic": True, "strategy": "auto",
              "logical_cpus": 2, "checkpoint_every_secs": 60}
    assert set(values) == set(pipeline_procedure.PASSED_ON)
    return types.SimpleNamespace(**values, present=set(values))


def _assert_every_step_reads_its_flags(plan):
    cfg = _pipeline_cfg()
    for step in plan:
        command = pipeline_procedure._command(step, "/root", cfg)
        procedure = next(a.split("=")[1] for a in command if a.startswith("--procedure="))
        assert procedure in registry.NAMES
        assert cli_flags.unread(procedure, cli_help.flags_typed(command[2:])) == [], step.name


@pytest.mark.parametrize("preset", sorted(steps_lib.PRESETS))
def test_every_step_of_the_pipeline_reads_the_flags_it_is_given(preset):
    for teacher, init, epochs in itertools.product((None, "/t"), ("teacher", "random"), (5, 20)):
        _assert_every_step_reads_its_flags(steps_lib.plan(
            steps_lib.PRESETS[preset], "/root", teacher, seed=1, student_init=init,
            teacher_epochs=epochs))


@pytest.mark.parametrize("preset", sorted(any_teacher.ANY_PRESETS))
def test_every_step_of_the_any_teacher_pipeline_reads_the_flags_it_is_given(preset):
    teacher = any_teacher.Teacher("/t", "custom", ("a", "b"), (28, 28, 1), True, True, None,
                                  zoo_model=None, task_flags=("--num_classes=2",))
    for fine_tune, evaluation in itertools.product((False, True), (None, "/e.npz")):
        _assert_every_step_reads_its_flags(any_teacher.plan(
            any_teacher.ANY_PRESETS[preset], "/root", teacher, "small_cnn", any_teacher.METHODS,
            eval_data=evaluation, stats="/s.npz", at_taps=(), seed=1, fine_tune=fine_tune,
            hints=fine_tune))
