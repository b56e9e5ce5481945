"""The steps of ``--procedure=pipeline --teacher=MODEL``: data-free students of any classifier.

The teacher is a zskd_tf run directory, a ``.keras`` file or a SavedModel; a foreign one is
described by ``--dataset`` or by itself (``--num_classes``, ``--class_names``,
``--input_range``; :mod:`zskd_tf.teacher_task`). The student is ``--student``: a zoo name, a
``.keras`` file holding an untrained model, or ``auto`` (the default): the teacher's narrower
zoo sibling; for another Keras teacher a copy of it at half its width (``student.keras`` in the
pipeline directory, :mod:`zskd_tf.models.narrower`) that starts from the teacher's strongest
channels (``--student_init``, :mod:`zskd_tf.models.teacher_channels`), or ``small_cnn`` when it
cannot be copied layer by layer; ``small_cnn`` (:mod:`zskd_tf.models.small_cnn`) for a
SavedModel.

Methods (``--methods``, default: every one that applies):

========  ==========================================================  ========================
method    what                                                        applies when
========  ==========================================================  ========================
zskd      ZSKD data impressions, then distill on them                 always
zskd_bn   data impressions with the teacher-BatchNorm prior, made     Keras teacher with
          the DeepInversion way (``BN_RECIPE``), then distill         BatchNormalization
lopes     Lopes et al. reconstruction (``all_layers``), then distill  --stats, or a teacher of
                                                                      a named dataset
zskt      ZSKT: zero-shot student against a generator                 Keras teacher
zskt_bn   the same with the BatchNorm prior in the generator's loss   Keras teacher with
          (``--generator_bn_weight=1``)                               BatchNormalization
========  ==========================================================  ========================

ZSKD follows the Fashion-MNIST recipe of ``flags/zskd/``: N(0, 1) start, image L2 1e-3, Adam at
lr 3 for 400 steps, batches of 500; the student sees the impressions randomly scaled, shifted
and rotated (``--augment=affine``), each scored by the teacher online (``--targets=teacher``;
a SavedModel teacher cannot be run inside training: its stored soft targets are used, without
augmentation). The Lopes et al. student is trained the same way (chosen on a validation split
for the demo pipeline, docs/quick_pipeline_study.md). Attention transfer (ZSKT's
``--beta=250``) is used only when teacher and student share feature taps of equal size (two
WRNs). Every student is exported (SavedModel, TFLite and an int8 TFLite calibrated on its own
method's synthetic images).

Real data is only used to evaluate: with ``--eval_data`` the teacher and each student are
scored on it; without, the report shows each student's top-1 agreement with the teacher on
held-out data impressions (made with another seed).

Presets scale with the teacher's input and cost: image counts and ZSKT iterations are multiplied
by ``min(1, 784 / (H * W * C), COST_ALLOWANCE * REFERENCE_MACS / MACs)``, MACs being the
teacher's multiply-adds per image (a 28x28x1 teacher no costlier than ten LeNet-5s runs the
preset as written). ``--quick`` on a teacher costing more than ``COSTLY`` LeNet-5s runs, unless
``--methods`` says otherwise, only the method measured best for its kind (:func:`recommended`),
so that it stays within about 30 minutes on a 2-core CPU (docs/any_teacher.md).
"""
from __future__ import annotations

import dataclasses
import os

from zskd_tf.errors import UserError
from zskd_tf.lopes.config import RECONSTRUCTION_DEFAULTS
from zskd_tf.pipeline.steps import FINE_TUNE, LOPES_OBJECTIVE, SYNTHETIC_VIEWS, Step
from zskd_tf.zskt.config import seed_dir_name

METHODS = ("zskd", "zskd_bn", "lopes", "zskt", "zskt_bn")
# --student=auto for a foreign Keras teacher: a half-width copy of it, written into the pipeline
# directory as STUDENT_FILE, which every student step then starts from.
NARROWER_COPY = "narrower copy of the teacher"
STUDENT_FILE = "student.keras"
TITLES = {"zskd": "ZSKD (Nayak et al. 2019)",
          "zskd_bn": "ZSKD + BatchNorm prior (DeepInversion's way)",
          "lopes": f"Lopes et al. 2017 ({LOPES_OBJECTIVE})",
          "zskt": "ZSKT (Micaelli & Storkey 2019)", "zskt_bn": "ZSKT + BatchNorm prior"}
