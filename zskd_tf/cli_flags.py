"""Every command-line flag of ``python -m zskd_tf.main``, and their conversion to a config.

Only this module and ``main.py`` touch absl flags; procedures receive a plain ``Config``.
The defaults of a procedure's own flags are the fields of its typed config (named in
``procedures/registry.py``), which also checks their values. Flags whose default is ``None``
fall back to the recipe of the chosen model (see ``zskd_tf/trainers/recipes.py``) or to the
procedure's default, so a user only sets what they want to change.
"""
from __future__ import annotations

import math
import types

from absl import flags

from zskd_tf import typed_config
from zskd_tf.constants import STUDENT_INITS
from zskd_tf.errors import UserError
from zskd_tf.lopes import config as lopes_config
from zskd_tf.method_flags import lopes, synthesis, zskd, zskt  # noqa: F401  (define flags)
from zskd_tf.procedures import registry
from zskd_tf.runtime.batch_store import parse_shard
from zskd_tf.runtime.run_dir import FlagSchema
from zskd_tf.trainers import distill_config, train_config
from zskd_tf.zskd import config as zskd_config
from zskd_tf.zskt import config as zero_shot_config

PROCEDURE_NAMES = registry.NAMES
_FLAG_MODULES = (__name__, synthesis.__name__, zskd.__name__, lopes.__name__, zskt.__name__)
for _module in (synthesis, zskd, lopes, zskt):
    flags.adopt_module_key_flags(_module)  # key flags of this module: main's --help lists them

# Flags that say *how* a run is executed, not *what* it computes: they may change between a
# run and its resumption without the run directory being refused.
OPERATIONAL_FLAGS = frozenset({
    "run_dir", "overwrite", "data_dir", "strategy", "logical_cpus", "checkpoint_every_secs",
    "verbose", "flagfile", "eval_every_epochs", "cluster_wait_secs",
})

# Flags naming files or run directories a command reads: a finished run records their digests
# and is reported stale when one changes (runtime/run_dir.py).
INPUT_PATH_FLAGS = ("teacher", "stats", "init_from", "student_run", "model_path", "dataset",
                    "eval_data", "student")
# Flags whose being given, not only their value, changes what a command does: --dataset (a
# model's own dataset otherwise: evaluate, export, zero_shot, data_impressions, the pipeline),
# --student_init (the pipeline's --student=auto) and --impression_bn_weight (quantize's
# BatchNorm prior). A run's flags.cfg holds them only when given (runtime/run_dir.py).
GIVEN_ONLY_FLAGS = frozenset({"dataset", "student_init", "impression_bn_weight"})
SHARDED_PROCEDURES = registry.SHARDED  # --shard=i/N, then merge
_TRAIN = train_config.DEFAULTS
_DISTILL = distill_config.DEFAULTS

# --- what to run ---------------------------------------------------------------------------
flags.DEFINE_enum("procedure", None, PROCEDURE_NAMES, "What to run.")
flags.DEFINE_string("run_dir", None, "Directory of this run: flags.cfg, checkpoints, products.")
flags.DEFINE_boolean("overwrite", False,
                     "Replace a run directory that holds a run made with other flags.")

# --- data ----------------------------------------------------------------------------------
flags.DEFINE_string("dataset", "fashion_mnist",
                    "mnist, fashion_mnist, cifar10, cifar100 or svhn.")
flags.DEFINE_integer("num_classes", None,
                     "A foreign teacher described by itself (no --dataset): its class count, "
                     "checked against its output (default: the output count).")
flags.DEFINE_list("class_names", None,
                  "A foreign teacher described by itself (no --dataset): its class names, in "
                  "output order (default 0,1,...,K-1).")
flags.DEFINE_string("eval_data", None,
                    "Real labelled images to evaluate on instead of a named dataset's test "
                    "split: a directory with one sub-folder per class (named as the classes, "
                    "or in sorted order when the classes have no names), or an .npz with x "
                    "(N, H, W[, C]) raw pixels in [0, 255] and y (N,) labels. Images are "
                    "resized to the teacher's raw input size.")
