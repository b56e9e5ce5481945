"""Every flagfile under flags/ parses, passes validation and names real models/datasets."""
import glob
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from helpers import REPO
from zskd_tf import cli_flags
from zskd_tf.data import datasets
from zskd_tf.models import registry, wrn

FLAGFILES = sorted(glob.glob(os.path.join(REPO, "flags", "**", "*.cfg"), recursive=True))


def test_there_are_flagfiles_for_every_paper():
    names = {os.path.relpath(p, os.path.join(REPO, "flags")).split(os.sep)[0] for p in FLAGFILES}
    assert {"teachers", "moonshine", "fewshot", "quickstart.cfg"} <= names


@pytest.mark.parametrize("path", FLAGFILES, ids=lambda p: os.path.relpath(p, REPO))
def test_flagfile_is_valid(path):
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["zskd_tf", f"--flagfile={path}"])
        cfg = cli_flags.config_from_flags()
    assert cfg.run_dir, "every flagfile names its run directory"
    for name in (cfg.model, cfg.student):
        if name:
            registry.model_family(name)  # raises UserError for an unknown architecture
    wrn.parse_conv(cfg.conv)
    if not cfg.dataset.endswith(".npz"):
        datasets.check_dataset_name(cfg.dataset)
