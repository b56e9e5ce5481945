"""ZSKT's settings as one typed config: the single home of their defaults and checks.

No TensorFlow here: ``method_flags/zskt.py`` takes the flags' defaults from
:class:`ZeroShotConfig`, ``--procedure=zero_shot`` builds one with
:meth:`ZeroShotConfig.from_flags`, and :class:`zskd_tf.zskt.trainer.ZeroShotTrainer` trains
with it. The defaults are the paper's (docs/methods/zskt.md, "Defaults of a paper run") unless
a field says otherwise.
"""
from __future__ import annotations

import dataclasses

from zskd_tf import constants, typed_config
from zskd_tf.errors import UserError

VARIANTS = constants.ZSKT_VARIANTS
MATCHING_LOSSES = constants.ZSKT_MATCHING_LOSSES
GENERATOR_RANGES = ("free", "teacher")
WRN_TAPS = ("group1", "group2", "group3")
PAPER_ITERATIONS = 80_000
PAPER_ITERATIONS_BY_DATASET = {"svhn": 50_000}


def seed_dir_name(seed: int) -> str:
    """The sub-directory of a ``zero_shot`` run holding the student of one ``--seeds`` seed."""
    return f"seed_{seed}"


def paper_iterations(dataset: str | None) -> int:
    """The paper's number of outer iterations N for a dataset.

    Args:
        dataset: a dataset name, or None.

    Returns:
        50,000 on SVHN, 80,000 otherwise.
    """
    return PAPER_ITERATIONS_BY_DATASET.get(dataset, PAPER_ITERATIONS)


@dataclasses.dataclass(frozen=True)
class ZeroShotConfig(typed_config.FlagConfig):
    """One ZSKT run's hyper-parameters; each field is the flag of the same name.

    The trainer reads the fields down to ``generator_confidence_weight``, and
    ``ema_momentum`` and ``augment``; the procedure also reads the ones between (the batch of
    noise, the generator's shape, the compute dtype).
    ``clip_norm`` has no flag.
    """
    iterations: int = PAPER_ITERATIONS
    n_generator_steps: int = 1
    n_student_steps: int = 10
    student_lr: float = 2e-3
    generator_lr: float = 1e-3
    beta: float = 250.0
    at_taps: tuple = WRN_TAPS
    temperature: float = 1.0
    variant: str = "original"
    clip_norm: float = 5.0
    matching_loss: str = "kl"
    freeze_generator_at: float = 1.0  # not in the paper: see generator_stop_iteration
    generator_bn_weight: float = 0.0  # not in the paper: see ZeroShotTrainer.generator_loss
    generator_balance_weight: float = 0.0  # not in the paper: likewise
    generator_confidence_weight: float = 0.0  # not in the paper: likewise
    batch_size: int = 128
    z_dim: int = 100
    generator_range: str = "free"  # not in the paper: "teacher" squashes into its input range
    generator_width: int = 128
    mixed_bfloat16: bool = False  # not in the paper
    ema_momentum: float = 0.0  # not in the paper: 0, the final student; else its weight average
    augment: str = "none"  # not in the paper: see ZeroShotTrainer.student_views

    def __post_init__(self):
        for name in ("generator_bn_weight", "generator_balance_weight",
                     "generator_confidence_weight"):
            typed_config.check_non_negative(name, getattr(self, name))
        typed_config.check_momentum("ema_momentum", self.ema_momentum)
        if not 0.0 < self.freeze_generator_at <= 1.0:
            raise UserError("--freeze_generator_at must be a fraction of --iterations in "
                            f"(0, 1], got {self.freeze_generator_at}")
        for name, choices in (("variant", VARIANTS), ("matching_loss", MATCHING_LOSSES),
                              ("generator_range", GENERATOR_RANGES),
                              ("augment", constants.AUGMENTATIONS)):
            typed_config.check_choice(name, getattr(self, name), choices)

    @classmethod
    def from_flags(cls, values) -> ZeroShotConfig:
        """The config a command line asks for, checked.

        Args:
            values: the flags' values as attributes (the command line's or the Python API's
                config); a flag left at None takes the field's default, ``iterations`` the
                paper's for ``values.dataset``, ``at_taps`` the WRN group outputs.

        Returns:
            The :class:`ZeroShotConfig`; UserError naming the flag for a value out of range.
        """
        given = typed_config.fields_given(cls, values)
        if given.get("augment") == "auto":  # --augment's default: the paper's choice, none
            del given["augment"]
        given.setdefault("iterations", paper_iterations(getattr(values, "dataset", None)))
        if "at_taps" in given:
            given["at_taps"] = tuple(given["at_taps"]) or WRN_TAPS
        return cls(**given)

    @property
    def generator_stop_iteration(self) -> int | None:
        """The outer iteration from which the generator's learning rate is 0 (the generator
        then stays as it is while the student keeps learning from it), or None: the paper
        trains both to the end."""
        if self.freeze_generator_at >= 1.0:
            return None
        return max(1, round(self.freeze_generator_at * self.iterations))

    @property
    def noise_draws(self) -> int:
        """z batches one iteration uses: one, or one more per student step (modified)."""
        return 1 + (self.n_student_steps if self.variant == "modified" else 0)


DEFAULTS = ZeroShotConfig()