flags.DEFINE_string("data_dir", None,
                    "Where to look for tfds-prepared data or raw files (IDX, CIFAR pickles, "
                    "SVHN .mat) before the Debian copy and a tfds download.")
flags.DEFINE_integer("max_train_examples", None, "Train on a seeded random subset of this size.")
flags.DEFINE_integer("max_test_examples", None, "Evaluate on a seeded random subset of this size.")
flags.DEFINE_integer("holdout_first", 0,
                     "Never train on the first N training images (Lopes et al. keep MNIST's "
                     "first 5,000 as an unused validation split: --holdout_first=5000).")
flags.DEFINE_enum("augment", _TRAIN.augment, train_config.AUGMENT_CHOICES,
                  "Training augmentation; auto = the papers' choice for the dataset and model. "
                  "affine_mixup: each affine view blended with another image of the batch "
                  "(distill --targets=teacher and zero_shot only: the teacher labels the blend). "
                  "zero_shot (auto: none, the paper): every student step trains on random views "
                  "of the generator's images, scored anew by the teacher (not in the paper).")

# --- model and optimisation ----------------------------------------------------------------
flags.DEFINE_string("model", _TRAIN.model,
                    "Architecture to train, e.g. lenet5, wrn-16-2, hinton1200.")
flags.DEFINE_string("conv", "Conv", "WRN convolution type (Moonshine substitutes, e.g. G8B2).")
flags.DEFINE_enum("block", "basic", ("basic", "bottle"), "WRN block type (Moonshine).")
flags.DEFINE_integer("epochs", _TRAIN.epochs, "Training epochs (default: the model's recipe).")
flags.DEFINE_integer("batch_size", _TRAIN.batch_size,
                     "Global batch size (default: the model's recipe).")
flags.DEFINE_float("learning_rate", _TRAIN.learning_rate,
                   "Initial learning rate (default: the recipe).")
flags.DEFINE_enum("optimizer", _TRAIN.optimizer, train_config.OPTIMIZERS,
                  "Optimizer (default: the recipe).")
flags.DEFINE_float("momentum", _TRAIN.momentum, "SGD momentum (default: the recipe).")
flags.DEFINE_float("weight_decay", _TRAIN.weight_decay,
                   "Coupled L2 weight decay added to the gradients, as PyTorch SGD does "
                   "(default: the recipe).")
flags.DEFINE_list("lr_milestones", _TRAIN.lr_milestones,
                  "Fractions of the run at which the learning rate is multiplied by "
                  "--lr_decay (default: the recipe, e.g. 0.3,0.6,0.8 for WRN).")
flags.DEFINE_float("lr_decay", _TRAIN.lr_decay,
                   "Learning-rate factor at each milestone (default: recipe).")
flags.DEFINE_enum("lr_schedule", _TRAIN.lr_schedule, train_config.LR_SCHEDULES,
                  "Learning-rate schedule (default: the recipe; step uses --lr_milestones).")
flags.DEFINE_float("ema_momentum", _TRAIN.ema_momentum,
                   "train, distill, zero_shot: keep an exponential moving average of the "
                   "(student's) weights with this momentum (about 1 / (1 - m) steps) and make "
                   "it the model kept; 0 (default): the final weights.")
flags.DEFINE_float("input_noise", _TRAIN.input_noise,
                   "train: add N(0, s^2) noise to every training image, in the model's input "
                   "space (a smoother teacher for data-free methods; not in the papers).")
flags.DEFINE_float("adversarial_eps", _TRAIN.adversarial_eps,
                   "train: adversarial training, each batch replaced by an L2 PGD attack of "
                   "this radius per image in the model's input space (0: off; not in the "
                   "papers).")
flags.DEFINE_integer("adversarial_train_steps", _TRAIN.adversarial_train_steps,
                     "train: PGD steps of the --adversarial_eps attack (step 2.5 eps / steps).")
flags.DEFINE_integer("seed", 0, "Seed for weights, data order, subsets and augmentation.")

