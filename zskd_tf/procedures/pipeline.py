"""``--procedure=pipeline``: teacher -> ZSKD, Lopes et al. and ZSKT students -> exports -> report.

``--quick`` (the default) runs every method at a small scale in minutes on a CPU; ``--full``
uses the benchmark settings; ``--preset=smoke`` runs seconds-long steps (tests). Each step is ``python -m zskd_tf.main`` in its own run directory
under ``--run_dir`` (see :mod:`zskd_tf.pipeline.steps`), with its output shown as it runs: a
finished step is reused, an interrupted one resumes, a step refused for bad input stops the
pipeline with that step's error and exit status. ``--teacher=RUN`` reuses a LeNet-5 Fashion-MNIST teacher instead of
training one. The report (``report.html``, ``report.json``, ``report/*.png``) is written last.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from zskd_tf.errors import UserError
from zskd_tf.pipeline import report as report_lib
from zskd_tf.pipeline import steps as steps_lib
from zskd_tf.procedures.common import finished_result
from zskd_tf.runtime.run_dir import RunDir

# Flags handed on to every step when the user gave them.
PASSED_ON = ("data_dir", "seed", "deterministic", "strategy", "logical_cpus",
             "checkpoint_every_secs")


def preset_of(cfg) -> steps_lib.Preset:
    chosen = {name for name in ("quick", "full") if getattr(cfg, name)}
    if cfg.preset:
        chosen.add(cfg.preset)
    if len(chosen) > 1:
        raise UserError(f"give one preset, not {' and '.join(sorted(chosen))}")
    return steps_lib.PRESETS[chosen.pop() if chosen else "quick"]


def _check_teacher(path: str) -> str:
    info = os.path.join(path, "model_info.json")
    if not os.path.exists(os.path.join(path, "result.json")) or not os.path.exists(info):
        raise UserError(f"--teacher={path} is not a finished zskd_tf training run (no "
                        "result.json / model_info.json); leave --teacher out to train one")
    from zskd_tf import model_io
    meta = model_io.read_info(path)
    if (meta.get("model"), meta.get("dataset")) != (steps_lib.TEACHER_MODEL, steps_lib.DATASET):
        raise UserError(f"--teacher={path} is a {meta.get('model')} on {meta.get('dataset')}; "
                        f"the pipeline needs a {steps_lib.TEACHER_MODEL} on {steps_lib.DATASET}")
    return os.path.abspath(path)


def _command(step: steps_lib.Step, root: str, cfg) -> list[str]:
    passed = [f"--{name}={getattr(cfg, name)}" for name in PASSED_ON if name in cfg.present]
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


def run(cfg) -> dict:
    preset = preset_of(cfg)
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    teacher = _check_teacher(cfg.teacher) if cfg.teacher else None
    run_dir.claim(cfg)
    root = run_dir.path
    plan = steps_lib.plan(preset, root, teacher)
    teacher = teacher or plan[0].run_dir(root)
    print(f"pipeline ({preset.name}): {len(plan)} steps in {root}", flush=True)
    started = time.monotonic()
    seconds = {step.name: round(_run_step(i, len(plan) + 1, step, root, cfg), 1)
               for i, step in enumerate(plan, 1)}
    print(f"\n[pipeline {len(plan) + 1}/{len(plan) + 1}] report: accuracies, sizes, CPU "
          "latencies and figures", flush=True)
    report = report_lib.write(root, preset, teacher)
    result = {"preset": preset.name, "teacher": teacher, "step_seconds_this_session": seconds,
              "seconds_this_session": round(time.monotonic() - started, 1),
              "report": os.path.join(root, "report.html"),
              "test_accuracies": {row["name"]: row["test_accuracy"] for row in report["rows"]},
              "zskt_mte": report["zskt_mte"]}
    run_dir.write_result(result)
    for row in report["rows"]:
        print(f"{row['name']:>34}: {100 * row['test_accuracy']:.2f} %", flush=True)
    print(f"report: {result['report']}", flush=True)
    return result