BN_PRIOR_WEIGHT = 1.0
REFERENCE_MACS = 286_334  # LeNet-5 at 28x28x1 (models.complexity): what the presets are sized for
COSTLY = 2.0  # --quick keeps one method on a teacher costing more than this many LeNet-5s
COST_ALLOWANCE = 10.0  # one method on a teacher up to this many LeNet-5s keeps the full counts
AT_BETA = 250.0
REFERENCE_INPUT = 28 * 28 * 1  # input size the presets are written for
# optimize_dataset's batch, which the pipeline leaves at its default: the reconstruction count
# must be a multiple of it.
RECONSTRUCTION_BATCH = RECONSTRUCTION_DEFAULTS.synthesis_batch_size
ZSKD_RECIPE = ("--impression_init=normal", "--impression_l2=1e-3", "--synthesis_lr=3.0",
               "--betas=1.0,0.1", "--temperature=20")
# zskd_bn: DeepInversion's way of making images (Yin et al. 2020) with ZSKD's Dirichlet targets:
# a uniform start, a small learning rate, a smoothness prior and the BatchNorm-statistics prior,
# chosen on a validation split for a BatchNorm CNN (docs/any_teacher.md, "Choosing the BatchNorm
# recipe").
BN_RECIPE = ("--impression_init=uniform", "--synthesis_lr=0.05", "--impression_tv=1e-2",
             f"--impression_bn_weight={BN_PRIOR_WEIGHT:g}", "--betas=1.0,0.1",
             "--temperature=20")
STUDENT_RECIPE = ("--loss=soft_ce", "--temperature=20", "--soft_ce_scale=400")
# The zskd student, when it starts from the teacher's channels, also matches the teacher's
# features of those channels at its last hidden layer (channel hints: docs/methods/extensions.md,
# "Channel hints"), chosen on the validation split of a CNN without BatchNorm
# (docs/any_teacher.md, "A teacher without BatchNorm (2026-12-05)"). Not measured for the other
# methods' students, which go without.
COPY_HINTS = ("--hint_weight=100",)


@dataclasses.dataclass(frozen=True)
class AnyPreset:
    name: str
    impressions: int
    impression_steps: int
    bn_impressions: int  # zskd_bn's count (BN_RECIPE)
    bn_impression_steps: int  # and its steps
    student_epochs: int
    holdout_impressions: int
    reconstructions: int
    reconstruction_steps: int
    zskt_iterations: int
    zskt_batch_size: int = 128


ANY_PRESETS = {
    "quick": AnyPreset("quick", impressions=6000, impression_steps=400, bn_impressions=12000,
                       bn_impression_steps=100,
                       student_epochs=60,
                       holdout_impressions=500, reconstructions=3200, reconstruction_steps=300,
                       zskt_iterations=600),
    "full": AnyPreset("full", impressions=24000, impression_steps=400, bn_impressions=24000,
                      bn_impression_steps=1000,
                      student_epochs=120,
                      holdout_impressions=2000, reconstructions=32000,
                      reconstruction_steps=1000, zskt_iterations=4000),
    "smoke": AnyPreset("smoke", impressions=100, impression_steps=5, bn_impressions=100,
                       bn_impression_steps=5,
                       student_epochs=1,
                       holdout_impressions=50, reconstructions=64, reconstruction_steps=5,
                       zskt_iterations=2, zskt_batch_size=32),
}


@dataclasses.dataclass(frozen=True)
class Teacher:
    """What the plan needs to know of the teacher."""
    path: str                   # absolute
    dataset: str                # a named dataset or "custom"
    class_names: tuple
    input_shape: tuple          # model input (H, W, C)
    keras: bool                 # a Keras model (not a SavedModel): can be trained against
    has_batchnorm: bool
    macs: int | None            # multiply-adds per image (None: unknown, e.g. a SavedModel)
    zoo_model: str | None       # the architecture of a zskd_tf teacher
    task_flags: tuple           # flags that describe a foreign teacher to every step