# --- distill --------------------------------------------------------------------------------
flags.DEFINE_string("teacher", None, "The teacher: a run directory or a .keras file.")
flags.DEFINE_string("student", None,
                    "Student architecture (e.g. lenet5_half, wrn-16-1, small_cnn), or a .keras "
                    "file holding an untrained architecture; pipeline: also auto (default: the "
                    "teacher's narrower zoo sibling, or a half-width copy of a foreign Keras "
                    "teacher, else small_cnn).")
flags.DEFINE_enum("student_init", STUDENT_INITS[0], STUDENT_INITS,
                  "pipeline: the students' first weights, in the LeNet-5 demo and when "
                  "--student=auto makes a half-width copy of a Keras teacher. teacher "
                  "(default): the teacher's own weights of its most important channels "
                  "(data-free pruning), then fine-tuned with a cosine schedule; random: fresh "
                  "weights (docs/any_teacher.md, docs/quick_pipeline_study.md).")
flags.DEFINE_enum("loss", _DISTILL.loss, distill_config.LOSSES,
                  "kd: (1-alpha)*CE + 2*alpha*T^2*KL_elementmean (FewShot/Moonshine); "
                  "soft_ce: --soft_ce_scale * CE(teacher softmax(t/T), softmax(s/T)) "
                  "(Lopes, ZSKD).")
flags.DEFINE_float("alpha", _DISTILL.alpha,
                   "KD weight; --alpha=0 --beta=0 is the no-teacher baseline.")
flags.DEFINE_float("temperature", None,
                   "Softmax temperature (default: the procedure's paper value: distill "
                   f"{_DISTILL.temperature:g}, data_impressions "
                   f"{zskd_config.DEFAULTS.temperature:g}, compute_stats "
                   f"{lopes_config.STATS_DEFAULTS.temperature:g}).")
flags.DEFINE_float("soft_ce_scale", _DISTILL.soft_ce_scale,
                   "Factor on the soft_ce loss (ZSKD uses T^2 = 400).")
flags.DEFINE_enum("targets", _DISTILL.targets, distill_config.TARGETS,
                  "soft_ce targets: the teacher run online, or a synthetic set's stored "
                  "soft_targets; auto = the teacher when --teacher is given.")
flags.DEFINE_float("beta", None,
                   f"Attention-transfer weight (default: distill {_DISTILL.beta:g}; few-shot "
                   "KD+AT uses 1000, "
                   f"zero_shot {zero_shot_config.DEFAULTS.beta:g}).")
flags.DEFINE_list("at_taps", None,
                  "Feature taps used by attention transfer (default: every spatial tap the "
                  "teacher and student share, e.g. the WRN group outputs).")
flags.DEFINE_float("hint_weight", _DISTILL.hint_weight,
                   "distill: weight of the channel hints: a student that is a narrower copy of "
                   "the teacher (e.g. lenet5 -> lenet5_half) also matches, at --hint_taps, the "
                   "teacher's features of the channels it stands for (mean squared difference; "
                   "0: off; docs/methods/extensions.md).")
flags.DEFINE_list("hint_taps", None,
                  "Feature taps the channel hints match (default: the student's last tap, "
                  "e.g. fc2 of a LeNet-5; for a copy of a foreign Keras teacher, which has no "
                  "taps: layer names, default its last convolution or dense layer before the "
                  "class scores).")
flags.DEFINE_integer("samples_per_class", _DISTILL.samples_per_class,
                     "Few-shot: train on M seeded, class-balanced real images per class; "
                     "epochs are scaled to match the full-data number of SGD steps.")
flags.DEFINE_string("init_from", None, "Start the student from this run directory/.keras file.")
flags.DEFINE_boolean("init_from_teacher", False,
                     "distill, zero_shot: start the student from the teacher's own weights of "
                     "its most important channels (data-free pruning; the student must be a "
                     "narrower copy of the teacher, layer for layer, e.g. lenet5 -> "
                     "lenet5_half; docs/any_teacher.md).")
flags.DEFINE_float("anchor_weight", _DISTILL.anchor_weight,
                   "L1 pull of the student to its initial weights (ZSKT fine-tuning: 1).")
