"""``--procedure=train``'s settings as one typed config: the single home of their defaults and
checks.

No TensorFlow here: ``cli_flags.py`` takes the flags' defaults from :class:`TrainConfig`, the
command line and the Python API check a ``train`` command by building one
(``procedures/registry.py`` names it), and ``procedures/train.py`` trains with it.

The optimisation fields (:class:`RecipeOverrides`, shared with ``distill``'s config) default
to None: the architecture's recipe (``trainers/recipes.py``) then decides.
"""
from __future__ import annotations

import dataclasses

from zskd_tf import typed_config
from zskd_tf.constants import AUGMENTATIONS, MIXING_AUGMENTATIONS
from zskd_tf.errors import UserError

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("step", "cosine", "constant")
AUGMENT_CHOICES = ("auto", *AUGMENTATIONS)  # auto: the papers' choice for dataset and model


def parse_lr_milestones(values) -> tuple[float, ...]:
    """``--lr_milestones`` as numbers, checked.

    Args:
        values: the flag's strings (or numbers), e.g. ``["0.3", "0.6", "0.8"]``.

    Returns:
        The fractions as floats; UserError unless each is strictly between 0 and 1.
    """
    try:
        milestones = tuple(float(v) for v in values)
    except ValueError:
        raise UserError(f"--lr_milestones must be fractions like 0.3,0.6,0.8, "
                        f"got {','.join(str(v) for v in values)}") from None
    if any(not 0 < v < 1 for v in milestones):
        raise UserError("--lr_milestones must be fractions strictly between 0 and 1")
    return milestones


@dataclasses.dataclass(frozen=True)
class RecipeOverrides(typed_config.FlagConfig):
    """The optimisation flags of ``train`` and ``distill``; None: the model's recipe's value.

    ``lr_milestones`` may be given as the flag's strings; they are kept as a tuple of floats.
    """
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None  # coupled L2, added to the gradients
    lr_milestones: tuple | None = None  # fractions of the run (the "step" schedule)
    lr_decay: float | None = None  # learning-rate factor at each milestone
    lr_schedule: str | None = None
    augment: str = "auto"
    ema_momentum: float = 0.0  # 0: off; else the weights' moving average is the model kept

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            typed_config.check_positive(name, getattr(self, name))
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise UserError(f"--learning_rate must be > 0, got {self.learning_rate}")
        for name in ("momentum", "weight_decay"):
            typed_config.check_non_negative(name, getattr(self, name))
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise UserError(f"--lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.lr_milestones is not None:
            object.__setattr__(self, "lr_milestones", parse_lr_milestones(self.lr_milestones))
        for name, choices in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) is not None:
                typed_config.check_choice(name, getattr(self, name), choices)
        typed_config.check_choice("augment", self.augment, AUGMENT_CHOICES)
        typed_config.check_momentum("ema_momentum", self.ema_momentum)


@dataclasses.dataclass(frozen=True)
class TrainConfig(RecipeOverrides):
    """How ``train`` trains a classifier; each field is the flag of the same name."""
    model: str = "lenet5"
    input_noise: float = 0.0  # std of N(0, s^2) added to each training image (not in the papers)
    adversarial_eps: float = 0.0  # L2 PGD radius per image; 0: no adversarial training
    adversarial_train_steps: int = 3  # PGD steps of that attack

    def __post_init__(self):
        super().__post_init__()
        for name in ("input_noise", "adversarial_eps"):
            typed_config.check_finite_non_negative(name, getattr(self, name))
        if self.adversarial_train_steps < 1:
            raise UserError(
                f"--adversarial_train_steps must be >= 1, got {self.adversarial_train_steps}")
        if self.augment in MIXING_AUGMENTATIONS:
            raise UserError(f"--augment={self.augment} blends two images into one whose class "
                            "no label gives; it is for students a teacher scores online "
                            "(distill --targets=teacher, zero_shot)")


DEFAULTS = TrainConfig()
