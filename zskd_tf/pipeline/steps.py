"""The steps of ``--procedure=pipeline`` and its two presets.

Each step is one ``python -m zskd_tf.main`` command with its own run directory under the
pipeline's, so it is resumable, checked against its flags and reused when finished, exactly as
if the user had typed it. Teacher: LeNet-5 on Fashion-MNIST (trained, or ``--teacher``);
students: LeNet-5-half from ZSKD data impressions, from a Lopes et al. reconstruction
(``all_layers``, the best objective in our Fashion-MNIST benchmark, README "Benchmarks") and
from ZSKT's generator (``--generator_range=teacher``: with the paper's unbounded generator
output a LeNet-5-half student collapsed to chance on Fashion-MNIST, README "Benchmarks");
each is exported to SavedModel + TFLite, and to a full-integer TFLite model calibrated on its
own method's synthetic data (the teacher and the ZSKD student on the data impressions, the
Lopes student on its reconstruction, the ZSKT student on its generator's samples).
"""
from __future__ import annotations

import dataclasses
import os

from zskd_tf.zskt.config import seed_dir_name

DATASET = "fashion_mnist"
TEACHER_MODEL = "lenet5"
STUDENT_MODEL = "lenet5_half"
LOPES_OBJECTIVE = "all_layers"
# The ZSKD and Lopes et al. students see their synthetic images randomly scaled, shifted and
# rotated, each scored by the teacher online, for 120 epochs: chosen on a validation split at
# the --quick scale (docs/quick_pipeline_study.md; +12 points for ZSKD, +9 for Lopes et al.).
SYNTHETIC_VIEWS = ("--targets=teacher", "--augment=affine")
STUDENT_LENGTH = ("--epochs=120",)
SYNTHETIC_STUDENT = (*SYNTHETIC_VIEWS, *STUDENT_LENGTH)
# A student that starts from the teacher's own channels (--student_init=teacher) is fine-tuned:
# its learning rate decays to 0 over the run, so that the final epoch is not caught on the
# wobble a constant rate keeps (docs/any_teacher.md, "Starting from the teacher's channels").
FINE_TUNE = ("--lr_schedule=cosine",)
# ZSKT from the teacher's channels also takes DAFL's class-balance and one-hot terms in its
# generator loss (chosen on the validation split, 3 seeds, +6.9 points over the start alone),
# and its student steps train on affine views of the generated images, scored anew by the
# teacher (+2.8 more on two validation teachers, 2 seeds each). docs/quick_pipeline_study.md,
# "ZSKT from the teacher's channels: DAFL's generator terms", and the section after it,
# "ZSKT from the teacher's channels: affine views".
ZSKT_FROM_TEACHER = ("--generator_balance_weight=1", "--generator_confidence_weight=1",
                     "--augment=affine")
