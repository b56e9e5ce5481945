"""Every ``--procedure`` in one table: its module, the flags it needs and the flags it reads.

Plain data, no TensorFlow: the command line takes its ``--procedure`` choices, its
required-flag checks and each procedure's ``--help`` from here, and :func:`zskd_tf.procedures.run`
imports the module a procedure names. Adding a procedure means adding one :class:`Procedure`
to ``PROCEDURES`` (and its module under ``zskd_tf/procedures/``).

A procedure's ``reads`` are the flags its code looks at, beyond the ``COMMON`` ones that every
procedure reads; ``tests/test_cli_help.py`` checks them against the code. Its ``config`` is
the typed config (a :class:`zskd_tf.typed_config.FlagConfig`, no TensorFlow) that owns the
defaults and the checks of its own flags; ``cli_flags.validate`` builds it from the flags of
every command, from the command line and from the Python API alike.
"""
from __future__ import annotations

import dataclasses

from zskd_tf.lopes.config import ReconstructionConfig, StatsConfig
from zskd_tf.trainers.distill_config import DistillConfig
from zskd_tf.trainers.train_config import TrainConfig
from zskd_tf.zskd.config import ImpressionConfig
from zskd_tf.zskt.config import ZeroShotConfig

# Read by every procedure: where and how the run executes (zskd_tf/procedures/__init__.py).
COMMON = ("procedure", "run_dir", "overwrite", "seed", "strategy", "logical_cpus",
          "deterministic", "cluster_wait_secs")

# Groups of flags several procedures read through the same helper.
NAMED_DATASET = ("dataset", "data_dir")
FOREIGN_TEACHER = ("num_classes", "class_names", "input_range")  # teacher_task.description_of
RECIPE = ("epochs", "batch_size", "learning_rate", "optimizer", "momentum", "weight_decay",
          "lr_milestones", "lr_decay", "lr_schedule",
          "ema_momentum")  # train_config.RecipeOverrides
TRAINING_LOOP = ("checkpoint_every_secs", "eval_every_epochs", "verbose")  # common.train_and_export
ARCHITECTURE = ("conv", "block")  # WRN variants of the model built
SYNTHESIS = ("num_samples", "synthesis_steps", "synthesis_batch_size", "synthesis_lr",
             "fast_input_gradient", "bfloat16_input_gradient", "temperature", "verbose")
ZSKD = ("teacher", "betas", "final_layer", "impression_init", "impression_l2",
        "impression_l2_mix", "impression_tv",
        "impression_jitter", "impression_flip", "impression_bn_weight", *NAMED_DATASET,
        *FOREIGN_TEACHER, *SYNTHESIS)
EXPORT = ("tflite", "quantize_io", "calibration", "calibration_samples", "generator_run",
          *NAMED_DATASET, *FOREIGN_TEACHER)


@dataclasses.dataclass(frozen=True)
class Procedure:
    """One ``--procedure``.

    Attributes:
        name: the value of ``--procedure``.
        module: the module whose ``run(cfg) -> dict`` runs it.
        summary: one line for ``--help``.
        needs: flags it cannot run without (``--run_dir`` included).
        reads: flags it reads besides ``COMMON``.
        sharded: whether ``--shard=i/N`` splits it (then ``--procedure=merge``).
        config: its typed config class, whose ``from_flags`` checks a command's flags before
            anything runs (None: the generic checks of ``cli_flags.validate`` only).
    """
    name: str
    module: str
    summary: str
    needs: tuple[str, ...]
    reads: tuple[str, ...]
    sharded: bool = False
    config: type | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """Every flag this procedure reads, ``COMMON`` first, each once."""
        return tuple(dict.fromkeys((*COMMON, *self.needs, *self.reads)))


def _procedure(name: str, summary: str, needs: tuple, reads: tuple, **kw) -> Procedure:
    return Procedure(name, f"zskd_tf.procedures.{name}", summary, ("run_dir", *needs),
                     tuple(reads), **kw)


