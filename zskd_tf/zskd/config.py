"""ZSKD's settings (``--procedure=data_impressions``) as one typed config: the single home of
their defaults and checks.

No TensorFlow here: ``method_flags/zskd.py`` takes the flags' defaults from
:class:`ImpressionConfig`, and ``--procedure=data_impressions`` builds one with
:meth:`ImpressionConfig.from_flags`. The defaults are those of the paper and the authors' code
(docs/methods/zskd.md); the ``impression_*`` priors are off by default (not in ZSKD).
"""
from __future__ import annotations

import dataclasses

from zskd_tf import typed_config
from zskd_tf.errors import UserError
from zskd_tf.zskd import targets as targets_lib

PAPER_TEMPERATURE = 20.0
# Transfer-set sizes of the paper: 40 % of MNIST, 80 % of Fashion-MNIST/CIFAR-10
# (docs/methods/zskd.md, "Transfer-set sizes").
PAPER_NUM_SAMPLES = {"mnist": 24000, "fashion_mnist": 48000, "cifar10": 40000}


@dataclasses.dataclass(frozen=True)
class ImpressionConfig(typed_config.FlagConfig):
    """How data impressions are made; each field is the flag of the same name.

    ``betas`` may be given as the flag's strings; they are kept as positive floats.
    ``num_samples`` None means the paper's transfer-set size for the teacher's dataset.
    """
    betas: tuple = (1.0, 0.1)
    temperature: float = PAPER_TEMPERATURE
    synthesis_steps: int = 1500
    synthesis_batch_size: int = 100
    synthesis_lr: float = 1e-3  # the authors' code
    num_samples: int | None = None
    final_layer: str | None = None  # None: found automatically
    impression_init: str = "uniform"  # the authors' code
    impression_l2: float = 0.0
    impression_l2_mix: tuple = ()  # several weights: each replaces impression_l2 for its rows
    impression_tv: float = 0.0
    impression_jitter: int = 0
    impression_flip: bool = False
    impression_bn_weight: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "betas", targets_lib.parse_betas(self.betas))
        mix = typed_config.parse_numbers("impression_l2_mix", self.impression_l2_mix,
                                         "numbers like 1e-3,1e-1")
        for weight in mix:
            typed_config.check_finite_non_negative("impression_l2_mix", weight)
        object.__setattr__(self, "impression_l2_mix", mix)
        for name in ("impression_l2", "impression_tv", "impression_bn_weight"):
            typed_config.check_finite_non_negative(name, getattr(self, name))
        typed_config.check_non_negative("impression_jitter", self.impression_jitter)
        typed_config.check_choice("impression_init", self.impression_init, targets_lib.INITS)

    @property
    def image_l2(self) -> float | tuple[float, ...]:
        """The image L2 weight of the synthesis: ``impression_l2_mix`` when given (row r of
        every batch takes its weight r mod its length), else ``impression_l2``."""
        return self.impression_l2_mix or self.impression_l2

    @property
    def priors(self) -> str:
        """The start and the image priors, as the progress line shows them: ``"normal start,
        image L2 0.001,0.1 by row"``."""
        l2 = (",".join(f"{w:g}" for w in self.impression_l2_mix) + " by row"
              if self.impression_l2_mix else f"{self.impression_l2:g}")
        parts = [f"{self.impression_init} start", f"image L2 {l2}"]
        for label, value in (("TV", self.impression_tv), ("BN prior", self.impression_bn_weight),
                             ("jitter", self.impression_jitter)):
            if value:
                parts.append(f"{label} {value:g}")
        if self.impression_flip:
            parts.append("flips")
        return ", ".join(parts)

    def num_samples_for(self, dataset: str) -> int:
        """How many impressions to make for a teacher of ``dataset``.

        Args:
            dataset: the teacher's dataset name.

        Returns:
            ``num_samples``, else the paper's size for ``dataset``; UserError when the paper
            has none.
        """
        if self.num_samples:
            return self.num_samples
        if dataset not in PAPER_NUM_SAMPLES:
            raise UserError(f"give --num_samples: the paper has no transfer-set size for "
                            f"{dataset}")
        return PAPER_NUM_SAMPLES[dataset]


DEFAULTS = ImpressionConfig()