flags.DEFINE_boolean("allow_foreign_synthetic", _DISTILL.allow_foreign_synthetic,
                     "distill: train on a synthetic .npz although its recorded teacher, input "
                     "mapping or dataset differ from --teacher's (refused by default).")
flags.DEFINE_boolean("freeze_bn", _DISTILL.freeze_bn,
                     "Run the student's BatchNorm in inference mode (ZSKT fine-tuning).")
flags.DEFINE_float("disagreement_eps", _DISTILL.disagreement_eps,
                   "distill: move half of every batch, by at most this L2 distance in the "
                   "model's input space, towards where the student and the teacher disagree "
                   "most, and let the teacher score the moved images (needs --loss=soft_ce "
                   "--targets=teacher or --loss=kd --alpha=1; 0: off; "
                   "docs/methods/extensions.md).")
flags.DEFINE_integer("disagreement_steps", _DISTILL.disagreement_steps,
                     "distill: gradient steps of --disagreement_eps's move (each costs one "
                     "more forward and backward pass of teacher and student on half a batch).")

# --- evaluate / export ---------------------------------------------------------------------
flags.DEFINE_string("model_path", None, "A run directory, a .keras file or a SavedModel.")
flags.DEFINE_enum("split", "test", ("train", "test", "holdout"),
                  "Dataset split to score on (evaluate; train, distill and zero_shot score their "
                  "model on it while training); holdout = the first --holdout_first training "
                  "images, the validation split of a teacher trained with that flag.")
flags.DEFINE_boolean("tflite", False, "export: also write model.tflite.")
flags.DEFINE_enum("quantize", "none", ("none", "int8", "dynamic"),
                  "export: also write a quantized TFLite model: int8 = full-integer "
                  "(model_int8.tflite, needs --calibration), dynamic = int8 weights with float "
                  "activations (model_dynamic.tflite); none = float only.")
flags.DEFINE_enum("quantize_io", "int8", ("int8", "float"),
                  "--quantize=int8: type of the model's input and outputs (int8: the input is "
                  "the raw pixel - 128; float: float32 ends around the int8 graph).")
flags.DEFINE_string("calibration", None,
                    "--quantize=int8 calibration images: a synthetic .npz (data impressions, "
                    "reconstructions), generator (a ZSKT generator's samples, see "
                    "--generator_run), real (the dataset's training images, for comparison) "
                    "or noise (uniform pixels, the naive baseline).")
flags.DEFINE_string("generator_run", None,
                    "--calibration=generator: the zero_shot run (or its seed_N directory, or "
                    "generator.keras); default: --model_path when it holds generator.keras.")
flags.DEFINE_integer("calibration_samples", 500,
                     "Calibration images (a seeded subset of the source when it has more).")

# --- pipeline ------------------------------------------------------------------------------
flags.DEFINE_boolean("quick", False, "pipeline: the quick preset (the default; minutes on a CPU).")
flags.DEFINE_boolean("full", False, "pipeline: the benchmark preset (hours on a CPU).")
flags.DEFINE_enum("preset", None, ("quick", "full", "smoke"),
                  "pipeline: the preset by name (--quick / --full are shortcuts).")
flags.DEFINE_list("methods", None,
                  "pipeline with --teacher: the data-free methods to run, among zskd, zskd_bn "
                  "(with the teacher-BatchNorm prior), lopes, zskt, zskt_bn (default: every "
                  "one that applies to the teacher; --quick on a teacher costlier than two "
                  "LeNet-5s runs only the one measured best for its kind; "
                  "docs/any_teacher.md).")
flags.DEFINE_string("shard", None,
                    "data_impressions, optimize_dataset: make only shard i of N (i/N, i from "
                    "0): the batches whose index is i modulo N, in this shard's own --run_dir; "
                    "then --procedure=merge (docs/several_machines.md).")
flags.DEFINE_list("inputs", None,
                  "merge: the run directories of the N shards (or glob patterns matching "
                  "them); --run_dir receives what one unsharded run would have made.")

