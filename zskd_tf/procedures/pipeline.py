"""``--procedure=pipeline``: teacher -> ZSKD, Lopes et al. and ZSKT students -> exports -> report.

``--quick`` (the default) runs every method at a small scale in minutes on a CPU; ``--full``
uses the benchmark settings; ``--preset=smoke`` runs seconds-long steps (tests). Each step is
``python -m zskd_tf.main`` in its own run directory
under ``--run_dir`` (see :mod:`zskd_tf.pipeline.steps`), with its output shown as it runs: a
finished step is reused, an interrupted one resumes, a step refused for bad input stops the
pipeline with that step's error and exit status. ``--teacher=RUN`` reuses a LeNet-5
Fashion-MNIST teacher instead of
training one. The report (``report.html``, ``report.json``, ``report/*.png``) is written last.

Any other teacher (``--teacher=`` a zskd_tf run, a ``.keras`` file or a SavedModel), or any of
``--student``, ``--methods``, ``--eval_data``, runs the plan of
:mod:`zskd_tf.pipeline.any_teacher` (docs/any_teacher.md); every input is checked before
anything is written.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from zskd_tf.errors import UserError
from zskd_tf.pipeline import any_report, any_teacher
from zskd_tf.pipeline import report as report_lib
from zskd_tf.pipeline import steps as steps_lib
from zskd_tf.procedures import registry
from zskd_tf.procedures.common import finished_result
from zskd_tf.runtime import atomic
from zskd_tf.runtime.run_dir import RunDir

# Flags handed on to every step when the user gave them.
PASSED_ON = ("data_dir", "seed", "deterministic", "strategy", "logical_cpus",
             "checkpoint_every_secs")
# Flags that ask for the plan of any teacher (zskd_tf/pipeline/any_teacher.py).
ANY_TEACHER_FLAGS = ("student", "methods", "eval_data", "num_classes", "class_names",
                     "input_range", "stats")


def preset_of(cfg) -> steps_lib.Preset:
    chosen = {name for name in ("quick", "full") if getattr(cfg, name)}
    if cfg.preset:
        chosen.add(cfg.preset)
    if len(chosen) > 1:
        raise UserError(f"give one preset, not {' and '.join(sorted(chosen))}")
    return steps_lib.PRESETS[chosen.pop() if chosen else "quick"]


def _is_demo(cfg) -> bool:
    """Whether to run the LeNet-5 Fashion-MNIST demo: no --teacher, or a LeNet-5 Fashion-MNIST
    run with none of the flags of the any-teacher plan."""
    asked = [f"--{name}" for name in ANY_TEACHER_FLAGS if name in cfg.present]
    if not cfg.teacher:
        if asked:
            raise UserError(f"{', '.join(asked)} need --teacher (without it the pipeline runs "
                            "its LeNet-5 Fashion-MNIST demo)")
        return True
    if asked or "dataset" in cfg.present:
        return False
    from zskd_tf import model_io
    meta = model_io.read_info(cfg.teacher)
    return (meta.get("model"), meta.get("dataset")) == (steps_lib.TEACHER_MODEL,
                                                        steps_lib.DATASET)


def _check_teacher(path: str) -> tuple[str, int | None]:
    """(the absolute path, the epochs it was trained) of a given LeNet-5 Fashion-MNIST run."""
    info = os.path.join(path, "model_info.json")
    if not os.path.exists(os.path.join(path, "result.json")) or not os.path.exists(info):
        raise UserError(f"--teacher={path} is not a finished zskd_tf training run (no "
                        "result.json / model_info.json); leave --teacher out to train one")
    from zskd_tf import model_io
    meta = model_io.read_info(path)
    if (meta.get("model"), meta.get("dataset")) != (steps_lib.TEACHER_MODEL, steps_lib.DATASET):
        raise UserError(f"--teacher={path} is a {meta.get('model')} on {meta.get('dataset')}; "
                        f"the pipeline needs a {steps_lib.TEACHER_MODEL} on {steps_lib.DATASET}")
    from zskd_tf.runtime import guarded
    try:
        result = guarded.read_json(os.path.join(path, "result.json"))
    except guarded.DamagedFile as e:
        raise guarded.damaged_input(e, "train the teacher again, or leave --teacher out to "
                                       "train one") from None
    epochs = result.get("epochs") if isinstance(result, dict) else None
    return os.path.abspath(path), epochs if isinstance(epochs, int) else None


def _command(step: steps_lib.Step, root: str, cfg) -> list[str]:
    """The step's command line; of ``PASSED_ON``, only the flags the step reads."""
    own = dict(arg.partition("=")[::2] for arg in step.args)  # a step's own value wins
    reads = registry.get(own["--procedure"]).flags
    passed = [f"--{name}={getattr(cfg, name)}" for name in PASSED_ON
              if name in cfg.present and f"--{name}" not in own and name in reads]
    return [sys.executable, "-m", "zskd_tf.main", *step.args, f"--run_dir={step.run_dir(root)}",
            "--verbose=epoch", *passed]


