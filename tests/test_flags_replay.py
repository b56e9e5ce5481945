"""A run's flags.cfg, replayed as a --flagfile, is the command that made the run."""
import glob
import os
import re

import pytest

from helpers import REPO, parsed_flags
from zskd_tf import cli_flags
from zskd_tf.errors import UserError
from zskd_tf.runtime import run_dir
from zskd_tf.runtime.run_dir import RunDir

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "flags", "**", "*.cfg"), recursive=True))


def _recorded(cfg, tmp_path) -> str:
    """The flags.cfg a run of ``cfg`` writes, as a file."""
    path = tmp_path / "flags.cfg"
    path.write_text(run_dir.flagfile_text(run_dir.flag_lines(cfg)))
    return str(path)


@pytest.mark.parametrize("path", FLAGFILES, ids=lambda p: os.path.relpath(p, REPO))
def test_the_flags_cfg_of_every_flagfile_replays_to_the_same_command(path, tmp_path):
    cfg = parsed_flags(f"--flagfile={path}")
    again = parsed_flags(f"--flagfile={_recorded(cfg, tmp_path)}")  # validated: not refused
    names = cfg.flag_schema.names
    assert {n: getattr(again, n) for n in names} == {n: getattr(cfg, n) for n in names}
    assert again.present & cli_flags.GIVEN_ONLY_FLAGS == cfg.present & cli_flags.GIVEN_ONLY_FLAGS


@pytest.mark.parametrize("extra", [["--quantize_io=int8"], ["--split=test"]])
def test_a_flag_at_its_default_is_not_refused(extra):
    """What flags.cfg records for every run: a flag tied to another (--quantize_io to
    --quantize=int8, --split to a named dataset) is refused only for a value it cannot take."""
    parsed_flags("--procedure=distill", "--run_dir=r", "--eval_data=x.npz", *extra)


@pytest.mark.parametrize("extra,fragment", [(["--quantize_io=float"], "--quantize_io"),
                                            (["--split=train"], "--eval_data")])
def test_a_flag_that_contradicts_another_is_refused(extra, fragment):
    with pytest.raises(UserError, match=fragment):
        parsed_flags("--procedure=distill", "--run_dir=r", "--eval_data=x.npz", *extra)


def test_dataset_is_recorded_only_when_given(tmp_path):
    """``evaluate`` without --dataset scores a model on its own dataset; its flags.cfg must not
    turn that into --dataset=fashion_mnist (the flag's default)."""
    plain = parsed_flags("--procedure=evaluate", "--run_dir=r", "--model_path=m")
    given = parsed_flags("--procedure=evaluate", "--run_dir=r", "--model_path=m",
                         "--dataset=fashion_mnist")
    assert "dataset" not in run_dir.flag_lines(plain)
    assert run_dir.flag_lines(given)["dataset"] == "--dataset=fashion_mnist"
    replayed = parsed_flags(f"--flagfile={_recorded(plain, tmp_path)}")
    assert "dataset" not in replayed.present


@pytest.mark.parametrize("dataset_line", [True, False])
def test_a_run_resumes_whether_or_not_its_flags_cfg_names_the_default_dataset(dataset_line,
                                                                             tmp_path):
    """flags.cfg of before this change always held --dataset; the same command (without
    --dataset) still resumes it, and one that gives another dataset is refused."""
    path = str(tmp_path / "run")
    cfg = parsed_flags("--procedure=evaluate", f"--run_dir={path}", "--model_path=m")
    lines = run_dir.flag_lines(cfg)
    if dataset_line:
        lines["dataset"] = "--dataset=fashion_mnist"
    os.makedirs(path)
    with open(os.path.join(path, run_dir.FLAGS_FILE), "w") as f:
        f.write(run_dir.flagfile_text(lines))
    try:
        assert RunDir(path).check(cfg) is True  # the same run (unfinished: resumed)
        other = parsed_flags("--procedure=evaluate", f"--run_dir={path}", "--model_path=m",
                             "--dataset=mnist")
        with pytest.raises(UserError, match="--dataset=mnist"):
            RunDir(path).check(other)
    finally:
        run_dir.release_locks()


def test_every_flag_read_for_being_given_is_recorded_only_when_given():
    """A procedure that asks whether a flag was given (``"NAME" in cfg.present``) must find it
    in GIVEN_ONLY_FLAGS, or a replayed flags.cfg would give it. Exempt: flags without a default
    that no procedure fills in before flags.cfg is written (``with_defaults``), which flags.cfg
    holds only when they were set."""
    asked, filled = set(), set()
    for path in glob.glob(os.path.join(REPO, "zskd_tf", "**", "*.py"), recursive=True):
        with open(path) as f:
            text = f.read()
        asked |= set(re.findall(r"""["'](\w+)["']\s+(?:not\s+)?in\s+cfg\.present""", text))
        for names in re.findall(r"RECORDED_DEFAULTS = \(([^)]*)\)", text):
            filled |= set(re.findall(r"\w+", names))
        for call in re.findall(r"with_defaults\(cfg,([^)]*)\)", text):
            filled |= set(re.findall(r"(\w+)=", call))
    assert {"dataset", "student_init", "impression_bn_weight", "epochs"} <= asked
    assert {"temperature", "synthesis_steps", "num_samples", "iterations"} <= filled
    defaults = cli_flags.flag_schema().defaults
    recorded_anyway = {n for n in asked if defaults[n] is not None or n in filled}
    assert recorded_anyway <= cli_flags.GIVEN_ONLY_FLAGS
