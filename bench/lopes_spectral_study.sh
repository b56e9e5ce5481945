#!/usr/bin/env bash
# Lopes et al.'s spectral objectives on a validation split: which design choices move them
# against all_layers? (issue 22 item 2; the study's tables: docs/guide/lopes.md,
# "Per-example records and the basis, measured (validation split, 2026-12-05)").
#
# Honest selection: the teacher (LeNet, 10 epochs, the paper's recipe) never sees the first
# 5,000 Fashion-MNIST training images (--holdout_first=5000), the statistics are computed on the
# other 55,000, and every student is scored on those 5,000 (--split=holdout). The test set is not
# read.
#
# Scale of a row: optimize_dataset with NUM (3,200) images x STEPS (300) Adam steps, then a
# 30-epoch lenet_half student (soft-target cross-entropy at T = 8, the paper's distillation).
# About 3 min per row on the 2-core CPU with two rows at a time. Run by hand:
#
#   bench/lopes_spectral_study.sh               # every row, products in runs/val/lopes
#   bench/lopes_spectral_study.sh records       # rows whose name matches the regex "records"
#   SEED=1 bench/lopes_spectral_study.sh        # another seed
#   PAIR=hinton bench/lopes_spectral_study.sh   # the paper's fully connected pair instead:
#       hinton1200 -> hinton800, the teacher trained at Adam 1e-4 (the paper's 1e-3 collapses
#       on Fashion-MNIST: docs/guide/lopes.md); products in runs/val/lopes_hinton_lr1e-4
#
# Statistics (one compute_stats run each, shared by the rows that name it):
#   k0.1: --spectral_keep=0.1 (the paper's 10 %);  k1: every coefficient;
#   ...and _records: --spectral_records=examples (every training example's own kept
#   coefficients; the spectral objectives then rebuild their targets from drawn examples).
# Measured 2026-12-05 (SEED=0 and 1; PAIR=hinton SEED=0, 1, 2 on 2026-12-06): see the guide's tables.
#
# Prints one line per row: its name and the student's holdout accuracy (final epoch).
set -euo pipefail
cd "$(dirname "$0")/.."
case ${PAIR:-lenet} in
  lenet) out=${BENCH_DIR:-runs/val}/lopes; teacher_model=lenet; student=lenet_half
         teacher_flags=() ;;
  hinton) out=${BENCH_DIR:-runs/val}/lopes_hinton_lr1e-4; teacher_model=hinton1200
          student=hinton800; teacher_flags=(--learning_rate=1e-4) ;;
  *) echo "PAIR must be lenet or hinton" >&2; exit 2 ;;
esac
seed=${SEED:-0}
num=${NUM:-3200}
steps=${STEPS:-300}
only=${1:-}
holdout=(--split=holdout --holdout_first=5000)

# row name | statistics | objective
rows=(
  "all_layers|k0.1|all_layers"
  "spectral_all_layers|k0.1|spectral_all_layers"
  "spectral_layer_pairs|k0.1|spectral_layer_pairs"
  "spectral_all_layers_keep1|k1|spectral_all_layers"
  "spectral_layer_pairs_keep1|k1|spectral_layer_pairs"
  "spectral_all_layers_records|k0.1_records|spectral_all_layers"
  "spectral_layer_pairs_records|k0.1_records|spectral_layer_pairs"
  "spectral_all_layers_records_keep1|k1_records|spectral_all_layers"
  "spectral_layer_pairs_records_keep1|k1_records|spectral_layer_pairs"
)

lopes() { python -m zskd_tf.main "$@" --verbose=quiet; }
teacher=$out/teacher
lopes --procedure=train --model=$teacher_model --dataset=fashion_mnist --holdout_first=5000 \
  --epochs=10 "${teacher_flags[@]}" --run_dir="$teacher"

stats() {  # stats NAME: the compute_stats run of that name (made once)
  local name=$1 keep=${1%%_*} records=none
  [[ $name == *_records ]] && records=examples
  lopes --procedure=compute_stats --teacher="$teacher" --holdout_first=5000 \
    --spectral_keep="${keep#k}" --spectral_records=$records --run_dir="$out/stats_$name" >&2
  echo "$out/stats_$name"
}

for row in "${rows[@]}"; do
  IFS='|' read -r name statistics objective <<<"$row"
  [[ -z $only || $name =~ $only ]] || continue
  run=$out/$name/seed$seed
  lopes --procedure=optimize_dataset --teacher="$teacher" --stats="$(stats "$statistics")" \
    --objective="$objective" --num_samples="$num" --synthesis_steps="$steps" --seed="$seed" \
    --run_dir="$run/images"
  lopes --procedure=distill --teacher="$teacher" --student=$student \
    --dataset="$run/images/$objective.npz" --loss=soft_ce --temperature=8 --epochs=30 \
    --seed="$seed" "${holdout[@]}" --run_dir="$run/student"
  python - "$name" "$run/student/result.json" <<'PY'
import json, sys
print(f"{sys.argv[1]}: {100 * json.load(open(sys.argv[2]))['test_accuracy']:.2f} % (holdout)")
PY
done