# The Lopes et al. student from the teacher's channels also matches the teacher's fc2 features
# of the channels it stands for (channel hints, docs/methods/extensions.md, "Channel hints"),
# chosen on validation splits (docs/quick_pipeline_study.md): +3.36 points for --quick's 5-epoch
# teacher (3,200 images, 3 seeds; "Channel hints, validation split (2026-12-05)"), +1.55 and
# +1.39 for the 20-epoch teacher of --full at 3,200 and 9,600 images (2 seeds each; "The
# recipe's 20-epoch teacher (2026-12-05)").
LOPES_HINTS = ("--hint_weight=100",)
# ZSKD's student takes channel hints only where they were measured to help: from a teacher
# trained like the recipe's 20 epochs, at up to HINTED_IMPRESSIONS impressions (+2.95 points on
# that teacher's validation split at 6,000, W = 1000, 2 seeds: docs/zskd_recipe_study.md,
# "Channel hints (2026-12-05)"). Not from --quick's 5-epoch teacher (-0.78 at 6,000:
# docs/quick_pipeline_study.md), and not at --full's 48,000, which the validation split has not
# studied (on the test set they cost a point there). zskd_student_for() picks.
ZSKD_HINTS = ("--hint_weight=1000",)
HINTED_IMPRESSIONS = 6000
# Where it takes the hints, ZSKD's student also sees each affine view blended with another
# impression of its batch (--augment=affine_mixup; docs/methods/extensions.md, "Mixed views"):
# +1.54 and +1.31 points on the 20-epoch teacher's validation split at 6,000 impressions (2
# seeds: docs/zskd_recipe_study.md, "Mixed views (2026-12-05)"); on --quick's 5-epoch teacher
# -1.29 (seed 0: docs/quick_pipeline_study.md), on --full's 48,000 impressions not measured.
MIXED_VIEWS = ("--targets=teacher", "--augment=affine_mixup")
# At up to HINTED_IMPRESSIONS, ZSKD's student from either teacher also sees half of each batch
# moved, within an L2 radius of 6, to where student and teacher disagree (--disagreement_eps;
# docs/methods/extensions.md, "Disagreement views"): on the 20-epoch teacher's validation split
# +1.89 and +1.63 points over mixed views alone (eps chosen among 1, 3, 6 and 10 on seed 0:
# docs/zskd_recipe_study.md, "Disagreement views (2026-12-06)"), on --quick's 5-epoch teacher
# +1.36 and +2.05 over plain affine views (docs/quick_pipeline_study.md); not measured at
# --full's 48,000.
DISAGREEMENT_VIEWS = ("--disagreement_eps=6",)
# The synthesis chosen on the validation split for the recipe's 20-epoch teacher (flags/zskd/,
# docs/zskd_recipe_study.md): a N(0, 1) start, an image L2 penalty and Adam at lr 3. The 5-epoch
# teacher of --quick makes better impressions with the paper's settings (the procedure's
# defaults; docs/quick_pipeline_study.md). synthesis_for() picks by the teacher's epochs.
RECIPE_SYNTHESIS = ("--impression_init=normal", "--impression_l2=1e-3", "--synthesis_lr=3.0")
# At up to HINTED_IMPRESSIONS, such a teacher's impressions are made with two image penalties,
# half of them each (--impression_l2_mix; docs/methods/extensions.md, "Priors for image
# synthesis (ZSKD impressions)"): the flagfiles' 1e-3 and 1e-1, which helps one validation
# teacher by 5 points and costs another 7 when alone.
# Mixed, on the validation split of both: +3.58 / +4.30 and +2.90 / +2.88 points (seeds 0 / 1;
# docs/zskd_recipe_study.md, "A mixture of image penalties (2026-12-06)"); at --full's 48,000
# not measured.
MIXED_PENALTIES = ("--impression_l2_mix=1e-3,1e-1",)
RECIPE_EPOCHS = 20  # the LeNet-5 recipe's (flags/teachers/lenet5_fashion_mnist.cfg)
QUICK_EPOCHS = 5    # --quick's teacher


def synthesis_for(teacher_epochs: int, impressions: int) -> tuple[str, ...]:
    """ZSKD's synthesis flags for a LeNet-5 teacher trained ``teacher_epochs`` epochs, making
    ``impressions`` impressions, as chosen on the validation split of each teacher measured:
    the paper's (the procedure's defaults) for the 5-epoch one, ``RECIPE_SYNTHESIS`` for the
    recipe's 20 (docs/quick_pipeline_study.md, "The recipe's 20-epoch teacher (2026-12-05)"),
    with ``MIXED_PENALTIES`` at up to ``HINTED_IMPRESSIONS``; a teacher in between takes the
    nearer's."""
    if not _trained_like_the_recipe(teacher_epochs):
        return ()
    return (*RECIPE_SYNTHESIS, *(MIXED_PENALTIES if impressions <= HINTED_IMPRESSIONS else ()))


def zskd_student_for(teacher_epochs: int, impressions: int) -> tuple[str, ...]:
    """The views and extra flags of ZSKD's student (one that starts from the teacher's channels)
    for a LeNet-5 teacher trained ``teacher_epochs`` epochs, distilled on ``impressions`` data
    impressions, as measured to help (the comments above them): at up to ``HINTED_IMPRESSIONS``,
    ``DISAGREEMENT_VIEWS`` with ``MIXED_VIEWS`` and ``ZSKD_HINTS`` for a teacher trained like
    the recipe, with ``SYNTHETIC_VIEWS`` for --quick's; beyond it ``SYNTHETIC_VIEWS`` alone."""
    if impressions > HINTED_IMPRESSIONS:
        return SYNTHETIC_VIEWS
    if _trained_like_the_recipe(teacher_epochs):
        return (*MIXED_VIEWS, *DISAGREEMENT_VIEWS, *ZSKD_HINTS)
    return (*SYNTHETIC_VIEWS, *DISAGREEMENT_VIEWS)