def inspect(path: str, cfg) -> tuple[Teacher, object]:
    """Loads ``--teacher`` and states what it is; UserError when it cannot be a teacher.

    Returns:
        (the :class:`Teacher`, the loaded classifier).
    """
    from zskd_tf import model_io, teacher_task
    from zskd_tf.models import taps

    if not os.path.exists(path):
        raise UserError(f"--teacher={path} does not exist (give a zskd_tf run directory, a "
                        ".keras file or a SavedModel; leave --teacher out for the demo)")
    info_path = os.path.join(path, model_io.INFO_FILE)
    if os.path.isdir(path) and os.path.exists(info_path) and not os.path.exists(
            os.path.join(path, "result.json")):
        raise UserError(f"--teacher={path} is not a finished zskd_tf training run (no "
                        "result.json)")
    named = cfg.dataset if "dataset" in cfg.present else None
    loaded, task = teacher_task.resolve(path, dataset=named,
                                        description=teacher_task.description_of(cfg))
    if loaded.model is None and loaded.spec is None:
        raise UserError(f"--teacher={path} is {loaded.kind} exported by zskd_tf (raw images in): "
                        "give the run directory it came from")
    keras_model = loaded.model
    has_bn = keras_model is not None and taps.has_batchnorm(keras_model)
    ours = "input_spec" in model_io.read_info(path)
    flags = () if ours else _task_flags(cfg, named)
    return Teacher(os.path.abspath(path), task.dataset, task.class_names, tuple(task.spec.shape),
                   keras_model is not None, has_bn, _macs(keras_model),
                   loaded.info.get("model") if ours else None, flags), loaded


def _macs(model) -> int | None:
    """The Keras ``model``'s multiply-adds per image; None when they cannot be counted."""
    if model is None:
        return None
    from zskd_tf.models import complexity
    try:
        return complexity.count_macs(model) or None
    except (AttributeError, ValueError):  # a layer without a single output shape
        return None


def _task_flags(cfg, named) -> tuple:
    if named:
        return (f"--dataset={named}",) + (
            (f"--input_range={','.join(cfg.input_range)}",) if cfg.input_range else ())
    flags = []
    if cfg.num_classes:
        flags.append(f"--num_classes={cfg.num_classes}")
    if cfg.class_names:
        flags.append(f"--class_names={','.join(cfg.class_names)}")
    if cfg.input_range:
        flags.append(f"--input_range={','.join(cfg.input_range)}")
    return tuple(flags)


def why_not(method: str, teacher: Teacher, stats: str | None) -> str | None:
    """Why ``method`` cannot apply to ``teacher`` (None: it applies)."""
    bn = method.endswith("_bn")
    if method.startswith("zskt") and not teacher.keras:
        return ("ZSKT trains a generator through the teacher, which needs a Keras model (a "
                ".keras file or a run directory), not a SavedModel")
    if bn and not teacher.has_batchnorm:
        return ("the BatchNorm prior needs a Keras teacher with BatchNormalization layers; "
                "this teacher has none" if teacher.keras else
                "the BatchNorm prior reads the teacher's BatchNormalization layers, which a "
                "SavedModel does not expose")
    if method == "lopes" and not stats and teacher.dataset not in _named():
        return ("Lopes et al. need activation statistics recorded on the training data: give "
                "--stats=STATS (made by --procedure=compute_stats) or a teacher of a named "
                "dataset (--dataset)")
    if method == "lopes" and not teacher.keras:
        return "Lopes et al. reconstruct through the teacher's layers: a Keras model is needed"
    return None


def _named():
    from zskd_tf.data.datasets import DATASET_NAMES
    return DATASET_NAMES


def choose_methods(requested, teacher: Teacher, stats, preset_name: str = "quick"
                   ) -> tuple[list, dict]:
    """(the methods to run in order, {left-out method: why}); UserError for a requested
    method that is unknown or cannot apply. Without ``requested``: every method that applies,
    or under ``--quick`` on a costly teacher only the :func:`recommended` one."""
    if requested:
        unknown = [m for m in requested if m not in METHODS]
        if unknown:
            raise UserError(f"--methods: unknown {', '.join(unknown)}; use some of "
                            f"{', '.join(METHODS)}")
        for method in requested:
            reason = why_not(method, teacher, stats)
            if reason:
                raise UserError(f"--methods={method} cannot apply to this teacher: {reason}")
        return [m for m in METHODS if m in requested], {}
    reasons = {m: why_not(m, teacher, stats) for m in METHODS}
    chosen = [m for m in METHODS if reasons[m] is None]
    left_out = {m: r for m, r in reasons.items() if r is not None}
    cost = cost_ratio(teacher)
    if preset_name == "quick" and cost > COSTLY and len(chosen) > 1:
        keep = recommended(teacher)
        why = (f"--quick runs one method on a teacher this costly ({teacher.macs / 1e6:.1f} M "
               f"multiply-adds per image, {cost:.0f} times the LeNet-5 the preset is sized for):"
               f" {keep}, the best measured for a teacher like this (docs/any_teacher.md); "
               "name more with --methods, or use --full")
        left_out.update({m: why for m in chosen if m != keep})
        chosen = [keep]
    return chosen, left_out


