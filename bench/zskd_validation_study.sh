#!/usr/bin/env bash
# ZSKD recipe study on a validation split: which synthesis and student settings make the best
# LeNet-5-half student from an ordinarily trained LeNet-5 teacher on Fashion-MNIST?
#
# Honest selection: the teachers here never see the first 10,000 Fashion-MNIST training images
# (--holdout_first=10000), and every row is scored on those 10,000 (evaluate --split=holdout).
# The test set is not read for any choice; the winning recipe is then run once on the real
# teacher (trained on all 60,000) and reported on the test set (bench/zskd_fashion_mnist.sh).
#
# Scale of a row: NUM (6,000) impressions x STEPS (400) Adam steps in batches of 500, then a
# student with flags/zskd/fashion_mnist_student.cfg (plus the row's student flags); rows with
# the same teacher and impression flags share their impressions. A few minutes per row on the
# idle 2-core CPU. Run by hand:
#
#   bench/zskd_validation_study.sh              # every row, products in runs/val/zskd
#   bench/zskd_validation_study.sh lr1          # rows whose name contains "lr1"
#   SEED=1 bench/zskd_validation_study.sh lr1   # the same rows with another seed
#   NUM=3000 STEPS=100 bench/zskd_validation_study.sh   # a smaller scale
#
# Teachers (trained here when absent, with flags/teachers/lenet5_fashion_mnist.cfg):
#   e20: the recipe's 20 epochs; e5: 5 epochs (the --quick pipeline's teacher).
# Students: plain (20 epochs on the stored targets), affine_e120 (120 epochs of affine views
# scored by the teacher online), affine_e120_init (the same, starting from the teacher's
# strongest channels with a cosine schedule: --init_from_teacher --lr_schedule=cosine),
# affine_e120_init_hint (the same with channel hints at the last tap, --hint_weight=1000).
# Measured 2026-12-05 (NUM=6000, SEED=0 and 1, e20 teacher 91.09 % on the holdout):
# sseung_lr3 affine_e120 64.07 / 65.59 %, affine_e120_init 71.54 / 72.07 %,
# affine_e120_init_hint 74.80 / 74.71 % (docs/zskd_recipe_study.md, "Channel hints (2026-12-05)").
#
# Prints one line per row: teacher, impressions, student, the impressions' mean pixel, the
# student's holdout accuracy (final epoch).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/val}
seed=${SEED:-0}
steps=${STEPS:-400}
num=${NUM:-6000}
only=${1:-}

paper=(--impression_init=uniform --impression_l2=0 --synthesis_lr=0.001)
plain=(--augment=none --targets=stored --epochs=20)
sseung=(--impression_init=normal --impression_l2=1e-3)
affine=(--augment=affine --targets=teacher --epochs=120)
# impressions name | teacher | impression flags | student name | student flags
rows=(
  "paper|e20|${paper[*]}|plain|${plain[*]}"
  "sseung_lr1|e20|${sseung[*]} --synthesis_lr=1.0|plain|${plain[*]}"
  "sseung_lr3|e20|${sseung[*]} --synthesis_lr=3.0|plain|${plain[*]}"
  "sseung_lr0.1|e20|${sseung[*]} --synthesis_lr=0.1|plain|${plain[*]}"
  "sseung_lr1|e20|${sseung[*]} --synthesis_lr=1.0|affine_e120|--augment=affine --targets=teacher --epochs=120"
  "paper|e20|${paper[*]}|affine_e120|--augment=affine --targets=teacher --epochs=120"
  "sseung_lr3|e20|${sseung[*]} --synthesis_lr=3.0|affine_e120|--augment=affine --targets=teacher --epochs=120"
  "sseung_lr1_l2x10|e20|--impression_init=normal --impression_l2=1e-2 --synthesis_lr=1.0|plain|${plain[*]}"
  "sseung_lr1_uniform|e20|--impression_init=uniform --impression_l2=1e-3 --synthesis_lr=1.0|plain|${plain[*]}"
  "paper|e5|${paper[*]}|plain|${plain[*]}"
  "paper|e5|${paper[*]}|affine_e120|--augment=affine --targets=teacher --epochs=120"
  "sseung_lr3|e5|${sseung[*]} --synthesis_lr=3.0|affine_e120|--augment=affine --targets=teacher --epochs=120"
  "sseung_lr1|e5|${sseung[*]} --synthesis_lr=1.0|plain|${plain[*]}"
  "sseung_lr3|e20|${sseung[*]} --synthesis_lr=3.0|affine_e120_init|${affine[*]} --init_from_teacher --lr_schedule=cosine"
  "sseung_lr3|e20|${sseung[*]} --synthesis_lr=3.0|affine_e120_init_hint|${affine[*]} --init_from_teacher --lr_schedule=cosine --hint_weight=1000"
)

zskd() { python -m zskd_tf.main "$@" --verbose=quiet; }
for row in "${rows[@]}"; do
  IFS='|' read -r name teacher impression student_name student <<<"$row"
  [[ -z $only || $name == *$only* || $teacher == *$only* || $student_name == *$only* ]] || continue
  t=$out/lenet5_$teacher
  zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --holdout_first=10000 \
    --epochs="${teacher#e}" --run_dir="$t"
  di=$out/zskd/${teacher}_${name}_n${num}_s${steps}_seed$seed
  # shellcheck disable=SC2086
  zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$t" --num_samples="$num" \
    --synthesis_batch_size=500 --synthesis_steps="$steps" --seed="$seed" $impression \
    --run_dir="$di/impressions"
  student_dir=$di/student_$student_name
  # shellcheck disable=SC2086
  # A random start with the recipe's schedule unless the row says otherwise (the flagfile's
  # student starts from the teacher's channels since 2026-12-05; the later flag wins).
  zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$t" --seed="$seed" \
    --dataset="$di/impressions/impressions.npz" --run_dir="$student_dir" \
    --noinit_from_teacher --lr_schedule=step $student
  zskd --procedure=evaluate --model_path="$student_dir" --split=holdout \
    --holdout_first=10000 --run_dir="$student_dir/holdout"
  python - "$di" "$student_dir" "$teacher" "$name" "$student_name" <<'PY'
import json, sys
import numpy as np
di, student, teacher, name, student_name = sys.argv[1:]
x = np.load(f"{di}/impressions/impressions.npz")["x"]
acc = json.load(open(f"{student}/holdout/result.json"))["accuracy"]
print(f"{teacher:>4} {name:<20} {student_name:<12} pixel mean {x.mean():.3f}  "
      f"student holdout {acc:.2%}  ({student})", flush=True)
PY
done