def _run_step(index: int, total: int, step: steps_lib.Step, root: str, cfg) -> float:
    finished = os.path.exists(os.path.join(step.run_dir(root), "result.json"))
    print(f"\n[pipeline {index}/{total}] {step.title} ({step.name})"
          + (": finished earlier, checking and reusing it" if finished else ""), flush=True)
    start = time.monotonic()
    code = subprocess.call(_command(step, root, cfg))
    if code != 0:  # the step printed its own error; stop with its exit status
        print(f"pipeline stopped at step {index}/{total} ({step.name}, exit status {code}); "
              "finished steps are kept: run the same command again to resume",
              file=sys.stderr, flush=True)
        sys.exit(code)
    seconds = time.monotonic() - start
    print(f"[pipeline {index}/{total}] {step.name} done in {seconds:.0f} s", flush=True)
    return seconds


def _run_steps(plan, root, cfg) -> dict:
    """Runs every step; returns {step name: seconds}."""
    return {step.name: round(_run_step(i, len(plan) + 1, step, root, cfg), 1)
            for i, step in enumerate(plan, 1)}


def _narrower_copy(teacher_model, root: str, init: str):
    """``--student=auto`` for a foreign Keras teacher: (the path the copy will be saved at, the
    copy, whether it starts from the teacher's channels), or ``small_cnn``, no copy and False
    when the teacher cannot be copied layer by layer. ``init``: ``--student_init``; a copy
    that cannot take the teacher's channels keeps its random weights, with a note."""
    from zskd_tf.models import narrower, registry, teacher_channels

    try:
        copy = narrower.narrower_copy(teacher_model)
    except UserError as e:
        print(f"note: --student=auto uses {registry.DEFAULT_STUDENT}: {e}", flush=True)
        return registry.DEFAULT_STUDENT, None, False
    if init == "teacher":
        try:
            teacher_channels.take_teacher_channels(teacher_model, copy)
            return os.path.join(root, any_teacher.STUDENT_FILE), copy, True
        except UserError as e:
            print(f"note: --student_init=teacher: the student keeps random weights: {e}",
                  flush=True)
    return os.path.join(root, any_teacher.STUDENT_FILE), copy, False


def _has_hidden_layer(copy) -> bool:
    """Whether the copy has a layer before its class scores for channel hints to match."""
    from zskd_tf.models import narrower

    try:
        narrower.last_hidden_layer(copy)
        return True
    except UserError:
        return False


def _same_weights(path: str, model) -> bool:
    from zskd_tf import model_io

    return model_io.weights_sha256(model_io.load_keras_model(path)) == \
        model_io.weights_sha256(model)