# --- execution -----------------------------------------------------------------------------
flags.DEFINE_enum("strategy", "auto", ("auto", "mirrored", "default", "multi_worker"),
                  "auto: MirroredStrategy when more than one GPU is visible. multi_worker: "
                  "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (or the Slurm "
                  "job); every worker runs the same command, only the chief writes --run_dir "
                  "(train, distill, zero_shot; docs/several_machines.md).")
flags.DEFINE_integer("cluster_wait_secs", 300,
                     "multi_worker: how long each process waits for all the others to start "
                     "before it stops with an error naming the missing ones.")
flags.DEFINE_integer("logical_cpus", 0,
                     "Split the CPU into this many logical devices (to try multi-replica "
                     "code without GPUs); 0 leaves it alone.")
flags.DEFINE_integer("checkpoint_every_secs", 120, "Save a checkpoint at least this often.")
flags.DEFINE_integer("eval_every_epochs", None,
                     "Score the test set every N epochs during training (default: about 50 "
                     "times per run; the final model is always evaluated).")
flags.DEFINE_boolean("deterministic", False,
                     "Enable TensorFlow op determinism (slower; runs are repeatable).")
flags.DEFINE_enum("verbose", "auto", ("auto", "bar", "epoch", "quiet"),
                  "Progress output: a bar on terminals, one line per epoch otherwise.")

# Checks of flags that several procedures read and that no typed config of theirs checks.
_POSITIVE = ("max_train_examples", "max_test_examples", "batch_size",
             "checkpoint_every_secs", "eval_every_epochs", "cluster_wait_secs", "temperature",
             "num_samples", "synthesis_steps", "synthesis_batch_size", "synthesis_lr",
             "iterations", "n_generator_steps", "n_student_steps", "z_dim", "student_lr",
             "generator_lr", "num_images", "adversarial_steps", "step_size",
             "calibration_samples")
_NON_NEGATIVE = ("logical_cpus", "holdout_first", "beta")
CALIBRATION_SOURCES = ("generator", "real", "noise")  # or a synthetic .npz


def our_flag_names() -> list[str]:
    """Names of the flags defined by zskd_tf (not absl's own)."""
    return sorted({f.name for module in _FLAG_MODULES
                   for f in flags.FLAGS.get_flags_for_module(module)})


def flag_schema() -> FlagSchema:
    """What a run directory needs to know of these flags (carried as ``cfg.flag_schema``).

    Returns:
        The flags' defaults, the operational, input-path and given-only flags.
    """
    return FlagSchema(defaults={name: flags.FLAGS[name].default for name in our_flag_names()},
                      operational=OPERATIONAL_FLAGS, input_paths=INPUT_PATH_FLAGS,
                      given_only=GIVEN_ONLY_FLAGS)


# Flags that change only what is printed: scripts pass them to every command, so a procedure
# that prints no progress takes them without a warning.
PRINT_ONLY_FLAGS = frozenset({"verbose"})


def unread(procedure: str, given) -> list[str]:
    """The flags among ``given`` that ``procedure`` does not read.

    Args:
        procedure: a procedure name.
        given: flag names (others than zskd_tf's own are skipped).

    Returns:
        Those outside ``registry.get(procedure).flags`` and ``PRINT_ONLY_FLAGS``, sorted.
    """
    reads = {*registry.get(procedure).flags, *PRINT_ONLY_FLAGS}
    return sorted(set(given) & set(our_flag_names()) - reads)


def unread_warning(procedure: str, names, dashes: str = "--") -> str:
    """The sentence that says ``names`` (from :func:`unread`) were ignored.

    ``dashes=""`` names them as the Python API's options instead of flags.
    """
    listed = ", ".join(f"{dashes}{name}" for name in names)
    ignored = "it is" if len(names) == 1 else "they are"
    who = f"--procedure={procedure}" if dashes else f"procedure {procedure!r}"
    return (f"{who} does not read {listed}, so "
            f"{ignored} ignored; 'python -m zskd_tf.main --procedure={procedure} --help' lists "
            "what it reads")


