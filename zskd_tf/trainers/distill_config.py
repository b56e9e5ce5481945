"""``--procedure=distill``'s settings as one typed config: the single home of their defaults
and checks.

No TensorFlow here: ``cli_flags.py`` takes the flags' defaults from :class:`DistillConfig`, the
command line and the Python API check a ``distill`` command by building one
(``procedures/registry.py`` names it), and ``procedures/distill.py`` hands it, its taps
resolved, to :class:`zskd_tf.trainers.distiller.Distiller`. The defaults are FewShot/Moonshine
KD (docs/methods/kd_at_moonshine.md).
"""
from __future__ import annotations

import dataclasses

from zskd_tf import typed_config
from zskd_tf.errors import UserError
from zskd_tf.trainers.train_config import RecipeOverrides

LOSSES = ("kd", "soft_ce")
TARGETS = ("auto", "teacher", "stored")  # auto: the teacher when one is given
# The fields that say what the student minimises: result.json's "distill" entry.
OBJECTIVE_FIELDS = ("loss", "alpha", "temperature", "soft_ce_scale", "beta", "at_taps",
                    "hint_weight", "hint_taps", "anchor_weight", "freeze_bn",
                    "disagreement_eps", "disagreement_steps")


@dataclasses.dataclass(frozen=True)
class DistillConfig(RecipeOverrides):
    """How a student is distilled; each field is the flag of the same name.

    loss: "kd" = (1-alpha)*CE + 2*alpha*T^2*KL_elementmean (docs/methods/kd_at_moonshine.md,
          "The KD loss");
          "soft_ce" = soft_ce_scale * CE(p, softmax(s/T)) with p the teacher's softmax(t/T),
          or the stored soft targets of a synthetic set (Lopes et al.: scale 1, T 8; ZSKD:
          T^2, T 20).
    beta: attention-transfer weight over ``at_taps`` (sum over taps:
          docs/methods/kd_at_moonshine.md, "Attention transfer"); empty ``at_taps`` with
          ``beta > 0`` means every spatial tap teacher and student share (the procedure
          resolves them).
    hint_weight: weight of the channel hints over ``hint_taps`` (a student that is a narrower
          copy of the teacher matches, at each tap, the teacher's features of the channels
          it stands for: docs/methods/extensions.md, "Channel hints"); empty ``hint_taps``
          with ``hint_weight > 0`` means the student's last tap (the procedure resolves it).
    anchor_weight: L1 pull to the initial weights (ZSKT fine-tuning: docs/methods/zskt.md,
          "Fine-tuning with M real images per class").
    freeze_bn: run the student in inference mode (BN uses and keeps its moving statistics).
    disagreement_eps: L2 radius (in the model's input space) by which half of every batch is
          moved, in ``disagreement_steps`` steps, towards where student and teacher disagree
          (docs/methods/extensions.md, "Disagreement views"); 0: off.
    The optimisation fields (:class:`RecipeOverrides`) default to the student's recipe.
    """
    loss: str = "kd"
    alpha: float = 0.9
    temperature: float = 4.0
    soft_ce_scale: float = 1.0
    targets: str = "auto"
    beta: float = 0.0
    at_taps: tuple = ()
    hint_weight: float = 0.0
    hint_taps: tuple = ()
    anchor_weight: float = 0.0
    freeze_bn: bool = False
    disagreement_eps: float = 0.0
    disagreement_steps: int = 3
    samples_per_class: int | None = None  # few-shot: M seeded real images per class
    allow_foreign_synthetic: bool = False

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "at_taps", tuple(self.at_taps))
        object.__setattr__(self, "hint_taps", tuple(self.hint_taps))
        typed_config.check_choice("loss", self.loss, LOSSES)
        typed_config.check_choice("targets", self.targets, TARGETS)
        if not 0 <= self.alpha <= 1:
            raise UserError(f"--alpha must be in [0, 1], got {self.alpha}")
        for name in ("temperature", "soft_ce_scale", "samples_per_class", "disagreement_steps"):
            typed_config.check_positive(name, getattr(self, name))
        for name in ("beta", "hint_weight", "anchor_weight", "disagreement_eps"):
            typed_config.check_non_negative(name, getattr(self, name))

    def objective(self) -> dict:
        """What the student minimises, as result.json records it.

        Returns:
            {field: value} of ``OBJECTIVE_FIELDS``, the taps as lists.
        """
        settings = {name: getattr(self, name) for name in OBJECTIVE_FIELDS}
        settings["at_taps"] = list(self.at_taps)
        settings["hint_taps"] = list(self.hint_taps)
        return settings


DEFAULTS = DistillConfig()
