#!/usr/bin/env bash
# ZSKT with the paper's own kind of pair on Fashion-MNIST (32x32x1): a WRN-16-2 teacher ->
# zero-shot WRN-16-1 student with attention transfer (beta 250), the paper's unbounded
# generator (--generator_range=free: WRNs take mean/std-normalised images), 1 generator + 10
# student steps on batches of 128, seed 0, final test accuracy (no best-of-test selection).
# Run by hand; do not run in CI.
#
# Teacher: $BENCH_DIR/wrn-16-2_fashion_mnist, the WRN recipe for WRN_EPOCHS (default 2)
# epochs, shared with bench/distill_fashion_mnist.sh; trained here when absent (~9 min an
# epoch on the idle 2-core Xeon, 150 s on the Zen 5).
# ITERATIONS (default 600): outer iterations N. MIXED_BFLOAT16=1 adds --mixed_bfloat16
# (Xeon: about 3.2 s per iteration against 4.3 s in float32; Zen 5: 1.6 s). Each setting has its own run
# directory, $BENCH_DIR/zskt_fashion_mnist/wrn-16-1_itN[_bf16]; a killed run continues from
# its last checkpoint when the script is run again. FREEZE_GENERATOR_AT=F adds
# --freeze_generator_at=F (the generator stops learning at that fraction of the iterations;
# directory suffix _freezeF). GENERATOR_BN_WEIGHT=W adds --generator_bn_weight=W (the teacher's
# BN statistics as a prior in the generator's loss; suffix _bnW). AUGMENT=affine adds
# --augment=affine (each student step on its own random views of the generated images, scored
# by the teacher anew: the main job's ZSKT step; suffix _affine). SEEDS (default 0): --seeds, e.g. SEEDS=0,1,2 (mean and std in
# result.json; directory suffix _seedsS unless 0).
# COMPARE=1 then makes the students the zero-shot one is compared with, all of the same teacher:
#   - ZSKD: 6,000 data impressions (100 steps, sseung0703's synthesis, batch 500,
#     --bfloat16_input_gradient; 24-33 min on the idle Xeon, 13 min on the Zen 5) and a WRN-16-1
#     student on them for 100 epochs with --augment=affine --targets=teacher (the best ZSKD
#     student recipe of the LeNet study; 0.84 h on the Xeon, 17 min on the Zen 5);
#   - few-shot KD+AT: WRN-16-1 on M = 100 real images per class, batch 64, 192 epochs, beta 1000;
#   - transition curves / MTE (100 images, K = 100) of the first seed's zero-shot student and of
#     the few-shot student.
#
#   ITERATIONS=600 MIXED_BFLOAT16=1 bench/zskt_fashion_mnist_wrn.sh
#   ITERATIONS=1200 MIXED_BFLOAT16=1 FREEZE_GENERATOR_AT=0.85 bench/zskt_fashion_mnist_wrn.sh
#   ITERATIONS=1200 MIXED_BFLOAT16=1 FREEZE_GENERATOR_AT=0.85 SEEDS=2 COMPARE=1 bench/zskt_fashion_mnist_wrn.sh
#   ITERATIONS=1200 MIXED_BFLOAT16=1 FREEZE_GENERATOR_AT=0.85 GENERATOR_BN_WEIGHT=0.01 SEEDS=1 bench/zskt_fashion_mnist_wrn.sh   # 88.19 %
#   QUICK=1 COMPARE=1 BENCH_DIR=/tmp/b bench/zskt_fashion_mnist_wrn.sh   # a smoke version
#
# STUDENT_INIT=teacher: the student is the half-width copy of the teacher (zskd_tf's
# narrower_student: 173,666 trainable parameters against 174,778 for the zoo wrn-16-1), from the
# teacher's most important channels (--init_from_teacher; directory suffix _init). The zoo's
# wrn-16-1 cannot start so: it has no projection shortcut in its first block.
# VALIDATION=1: the choice of a recipe. The teacher is trained without the first 10,000
# training images (--holdout_first=10000, $BENCH_DIR/wrn-16-2_fashion_mnist_val) and the
# students are scored on exactly those images (--split=holdout; suffix _val); the test set is not
# read. (The runs of 2026-12-05 scored the same images through an .npz and --eval_data; a run
# directory of theirs is refused by this version as made with other flags.)
#   VALIDATION=1 ITERATIONS=600 MIXED_BFLOAT16=1 GENERATOR_BN_WEIGHT=0.01 STUDENT_INIT=teacher \
#     bench/zskt_fashion_mnist_wrn.sh
# Measured 2026-12-05 (seed 0, 600 iterations, the BN prior): validation 87.98 % from the
# teacher's channels against 87.65 % for the random wrn-16-1 (85 % first at iteration 102
# against 120); test set, the 90.61 % teacher, STUDENT_INIT=teacher SEEDS=0,1: see
# docs/benchmarks.md, "Starting from the teacher's channels, 600 iterations (issue 22, item 3)":
# 86.97 / 87.24 %, 85 % first at iterations 156 / 150.
# With AUGMENT=affine (validation, seed 0, same teacher): 87.81 % against 87.98 % without,
# 85 % first at iteration 90 against 102; not chosen.
# Each run ends with its first evaluation at >= 85 %: the iteration, and the seconds of
# training up to it (evaluations excluded; a resumed run counts each session's).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
iterations=${ITERATIONS:-600}
[ "${QUICK:-0}" = 1 ] && iterations=4
teacher=$out/wrn-16-2_fashion_mnist
student=$out/zskt_fashion_mnist/wrn-16-1_it$iterations
student_model=wrn-16-1
validation=${VALIDATION:-0}
eval_flags=()
if [ "$validation" = 1 ]; then
  teacher+=_val
  student+=_val
  eval_flags=(--split=holdout --holdout_first=10000)