def config_from_flags() -> types.SimpleNamespace:
    """Validates the parsed flags and returns them as a plain namespace."""
    values = {name: flags.FLAGS[name].value for name in our_flag_names()}
    cfg = types.SimpleNamespace(**values)
    cfg.present = {n for n in our_flag_names() if flags.FLAGS[n].present}
    cfg.flag_schema = flag_schema()
    validate(cfg)
    return cfg


def validate(cfg) -> None:
    """Checks that do not need TensorFlow; raises UserError naming the flag.

    The command line and the Python API both call it before anything is written: the
    generic checks of every flag, then the procedure's typed config (``registry``'s
    ``config``) built from ``cfg``, whose own checks cover that procedure's flags.

    Args:
        cfg: the flags' values (``config_from_flags()``'s or ``api.config()``'s namespace);
            ``lr_milestones`` is converted to numbers in place (flags.cfg records them so).
    """
    if cfg.procedure is None:
        raise UserError(f"--procedure is required: one of {', '.join(PROCEDURE_NAMES)}")
    procedure = registry.get(cfg.procedure)
    for name in procedure.needs:
        if not getattr(cfg, name):
            raise UserError(f"--{name} is required for --procedure={cfg.procedure}")
    for name, value in sorted(vars(cfg).items()):  # NaN passes every comparison below
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{name} must be a finite number, got {value}")
    for name in _POSITIVE:
        typed_config.check_positive(name, getattr(cfg, name, None))
    for name in _NON_NEGATIVE:
        typed_config.check_non_negative(name, getattr(cfg, name, None))
    if cfg.seed < 0:
        raise UserError(f"--seed must be >= 0, got {cfg.seed}")
    lopes_config.check_spectral_keep(cfg.spectral_keep)
    _validate_quantization(cfg)
    _validate_split(cfg)
    if cfg.shard is not None:
        parse_shard(cfg.shard)
        if cfg.procedure not in SHARDED_PROCEDURES:
            raise UserError(f"--shard is for --procedure={' or '.join(SHARDED_PROCEDURES)}")
    if cfg.inputs and cfg.procedure != "merge":
        raise UserError("--inputs is for --procedure=merge")
    if cfg.lr_milestones is not None:
        cfg.lr_milestones = list(train_config.parse_lr_milestones(cfg.lr_milestones))
    if procedure.config is not None:
        procedure.config.from_flags(cfg)


def _default(name: str):
    return flags.FLAGS[name].default


def _validate_split(cfg) -> None:
    """--split names a named dataset's images; --split=holdout needs --holdout_first.

    Checked on values, not on which flags were typed: a run's flags.cfg names every flag at
    its value, and replaying it as a --flagfile must pass where the original command did."""
    if cfg.split != _default("split") and cfg.eval_data:
        raise UserError("--split chooses a named dataset's split; --eval_data gives the images")
    if cfg.split == "holdout" and not cfg.holdout_first:
        raise UserError("--split=holdout scores the first --holdout_first training images: give "
                        "--holdout_first (the value the teacher was trained with)")


def _validate_quantization(cfg) -> None:
    """--quantize, --quantize_io, --calibration and --generator_run go together (on values,
    as ``_validate_split``)."""
    int8 = cfg.quantize == "int8" or cfg.procedure == "quantize"
    if cfg.calibration and not int8:
        raise UserError("--calibration is for --quantize=int8 (dynamic quantization needs no "
                        "calibration images)")
    if cfg.procedure == "export" and cfg.quantize == "int8" and not cfg.calibration:
        raise UserError("--quantize=int8 needs --calibration=FILE.npz, generator, real or noise")
    if cfg.calibration and not (cfg.calibration in CALIBRATION_SOURCES
                                or cfg.calibration.lower().endswith(".npz")):
        raise UserError(f"--calibration={cfg.calibration}: give a synthetic .npz file or one of "
                        f"{', '.join(CALIBRATION_SOURCES)}")
    if cfg.generator_run and cfg.calibration != "generator":
        raise UserError("--generator_run is for --calibration=generator")
    if cfg.quantize_io != _default("quantize_io") and not int8:
        raise UserError("--quantize_io is for --quantize=int8")