def _trained_like_the_recipe(teacher_epochs: int) -> bool:
    """Nearer the recipe's 20 epochs than --quick's 5 (only those two teachers are measured)."""
    return teacher_epochs > (QUICK_EPOCHS + RECIPE_EPOCHS) / 2


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    teacher_epochs: int | None       # the teacher it trains; None: the recipe's 20 epochs
    impressions: int                 # ZSKD data impressions
    impression_steps: int
    reconstructions: int             # Lopes et al. images
    reconstruction_steps: int
    zskt_iterations: int
    curve_images: int
    curve_steps: int
    extra: tuple = ()  # (step name, (flags...)) pairs appended to those steps


SMOKE_EXTRA = (  # seconds per step: checks the wiring, not the methods
    ("teacher", ("--max_train_examples=2000", "--max_test_examples=500")),
    ("zskd_student", ("--epochs=2", "--max_test_examples=500")),
    ("lopes_stats", ("--max_train_examples=2000",)),
    ("lopes_student", ("--epochs=2", "--max_test_examples=500")),
    ("zskt_student", ("--batch_size=32", "--max_test_examples=500")),
    ("zskt_curves", ("--max_test_examples=500",)),
)


PRESETS = {
    # Minutes on a 2-core CPU (README "One command"): every method, at a small scale.
    "quick": Preset("quick", teacher_epochs=QUICK_EPOCHS, impressions=6000, impression_steps=400,
                    reconstructions=3200, reconstruction_steps=300, zskt_iterations=600,
                    curve_images=100, curve_steps=30),
    # The benchmark settings (bench/*.sh): hours on a CPU.
    "full": Preset("full", teacher_epochs=None, impressions=48000, impression_steps=400,
                   reconstructions=32000, reconstruction_steps=1000, zskt_iterations=4000,
                   curve_images=300, curve_steps=100),
    "smoke": Preset("smoke", teacher_epochs=1, impressions=200, impression_steps=20,
                    reconstructions=640, reconstruction_steps=20, zskt_iterations=10,
                    curve_images=10, curve_steps=5, extra=SMOKE_EXTRA),
}


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    title: str
    args: tuple[str, ...]  # procedure flags, without --run_dir

    def run_dir(self, root: str) -> str:
        return os.path.join(root, self.name)


def zskt_seed_dir(seed: int = 0) -> str:
    """Where the ZSKT step keeps its student, relative to the pipeline directory: the
    zero-shot run trains the one pipeline ``--seed`` (``--seeds=<seed>``), in ``seed_<seed>``."""
    return os.path.join("zskt_student", seed_dir_name(seed))