PROCEDURES = (
    _procedure("train", "trains a classifier (the teacher, or a student from real data).", (),
               ("model", *ARCHITECTURE, *NAMED_DATASET, "max_train_examples",
                "max_test_examples", "holdout_first", "split", "augment", "input_noise",
                "adversarial_eps", "adversarial_train_steps", *RECIPE, *TRAINING_LOOP),
               config=TrainConfig),
    _procedure("evaluate", "scores a model on a dataset's split or on --eval_data.",
               ("model_path",),
               (*NAMED_DATASET, *FOREIGN_TEACHER, "eval_data", "split", "holdout_first",
                "max_test_examples")),
    _procedure("export", "writes a SavedModel, and TFLite models with --tflite / --quantize.",
               ("model_path",), ("quantize", *EXPORT)),
    _procedure("distill", "trains a student from a teacher (KD, attention transfer, soft "
               "targets).", (),
               ("teacher", "student", *ARCHITECTURE, *NAMED_DATASET, *FOREIGN_TEACHER,
                "eval_data", "max_train_examples", "max_test_examples", "holdout_first",
                "split", "augment", "loss", "alpha", "temperature", "soft_ce_scale", "targets",
                "beta", "at_taps", "hint_weight", "hint_taps", "samples_per_class", "init_from",
                "init_from_teacher", "anchor_weight", "allow_foreign_synthetic", "freeze_bn",
                "disagreement_eps", "disagreement_steps", *RECIPE, *TRAINING_LOOP),
               config=DistillConfig),
    _procedure("data_impressions", "synthesises a transfer set from a teacher (ZSKD).",
               ("teacher",), (*ZSKD, "shard"), sharded=True, config=ImpressionConfig),
    _procedure("compute_stats", "records a teacher's activation statistics (Lopes et al., "
               "step 1).", ("teacher",),
               (*NAMED_DATASET, "max_train_examples", "holdout_first", "temperature",
                "spectral_keep", "spectral_records"), config=StatsConfig),
    _procedure("optimize_dataset", "reconstructs a transfer set from the statistics (Lopes et "
               "al., step 2).", ("teacher", "stats"),
               ("dataset", "objective", "spectral_keep", "spectral_records", "shard",
                *SYNTHESIS), sharded=True,
               config=ReconstructionConfig),
    _procedure("zero_shot", "trains a student against an adversarial generator (ZSKT).",
               ("teacher", "student"),
               (*ARCHITECTURE, *NAMED_DATASET, *FOREIGN_TEACHER, "eval_data",
                "max_test_examples", "split", "holdout_first", "iterations", "batch_size",
                "n_generator_steps", "n_student_steps", "z_dim", "student_lr", "generator_lr",
                "variant", "matching_loss", "generator_range", "generator_width", "mixed_bfloat16",
                "freeze_generator_at", "generator_bn_weight", "generator_balance_weight",
                "generator_confidence_weight", "ema_momentum", "augment",
                "beta", "at_taps", "temperature", "init_from", "init_from_teacher", "seeds",
                "checkpoint_every_secs", "verbose"), config=ZeroShotConfig),
    _procedure("transition_curves", "attacks a student and scores how the teacher follows (ZSKT's "
               "transition curves).", ("teacher", "student_run"),
               (*NAMED_DATASET, "max_test_examples", "num_images", "adversarial_steps",
                "step_size", "verbose")),
    _procedure("pipeline", "runs teacher, every data-free method, exports and a report.", (),
               ("quick", "full", "preset", "teacher", "student", "student_init", "methods",
                "stats",
                "eval_data", *NAMED_DATASET, *FOREIGN_TEACHER, *ARCHITECTURE,
                "checkpoint_every_secs")),
    _procedure("quantize", "full-integer TFLite of a classifier, calibrated on its own "
               "data impressions.", ("teacher",), (*EXPORT, *ZSKD)),
    _procedure("merge", "joins the shards of a --shard run into one run directory.",
               ("inputs",), ()),
)
BY_NAME = {p.name: p for p in PROCEDURES}
NAMES = tuple(BY_NAME)
SHARDED = tuple(p.name for p in PROCEDURES if p.sharded)


def get(name: str) -> Procedure:
    """The procedure called ``name``.

    Args:
        name: a value of ``--procedure``.

    Returns:
        Its :class:`Procedure`; ``KeyError`` for an unknown name.
    """
    return BY_NAME[name]
