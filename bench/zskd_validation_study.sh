#!/usr/bin/env bash
# ZSKD recipe study on a validation split: which synthesis and student settings make the best
# LeNet-5-half student from an ordinarily trained LeNet-5 teacher on Fashion-MNIST?
#
# Honest selection: the teachers here never see the first 10,000 Fashion-MNIST training images
# (--holdout_first=10000), and every row is scored on those 10,000 (evaluate --split=holdout).
# The test set is not read for any choice; the winning recipe is then run once on the real
# teacher (trained on all 60,000) and reported on the test set (bench/zskd_fashion_mnist.sh).
#
# Scale of a row: 6,000 impressions x STEPS Adam steps in batches of 500, then a student with
# flags/zskd/fashion_mnist_student.cfg (plus the row's student flags). A few minutes per row on
# the idle 2-core CPU. Run by hand:
#
#   bench/zskd_validation_study.sh              # every row, products in runs/val/zskd
#   bench/zskd_validation_study.sh lr1          # rows whose name contains "lr1"
#   SEED=1 bench/zskd_validation_study.sh lr1   # the same rows with another seed
#
# Teachers (trained here when absent, with flags/teachers/lenet5_fashion_mnist.cfg):
#   e20: the recipe's 20 epochs; e5: 5 epochs (the --quick pipeline's teacher).
# Prints one line per row: teacher, row, the impressions' mean pixel, the student's holdout
# accuracy (final epoch).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/val}
seed=${SEED:-0}
steps=${STEPS:-400}
only=${1:-}

paper=(--synthesis_lr=0.001)
sseung=(--impression_init=normal --impression_l2=1e-3)
# name | teacher | impression flags | student flags
rows=(
  "paper|e20|${paper[*]}|"
  "sseung_lr0.1|e20|${sseung[*]} --synthesis_lr=0.1|"
  "sseung_lr1|e20|${sseung[*]} --synthesis_lr=1.0|"
  "sseung_lr3|e20|${sseung[*]} --synthesis_lr=3.0|"
  "sseung_lr1_l2x10|e20|--impression_init=normal --impression_l2=1e-2 --synthesis_lr=1.0|"
  "sseung_lr1_uniform|e20|--impression_l2=1e-3 --synthesis_lr=1.0|"
  "sseung_lr1_affine_e120|e20|${sseung[*]} --synthesis_lr=1.0|--augment=affine --targets=teacher --epochs=120"
  "paper|e5|${paper[*]}|"
  "sseung_lr1|e5|${sseung[*]} --synthesis_lr=1.0|"
)

zskd() { python -m zskd_tf.main "$@" --verbose=quiet; }
for row in "${rows[@]}"; do
  IFS='|' read -r name teacher impression student <<<"$row"
  [[ -z $only || $name == *$only* || $teacher == *$only* ]] || continue
  t=$out/lenet5_$teacher
  zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --holdout_first=10000 \
    --epochs="${teacher#e}" --run_dir="$t"
  row_dir=$out/zskd/${teacher}_${name}_s${steps}_seed$seed
  # shellcheck disable=SC2086
  zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$t" --num_samples=6000 \
    --synthesis_batch_size=500 --synthesis_steps="$steps" --seed="$seed" $impression \
    --run_dir="$row_dir/impressions"
  # shellcheck disable=SC2086
  zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$t" --seed="$seed" \
    --dataset="$row_dir/impressions/impressions.npz" --run_dir="$row_dir/student" $student
  zskd --procedure=evaluate --model_path="$row_dir/student" --split=holdout \
    --holdout_first=10000 --run_dir="$row_dir/holdout"
  python - "$row_dir" "$teacher" "$name" <<'PY'
import json, sys
import numpy as np
row, teacher, name = sys.argv[1:]
x = np.load(f"{row}/impressions/impressions.npz")["x"]
acc = json.load(open(f"{row}/holdout/result.json"))["accuracy"]
print(f"{teacher:>4} {name:<24} pixel mean {x.mean():.3f}  student holdout {acc:.2%}  ({row})",
      flush=True)
PY
done