def cost_ratio(teacher: Teacher) -> float:
    """The teacher's multiply-adds per image over LeNet-5's (1 when unknown)."""
    return teacher.macs / REFERENCE_MACS if teacher.macs else 1.0


def recommended(teacher: Teacher) -> str:
    """The method measured best for a teacher of this kind at the quick scale
    (docs/any_teacher.md, "Which method for which teacher"): the BatchNorm recipe for a Keras
    teacher with BatchNorm, ZSKD for any other."""
    return "zskd_bn" if teacher.keras and teacher.has_batchnorm else "zskd"


def choose_student(student: str | None, teacher: Teacher) -> str:
    """``--student``: as given (a file as an absolute path); for ``auto``/none the teacher's
    narrower zoo sibling, ``NARROWER_COPY`` for another Keras teacher (a half-width copy of
    it, :mod:`zskd_tf.models.narrower`), else ``small_cnn``."""
    from zskd_tf.models import registry

    if student and student != "auto":
        return os.path.abspath(student) if registry.is_model_file(student) else student
    if teacher.zoo_model is None and teacher.keras:
        return NARROWER_COPY
    return registry.auto_student(teacher.zoo_model)


def scale(preset: AnyPreset, input_shape, macs: int | None = None) -> AnyPreset:
    """``preset`` for a teacher of ``input_shape`` costing ``macs`` multiply-adds per image:
    image counts and ZSKT iterations times ``min(1, 784 / (H * W * C),
    COST_ALLOWANCE * REFERENCE_MACS / macs)``, kept at least at the smoke preset's."""
    factor = min(1.0, REFERENCE_INPUT / float(input_shape[0] * input_shape[1] * input_shape[2]))
    if macs:
        factor = min(factor, COST_ALLOWANCE * REFERENCE_MACS / float(macs))
    smoke = ANY_PRESETS["smoke"]

    def scaled(field):
        return max(getattr(smoke, field), int(round(getattr(preset, field) * factor)))

    return dataclasses.replace(preset, **{f: scaled(f) for f in (
        "impressions", "bn_impressions", "holdout_impressions", "reconstructions",
        "zskt_iterations")})