def _run_any_teacher(cfg, preset_name: str, run_dir: RunDir) -> dict:
    """The plan of zskd_tf/pipeline/any_teacher.py; every input checked before the claim."""
    from zskd_tf.data.eval_data import load_eval_data
    from zskd_tf.models import registry
    from zskd_tf.models import taps as taps_lib

    teacher, loaded = any_teacher.inspect(cfg.teacher, cfg)
    methods, left_out = any_teacher.choose_methods(cfg.methods, teacher, cfg.stats,
                                                   preset_name)
    if cfg.stats and not os.path.exists(cfg.stats):
        raise UserError(f"--stats={cfg.stats} does not exist")
    student, copy = any_teacher.choose_student(cfg.student, teacher), None
    from_teacher = False
    if student == any_teacher.NARROWER_COPY:
        student, copy, from_teacher = _narrower_copy(loaded.model, run_dir.path,
                                                     cfg.student_init)
    elif cfg.student_init == "teacher" and "student_init" in cfg.present:
        raise UserError(f"--student_init={cfg.student_init} starts the half-width copy that "
                        f"--student=auto makes of a Keras teacher, not --student={student}")
    built = copy if copy is not None else registry.build_student(
        student, num_classes=len(teacher.class_names), input_shape=teacher.input_shape,
        conv=cfg.conv, block=cfg.block)
    at_taps = taps_lib.common_spatial_taps(loaded.model, built) if teacher.keras else ()
    if not at_taps and any(m.startswith("zskt") for m in methods):
        left_out["attention transfer"] = ("no feature taps of equal size shared by teacher and "
                                          "student (ZSKT runs with --beta=0)")
    eval_data = None
    if cfg.eval_data:
        eval_data = load_eval_data(cfg.eval_data, teacher.class_names, loaded.spec.raw_shape)
    preset = any_teacher.scale(any_teacher.ANY_PRESETS[preset_name], teacher.input_shape,
                               teacher.macs)
    run_dir.claim(cfg)
    root = run_dir.path
    if copy is not None and os.path.exists(student):  # a rerun keeps the first copy, and
        # plans for what it is: one made before --student_init=teacher has random weights
        from_teacher = from_teacher and _same_weights(student, copy)
    elif copy is not None:
        with atomic.atomic_path(student, suffix=".keras") as tmp:
            copy.save(tmp)
    plan = any_teacher.plan(preset, root, teacher, student, methods, eval_data=cfg.eval_data,
                            stats=cfg.stats, at_taps=at_taps, seed=cfg.seed,
                            fine_tune=from_teacher, hints=from_teacher and _has_hidden_layer(copy))
    print(f"pipeline ({preset.name}) for {teacher.path} ({len(teacher.class_names)} classes, "
          f"inputs {teacher.input_shape}): student {student}"
          + (" (starting from the teacher's channels)" if from_teacher else "")
          + f", methods {', '.join(methods)}"
          + "".join(f"\n  left out {m}: {why}" for m, why in left_out.items())
          + f"\n{len(plan)} steps in {root}", flush=True)
    started = time.monotonic()
    seconds = _run_steps(plan, root, cfg)
    print(f"\n[pipeline {len(plan) + 1}/{len(plan) + 1}] report: accuracies or agreement, "
          "sizes, CPU latencies", flush=True)
    student_init = "teacher" if from_teacher else "random"
    report = any_report.write(root, preset.name, teacher, student, methods, left_out, eval_data,
                              seed=cfg.seed, student_init=student_init)
    result = {"preset": preset.name, "teacher": teacher.path, "student": student,
              "student_init": student_init,
              "methods": methods, "left_out": left_out, "step_seconds_this_session": seconds,
              "seconds_this_session": round(time.monotonic() - started, 1),
              "report": os.path.join(root, "report.html"), "best": report["best"],
              "test_accuracies": {r["name"]: r["test_accuracy"] for r in report["rows"]},
              "teacher_agreements": {r["name"]: r["teacher_agreement"] for r in report["rows"]
                                     if "teacher_agreement" in r}}
    run_dir.write_result(result)
    for row in report["rows"]:
        score = (f"{100 * row['test_accuracy']:.2f} %" if row["test_accuracy"] is not None
                 else "no real-data accuracy")
        if "teacher_agreement" in row:
            score += f", {100 * row['teacher_agreement']:.1f} % agreement with the teacher"
        print(f"{row['name']:>34}: {score}", flush=True)
    print(f"report: {result['report']}", flush=True)
    return result


def run(cfg) -> dict:
    preset = preset_of(cfg)
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    if not _is_demo(cfg):
        return _run_any_teacher(cfg, preset.name, run_dir)
    teacher, epochs = _check_teacher(cfg.teacher) if cfg.teacher else (None, None)
    run_dir.claim(cfg)
    root = run_dir.path
    plan = steps_lib.plan(preset, root, teacher, seed=cfg.seed, student_init=cfg.student_init,
                          teacher_epochs=epochs)
    teacher = teacher or plan[0].run_dir(root)
    print(f"pipeline ({preset.name}): {len(plan)} steps in {root}; the students start from "
          + ("the teacher's channels" if cfg.student_init == "teacher" else "random weights"),
          flush=True)
    started = time.monotonic()
    seconds = _run_steps(plan, root, cfg)
    print(f"\n[pipeline {len(plan) + 1}/{len(plan) + 1}] report: accuracies, sizes, CPU "
          "latencies and figures", flush=True)
    report = report_lib.write(root, preset, teacher, seed=cfg.seed,
                              student_init=cfg.student_init)
    result = {"preset": preset.name, "teacher": teacher, "student_init": cfg.student_init,
              "step_seconds_this_session": seconds,
              "seconds_this_session": round(time.monotonic() - started, 1),
              "report": os.path.join(root, "report.html"),
              "test_accuracies": {row["name"]: row["test_accuracy"] for row in report["rows"]},
              "zskt_mte": report["zskt_mte"]}
    run_dir.write_result(result)
    for row in report["rows"]:
        print(f"{row['name']:>34}: {100 * row['test_accuracy']:.2f} %", flush=True)
    print(f"report: {result['report']}", flush=True)
    return result
