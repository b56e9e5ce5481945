"""``--procedure=transition_curves``: belief matching of a student and its teacher
(docs/methods/zskt.md, "Transition curves and mean transition error (MTE)").

Attacks ``--student_run`` (network A) towards each wrong class on ``--num_images`` test images
where A and ``--teacher`` (network B) agree, for ``--adversarial_steps`` steps of size
``--step_size``, recording both networks' probability of the target class before each step.

Products: ``curves.npz`` (``netA`` and ``netB`` float32 (N, C-1, K), ``indices`` into the
dataset's test split, ``labels``, ``targets`` (N, C-1)) and ``result.json`` with ``mte``.
The images are processed in chunks saved under ``batches/``: a killed run resumes with the
first unfinished chunk. Runs on one device (``--strategy`` is not used).
"""
from __future__ import annotations

import os

import numpy as np

from zskd_tf import model_io
from zskd_tf.data import datasets, sampling
from zskd_tf.data import preprocess as pp
from zskd_tf.errors import UserError
from zskd_tf.procedures.common import finished_result
from zskd_tf.runtime import atomic
from zskd_tf.runtime.batch_store import BatchStore
from zskd_tf.runtime.run_dir import RunDir
from zskd_tf.zskt import transition_attack as tc

IMAGES_PER_CHUNK = 50  # (C-1) x 50 attacked copies at once; fixed, so resumption lines up


def _test_split(cfg, raw, spec: pp.InputSpec):
    """(true test indices, raw images, labels) of the evaluation subset."""
    if tuple(raw.image_shape) != tuple(spec.raw_shape):
        raise UserError(f"--dataset={cfg.dataset} has {tuple(raw.image_shape)} images but the "
                        f"networks take {tuple(spec.raw_shape)} raw images: give their dataset")
    idx = (np.arange(len(raw.test_x)) if cfg.max_test_examples is None
           else sampling.seeded_subset(len(raw.test_x), cfg.max_test_examples, cfg.seed))
    return idx, raw.test_x[idx], raw.test_y[idx]


def run(cfg) -> dict:
    run_dir = RunDir(cfg.run_dir)
    finished = finished_result(run_dir, cfg)
    if finished:
        return finished
    raw = datasets.load_dataset(cfg.dataset, cfg.data_dir)
    teacher = model_io.load_keras_classifier(cfg.teacher, "--teacher", raw.image_shape)
    student = model_io.load_keras_classifier(cfg.student_run, "--student_run", raw.image_shape)
    if student.spec != teacher.spec:
        raise UserError(f"--student_run={cfg.student_run} and --teacher={cfg.teacher} take "
                        "different inputs (input specs differ); both must see the same images")
    num_classes = int(teacher.model.output_shape[-1])
    if int(student.model.output_shape[-1]) != num_classes or num_classes < 2:
        raise UserError("the student and the teacher must predict the same classes (at least 2)")
    if raw.num_classes != num_classes:
        raise UserError(f"the networks predict {num_classes} classes but --dataset="
                        f"{cfg.dataset} has {raw.num_classes}")
    test_idx, test_x, test_y = _test_split(cfg, raw, teacher.spec)
    pred_a = student.probabilities(test_x).argmax(-1)
    pred_b = teacher.probabilities(test_x).argmax(-1)
    chosen = tc.agreeing_indices(pred_a, pred_b, cfg.num_images, cfg.seed)
    run_dir.claim(cfg)

    inputs = pp.preprocess(test_x[chosen], teacher.spec).numpy()
    labels = test_y[chosen]
    attack = tc.TransitionAttack(student.model, teacher.model, cfg.adversarial_steps,
                                 cfg.step_size)
    store = BatchStore(run_dir.file("batches"), -(-len(chosen) // IMAGES_PER_CHUNK))
    pending = store.pending()
    print(f"transition curves: attacking {cfg.student_run} ({len(chosen)} images x "
          f"{num_classes - 1} targets x {cfg.adversarial_steps} steps of {cfg.step_size}); "
          f"{store.num_batches - len(pending)} of {store.num_batches} chunks already done",
          flush=True)
    for i in pending:
        part = slice(i * IMAGES_PER_CHUNK, (i + 1) * IMAGES_PER_CHUNK)
        p_a, p_b = attack.curves(inputs[part], labels[part], num_classes)
        store.save(i, netA=p_a.astype(np.float32), netB=p_b.astype(np.float32))
        if cfg.verbose != "quiet":
            mte = tc.mean_transition_error(p_a, p_b)
            print(f"chunk {i + 1}/{store.num_batches}: mte {mte:.4f}", flush=True)
    curves = store.assemble()
    with atomic.atomic_path(run_dir.file("curves.npz"), suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, netA=curves["netA"], netB=curves["netB"], indices=test_idx[chosen],
                     labels=labels, targets=tc.target_classes(labels, num_classes))
    result = {"mte": tc.mean_transition_error(curves["netA"], curves["netB"]),
              "num_images": len(chosen), "adversarial_steps": cfg.adversarial_steps,
              "step_size": cfg.step_size, "teacher": cfg.teacher, "student_run": cfg.student_run,
              "dataset": cfg.dataset, "num_test_examples": len(test_x),
              "agreement": float(np.mean(pred_a == pred_b)),
              "student_test_accuracy": float(np.mean(pred_a == test_y)),
              "teacher_test_accuracy": float(np.mean(pred_b == test_y))}
    run_dir.write_result(result)
    print(f"mean transition error {result['mte']:.4f}; curves in "
          f"{os.path.join(run_dir.path, 'curves.npz')}", flush=True)
    return result