fi
seeds=${SEEDS:-0}
first_seed=${seeds%%,*}
teacher_flags=(--epochs="${WRN_EPOCHS:-2}") zero_shot_flags=(--iterations="$iterations")
zskd_flags=(--num_samples=6000 --synthesis_steps=100 --synthesis_batch_size=500)
zskd_student_flags=(--epochs=100) fewshot_flags=(--epochs=192) curve_flags=(--num_images=100)
if [ "${MIXED_BFLOAT16:-0}" = 1 ]; then
  zero_shot_flags+=(--mixed_bfloat16)
  student+=_bf16
fi
if [ -n "${FREEZE_GENERATOR_AT:-}" ]; then
  zero_shot_flags+=(--freeze_generator_at="$FREEZE_GENERATOR_AT")
  student+=_freeze$FREEZE_GENERATOR_AT
fi
if [ -n "${GENERATOR_BN_WEIGHT:-}" ]; then
  zero_shot_flags+=(--generator_bn_weight="$GENERATOR_BN_WEIGHT")
  student+=_bn$GENERATOR_BN_WEIGHT
fi
if [ -n "${AUGMENT:-}" ]; then
  zero_shot_flags+=(--augment="$AUGMENT")
  student+=_$AUGMENT
fi
case ${STUDENT_INIT:-random} in
  random) ;;
  teacher)  # the half-width copy, written once the teacher is trained (the path as spelt
    # here is the --student that the measured run directories recorded)
    student+=_init student_model=$teacher/../$(basename "$teacher")_half.keras
    zero_shot_flags+=(--init_from_teacher) ;;
  *) echo "STUDENT_INIT must be random or teacher" >&2; exit 2 ;;
esac
[ "$seeds" = 0 ] || student+=_seeds$seeds
if [ "${QUICK:-0}" = 1 ]; then  # tiny sizes: checks the script, not the method
  teacher_flags=(--epochs=1 --max_train_examples=512)
  zero_shot_flags+=(--batch_size=16 --n_student_steps=2 --max_test_examples=500)
  zskd_flags=(--num_samples=40 --synthesis_steps=3 --synthesis_batch_size=20)
  zskd_student_flags=(--epochs=1 --max_test_examples=500)
  fewshot_flags=(--epochs=4 --samples_per_class=10 --max_test_examples=500)
  curve_flags=(--num_images=5 --adversarial_steps=3 --max_test_examples=500)
fi

zskd() { python -m zskd_tf.main "$@" --verbose=epoch; }

if [ "$validation" = 1 ]; then
  teacher_flags+=(--holdout_first=10000)
fi
zskd --procedure=train --model=wrn-16-2 --dataset=fashion_mnist --run_dir="$teacher" \
  "${teacher_flags[@]}"
if [[ $student_model == *.keras && ! -f $student_model ]]; then
  python -c 'import sys, zskd_tf