def impression_sizes(wanted: int, num_classes: int) -> tuple[int, int]:
    """(impressions, synthesis batch) near ``wanted``: the batch the largest multiple of
    ``num_classes`` x 2 betas up to 500 (at least one such group), the count a multiple of the
    batch, as ``data_impressions`` requires."""
    group = 2 * num_classes
    batch = max(group, min(500, wanted) // group * group)
    return nearest_multiple(wanted, batch), batch


def nearest_multiple(wanted: int, unit: int) -> int:
    """The multiple of ``unit`` nearest ``wanted``, at least ``unit``: a count that whole
    batches of ``unit`` make."""
    return max(unit, int(round(wanted / unit)) * unit)


def plan(preset: AnyPreset, root: str, teacher: Teacher, student: str, methods, *,
         eval_data: str | None, stats: str | None, at_taps: tuple, seed: int,
         fine_tune: bool = False, hints: bool = False) -> list[Step]:
    """The steps, in order (each its own run directory under ``root``). ``fine_tune``: the
    student starts from the teacher's channels, and the distill steps decay its rate;
    ``hints``: such a student can also take channel hints (``COPY_HINTS``, zskd's only)."""
    def d(name):
        return os.path.join(root, name)

    t, task = f"--teacher={teacher.path}", teacher.task_flags
    no_dataset = tuple(f for f in task if not f.startswith("--dataset="))
    evaluation = (f"--eval_data={os.path.abspath(eval_data)}",) if eval_data else ()
    classes = len(teacher.class_names)
    holdout, holdout_batch = impression_sizes(preset.holdout_impressions, classes)
    preset = dataclasses.replace(
        preset, holdout_impressions=holdout,
        reconstructions=nearest_multiple(preset.reconstructions, RECONSTRUCTION_BATCH))
    steps = []
    if eval_data:
        steps.append(Step("teacher_eval", "score the teacher on --eval_data", (
            "--procedure=evaluate", f"--model_path={teacher.path}", *task, *evaluation)))
    else:
        steps.append(Step("holdout_impressions", "held-out data impressions (another seed), "
                          "to measure agreement with the teacher", (
                              "--procedure=data_impressions", t, *task, *ZSKD_RECIPE,
                              f"--num_samples={preset.holdout_impressions}",
                              f"--synthesis_steps={preset.impression_steps}",
                              f"--synthesis_batch_size={holdout_batch}",
                              f"--seed={seed + 1}")))
    for method in methods:
        steps += _method_steps(method, preset, d, t, task, no_dataset, evaluation, teacher,
                               student, stats, at_taps, seed, fine_tune, hints)
    for method in methods:
        model, calibration = student_run(method, root, seed), calibration_source(method, root)
        steps.append(Step(f"{method}_export", f"export the {TITLES[method]} student (SavedModel, "
                          "TFLite, int8 TFLite calibrated on its synthetic images)", (
                              "--procedure=export", f"--model_path={model}", "--tflite",
                              "--quantize=int8", f"--calibration={calibration}")))
    return steps


def _method_steps(method, preset, d, t, task, no_dataset, evaluation, teacher, student, stats,
                  at_taps, seed, fine_tune, hints) -> list[Step]:
    s = f"--student={student}"
    schedule = FINE_TUNE if fine_tune else ()
    hinted = COPY_HINTS if fine_tune and hints and method == "zskd" else ()
    online = (t, *no_dataset, *SYNTHETIC_VIEWS) if teacher.keras \
        else ("--targets=stored", "--augment=none")
    if method.startswith("zskd"):
        recipe, count, steps = (
            (BN_RECIPE, preset.bn_impressions, preset.bn_impression_steps)
            if method == "zskd_bn" else (ZSKD_RECIPE, preset.impressions, preset.impression_steps))
        count, batch = impression_sizes(count, len(teacher.class_names))
        return [
            Step(f"{method}_impressions", f"{TITLES[method]}: data impressions", (
                "--procedure=data_impressions", t, *task, *recipe,
                f"--num_samples={count}", f"--synthesis_steps={steps}",
                f"--synthesis_batch_size={batch}")),
            Step(f"{method}_student", f"{TITLES[method]}: student on the impressions", (
                "--procedure=distill", s, f"--dataset={d(method + '_impressions')}/impressions.npz",
                *STUDENT_RECIPE, *schedule, *online, f"--epochs={preset.student_epochs}",
                *hinted, *evaluation))]
    if method == "lopes":
        steps = []
        if not stats:
            stats = d("lopes_stats")
            steps.append(Step("lopes_stats", "Lopes et al.: activation statistics of the teacher",
                              ("--procedure=compute_stats", t, *task)))
        return steps + [
            Step("lopes_dataset", f"Lopes et al.: reconstruction ({LOPES_OBJECTIVE})", (
                "--procedure=optimize_dataset", t, f"--stats={os.path.abspath(stats)}",
                f"--objective={LOPES_OBJECTIVE}", f"--num_samples={preset.reconstructions}",
                f"--synthesis_steps={preset.reconstruction_steps}")),
            Step("lopes_student", "Lopes et al.: student on the reconstruction", (
                "--procedure=distill", s, *online,
                f"--dataset={d('lopes_dataset')}/{LOPES_OBJECTIVE}.npz", "--loss=soft_ce",
                "--temperature=8", *schedule, f"--epochs={preset.student_epochs}",
                *evaluation))]
    bn = (f"--generator_bn_weight={BN_PRIOR_WEIGHT}",) if method == "zskt_bn" else ()
    attention = ((f"--beta={AT_BETA:g}", f"--at_taps={','.join(at_taps)}") if at_taps
                 else ("--beta=0",))
    return [Step(f"{method}_student", f"{TITLES[method]}: zero-shot student against a generator", (
        "--procedure=zero_shot", s, t, *task, *attention, "--generator_range=teacher", *bn,
        f"--iterations={preset.zskt_iterations}", f"--batch_size={preset.zskt_batch_size}",
        f"--seeds={seed}", *evaluation))]


def student_run(method: str, root: str, seed: int = 0) -> str:
    """The run directory holding ``method``'s student in a pipeline run with ``--seed=seed``
    (ZSKT's zero-shot run keeps it in ``seed_<seed>``)."""
    run = os.path.join(root, f"{method}_student")
    return os.path.join(run, seed_dir_name(seed)) if method.startswith("zskt") else run


def calibration_source(method: str, root: str) -> str:
    """``--calibration`` of ``method``'s int8 export: its own synthetic images."""
    if method.startswith("zskt"):
        return "generator"
    if method == "lopes":
        return os.path.join(root, "lopes_dataset", f"{LOPES_OBJECTIVE}.npz")
    return os.path.join(root, f"{method}_impressions", "impressions.npz")