def plan(preset: Preset, root: str, teacher: str | None, seed: int = 0,
         student_init: str = "teacher", teacher_epochs: int | None = None) -> list[Step]:
    """The steps, in order. ``teacher``: an existing teacher run to reuse, else one is trained;
    ``teacher_epochs``: how long the given one was trained (None: as the preset's own), which
    chooses ZSKD's synthesis (``synthesis_for``). ``seed``: the pipeline's ``--seed``, which
    every step receives and ZSKT trains.
    ``student_init``: ``--student_init``; ``teacher``: each student starts from the teacher's
    most important channels (``--init_from_teacher``) and the distilled ones are fine-tuned
    (``FINE_TUNE``); ``random``: fresh students."""
    def d(name):
        return os.path.join(root, name)

    steps = []
    if teacher is None or teacher_epochs is None:
        teacher_epochs = preset.teacher_epochs or RECIPE_EPOCHS
    if teacher is None:
        teacher = d("teacher")
        epochs = () if preset.teacher_epochs is None else (f"--epochs={preset.teacher_epochs}",)
        steps.append(Step("teacher", f"train the {TEACHER_MODEL} teacher", (
            "--procedure=train", f"--model={TEACHER_MODEL}", f"--dataset={DATASET}", *epochs)))
    t = f"--teacher={teacher}"
    pruned = student_init == "teacher"
    student = (f"--student={STUDENT_MODEL}", t, *(("--init_from_teacher",) if pruned else ()))
    fine_tune = FINE_TUNE if pruned else ()
    lopes_hints = LOPES_HINTS if pruned else ()
    zskd_views = (zskd_student_for(teacher_epochs, preset.impressions) if pruned
                  else SYNTHETIC_VIEWS)
    steps += [
        Step("zskd_impressions", "ZSKD: data impressions", (
            "--procedure=data_impressions", t, f"--num_samples={preset.impressions}",
            f"--synthesis_steps={preset.impression_steps}", "--synthesis_batch_size=500",
            *synthesis_for(teacher_epochs, preset.impressions))),
        Step("zskd_student", "ZSKD: student on the impressions", (
            "--procedure=distill", *student,
            f"--dataset={d('zskd_impressions')}/impressions.npz", "--loss=soft_ce",
            "--temperature=20", "--soft_ce_scale=400", *zskd_views, *STUDENT_LENGTH,
            *fine_tune)),
        Step("lopes_stats", "Lopes et al.: activation statistics of the teacher", (
            "--procedure=compute_stats", t, f"--dataset={DATASET}")),
        Step("lopes_dataset", f"Lopes et al.: reconstruction ({LOPES_OBJECTIVE})", (
            "--procedure=optimize_dataset", t, f"--stats={d('lopes_stats')}",
            f"--objective={LOPES_OBJECTIVE}", f"--num_samples={preset.reconstructions}",
            f"--synthesis_steps={preset.reconstruction_steps}")),
        Step("lopes_student", "Lopes et al.: student on the reconstruction", (
            "--procedure=distill", *student,
            f"--dataset={d('lopes_dataset')}/{LOPES_OBJECTIVE}.npz", "--loss=soft_ce",
            "--temperature=8", *SYNTHETIC_STUDENT, *fine_tune, *lopes_hints)),
        Step("zskt_student", "ZSKT: zero-shot student against a generator", (
            "--procedure=zero_shot", *student, f"--dataset={DATASET}", "--beta=0",
            "--generator_range=teacher", *(ZSKT_FROM_TEACHER if pruned else ()),
            f"--iterations={preset.zskt_iterations}", f"--seeds={seed}")),
        Step("zskt_curves", "ZSKT: transition curves of the zero-shot student", (
            "--procedure=transition_curves", t, f"--student_run={d(zskt_seed_dir(seed))}",
            f"--dataset={DATASET}", f"--num_images={preset.curve_images}",
            f"--adversarial_steps={preset.curve_steps}")),
    ]
    models = (("teacher", teacher), ("zskd", d("zskd_student")),
              ("lopes", d("lopes_student")), ("zskt", d(zskt_seed_dir(seed))))
    for method, model in models:
        what = "the teacher" if method == "teacher" else f"the {method.upper()} student"
        steps.append(Step(f"{method}_export", f"export {what} (SavedModel + TFLite)", (
            "--procedure=export", f"--model_path={model}", "--tflite")))
    calibration = {  # each model's own method's synthetic data; the teacher: its impressions
        "teacher": f"{d('zskd_impressions')}/impressions.npz",
        "zskd": f"{d('zskd_impressions')}/impressions.npz",
        "lopes": f"{d('lopes_dataset')}/{LOPES_OBJECTIVE}.npz", "zskt": "generator"}
    for method, model in models:
        what = "the teacher" if method == "teacher" else f"the {method.upper()} student"
        steps.append(Step(INT8_EXPORTS[method], f"int8 TFLite of {what}, calibrated without "
                          "real images", ("--procedure=export", f"--model_path={model}",
                                          "--quantize=int8",
                                          f"--calibration={calibration[method]}")))
    extra = dict(preset.extra)
    return [dataclasses.replace(s, args=s.args + tuple(extra.get(s.name, ()))) for s in steps]


INT8_EXPORTS = {"teacher": "teacher_int8", "zskd": "zskd_int8", "lopes": "lopes_int8",
                "zskt": "zskt_int8"}  # method -> its int8 export step

def students(seed: int = 0) -> dict:
    """Report rows: method -> (student run, export run, int8 export run) under the pipeline
    directory of a run with ``--seed=seed``."""
    return {
        "ZSKD (Nayak et al. 2019)": ("zskd_student", "zskd_export", INT8_EXPORTS["zskd"]),
        f"Lopes et al. 2017 ({LOPES_OBJECTIVE})": ("lopes_student", "lopes_export",
                                                    INT8_EXPORTS["lopes"]),
        "ZSKT (Micaelli & Storkey 2019)": (zskt_seed_dir(seed), "zskt_export",
                                           INT8_EXPORTS["zskt"]),
    }


STUDENTS = students()  # the report rows of a run at the default seed