zskd_tf.narrower_student(sys.argv[1], 0.5, init="teacher").save(sys.argv[2])' \
    "$teacher" "$student_model"
fi
zskd --procedure=zero_shot --teacher="$teacher" --student="$student_model" \
  --dataset=fashion_mnist --seeds="$seeds" --run_dir="$student" "${eval_flags[@]}" \
  "${zero_shot_flags[@]}"
python - "$teacher" "$student" "$validation" <<'PY'
import json, os, sys
teacher, student = (json.load(open(f"{d}/result.json")) for d in sys.argv[1:3])
scored_on = "the 10,000 held-out images" if sys.argv[3] == "1" else "the test set"
print(f"teacher {teacher['test_accuracy']:.4f} (test set); zero-shot student on {scored_on} "
      f"{student['test_accuracy']:.4f} (std {student['test_accuracy_std']:.4f} over seeds "
      f"{student['seeds']}) after {student['zero_shot']['iterations']} iterations "
      f"(mixed_bfloat16 {student['zero_shot']['mixed_bfloat16']}); {sys.argv[2]}")
for seed in student["seeds"]:
    with open(os.path.join(sys.argv[2], f"seed_{seed}", "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    first = next((i for i, r in enumerate(rows) if r.get("val_accuracy", 0) >= 0.85), None)
    if first is None:
        print(f"seed {seed}: never >= 85 %")
        continue
    seconds = sum(r["train_seconds"] for r in rows[:first + 1])
    print(f"seed {seed}: first >= 85 % at iteration {rows[first]['step']} "
          f"({rows[first]['val_accuracy']:.2%}) after {seconds:.0f} s of training "
          "(evaluations excluded)")
PY
[ "${COMPARE:-0}" = 1 ] || exit 0

compare=$out/zskt_fashion_mnist/wrn-16-1_compare$([ "${QUICK:-0}" = 1 ] && echo _quick || true)
zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$teacher" \
  --impression_init=normal --impression_l2=1e-3 --synthesis_lr=0.1 --bfloat16_input_gradient \
  --run_dir="$compare/zskd_impressions" "${zskd_flags[@]}"
zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$teacher" --student=wrn-16-1 \
  --dataset="$compare/zskd_impressions/impressions.npz" --augment=affine --targets=teacher \
  --noinit_from_teacher --lr_schedule=step --run_dir="$compare/zskd_student" "${zskd_student_flags[@]}"
zskd --procedure=distill --teacher="$teacher" --student=wrn-16-1 --dataset=fashion_mnist \
  --samples_per_class=100 --batch_size=64 --beta=1000 --run_dir="$compare/fewshot_kdat_M100" \
  "${fewshot_flags[@]}"
curves() {  # NAME RUN: the transition curves of the student in RUN, in $compare/curves_NAME
  zskd --procedure=transition_curves --teacher="$teacher" --student_run="$2" \
    --dataset=fashion_mnist --run_dir="$compare/curves_$1" "${curve_flags[@]}"
  python tools/plot_transition_curves.py --run_dir="$compare/curves_$1" \
    --out="$compare/curves_$1/curves.png"
}
curves zero_shot "$student/seed_$first_seed"
curves fewshot "$compare/fewshot_kdat_M100"
python - "$student" "$compare" <<'PY'
import json, sys
student, compare = sys.argv[1:]
def result(path):
    with open(f"{path}/result.json") as f:
        return json.load(f)
curves = {name: result(f"{compare}/curves_{name}") for name in ("zero_shot", "fewshot")}
print(f"{'WRN-16-1 student':>30}  {'test accuracy':>13}  {'MTE':>6}")
zskd, fewshot = result(f"{compare}/zskd_student"), result(f"{compare}/fewshot_kdat_M100")
rows = (("zero-shot (seeds' mean)", result(student), curves["zero_shot"]["mte"]),
        (f"ZSKD, {zskd['num_train_examples']:,} impressions", zskd, None),
        (f"few-shot KD+AT, {fewshot['num_train_examples']:,} images", fewshot,
         curves["fewshot"]["mte"]))
for name, run, mte in rows:
    print(f"{name:>30}  {run['test_accuracy']:>13.2%}  "
          f"{'-' if mte is None else format(mte, '.3f'):>6}")
print(f"zero-shot MTE measured on {curves['zero_shot']['student_run']}")
PY
