"""Lopes et al.'s settings as typed configs: the single home of their defaults and checks.

:class:`StatsConfig` is ``--procedure=compute_stats``'s, :class:`ReconstructionConfig`
``--procedure=optimize_dataset``'s. No TensorFlow here: ``method_flags/lopes.py`` takes the
flags' defaults from them and each procedure builds its config with ``from_flags``. The
defaults are the paper-era code's (docs/methods/lopes.md).
"""
from __future__ import annotations

import dataclasses
import math

from zskd_tf import typed_config
from zskd_tf.errors import UserError

OBJECTIVES = ("top_layer", "all_layers", "spectral_all_layers", "spectral_layer_pairs")
SPECTRAL_RECORDS = ("none", "examples")
BATCHES_PER_CLASS = 100  # optimize_dataset's default --num_samples: this many batches a class


def check_spectral_keep(value: float) -> None:
    """UserError unless ``--spectral_keep`` is a fraction in (0, 1].

    Args:
        value: the flag's value.
    """
    if not 0 < value <= 1:
        raise UserError(f"--spectral_keep must be in (0, 1], got {value}")


@dataclasses.dataclass(frozen=True)
class StatsConfig(typed_config.FlagConfig):
    """What ``compute_stats`` records; each field is the flag of the same name."""
    temperature: float = 8.0  # the logits are recorded divided by it
    spectral_keep: float = 0.1  # fraction of spectral coefficients the spectral objectives keep
    # "examples": also every example's own kept coefficients, which the spectral objectives
    # then rebuild their targets from (docs/methods/lopes.md, "Spectral objectives")
    spectral_records: str = "none"

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UserError(f"--temperature must be a positive number, got {self.temperature}")
        check_spectral_keep(self.spectral_keep)
        typed_config.check_choice("spectral_records", self.spectral_records, SPECTRAL_RECORDS)


@dataclasses.dataclass(frozen=True)
class ReconstructionConfig(typed_config.FlagConfig):
    """How ``optimize_dataset`` reconstructs images; each field is the flag of the same name.

    The temperature and spectral keep are not here: they come from the statistics.
    """
    objective: str = "top_layer"
    synthesis_steps: int = 1000
    synthesis_batch_size: int = 64
    synthesis_lr: float = 0.07
    num_samples: int | None = None  # None: BATCHES_PER_CLASS batches per class

    def __post_init__(self):
        typed_config.check_choice("objective", self.objective, OBJECTIVES)

    def num_samples_for(self, num_classes: int) -> int:
        """How many images to reconstruct for a teacher of ``num_classes`` classes.

        Args:
            num_classes: the class count of the statistics.

        Returns:
            ``num_samples``, else ``BATCHES_PER_CLASS`` batches per class.
        """
        return self.num_samples or BATCHES_PER_CLASS * num_classes * self.synthesis_batch_size


STATS_DEFAULTS = StatsConfig()
RECONSTRUCTION_DEFAULTS = ReconstructionConfig()
