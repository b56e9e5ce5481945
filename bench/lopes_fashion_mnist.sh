#!/usr/bin/env bash
# Issue 5 benchmark: Lopes et al. (2017) data-free KD on the full Fashion-MNIST.
# hinton1200 -> hinton800 and lenet -> lenet_half; for each, the teacher and a student trained
# on the real images, compute_stats, then each objective: optimize_dataset + distill (soft-target
# CE at T = 8). Prints one Markdown table: student test accuracy next to the teacher's and the
# real-data student's, reconstruction throughput (image-steps/s), stats.npz size.
#
# Run by hand from anywhere; every step is resumable (run it again to continue). The paper's
# setting (the defaults) takes about 40 hours on a shared 2-core CPU: see README.md, Lopes section for the estimate
# and the reduced setting that fits about an hour:
#   BATCHES_PER_CLASS=5 STEPS=300 TEACHER_EPOCHS=3 bench/lopes_fashion_mnist.sh
#
# Environment (defaults = the paper's values):
#   BATCHES_PER_CLASS  batches of 64 images reconstructed per class (100: 64,000 images)
#   STEPS              Adam steps per batch (1000)
#   DISTILL_EPOCHS     student epochs on the reconstruction (30)
#   TEACHER_EPOCHS     epochs of the teachers and real-data students (10)
#   PAIRS              "teacher:student ..." ("hinton1200:hinton800 lenet:lenet_half")
#   OBJECTIVES         ("top_layer all_layers spectral_all_layers spectral_layer_pairs")
#   ROOT               where the runs go (runs/bench/lopes)
set -euo pipefail
cd "$(dirname "$0")/.."

BATCHES_PER_CLASS=${BATCHES_PER_CLASS:-100}
STEPS=${STEPS:-1000}
DISTILL_EPOCHS=${DISTILL_EPOCHS:-30}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-10}
PAIRS=${PAIRS:-"hinton1200:hinton800 lenet:lenet_half"}
OBJECTIVES=${OBJECTIVES:-"top_layer all_layers spectral_all_layers spectral_layer_pairs"}
ROOT=${ROOT:-runs/bench/lopes}
SETTING="b${BATCHES_PER_CLASS}_s${STEPS}_e${DISTILL_EPOCHS}"
DATA="--dataset=fashion_mnist --holdout_first=5000"

run() {  # one step, then its wall-clock time (a finished step takes seconds: it is skipped)
  local start=$SECONDS
  python -m zskd_tf.main --verbose=epoch "$@"
  echo "[$((SECONDS - start)) s] $*" | tee -a "$ROOT/timings.log"
}
mkdir -p "$ROOT"

for pair in $PAIRS; do
  teacher=${pair%%:*} student=${pair##*:}
  dir=$ROOT/$teacher/e$TEACHER_EPOCHS
  run --procedure=train --model="$teacher" $DATA --epochs="$TEACHER_EPOCHS" --run_dir="$dir/teacher"
  run --procedure=train --model="$student" $DATA --epochs="$TEACHER_EPOCHS" --run_dir="$dir/student"
  run --procedure=compute_stats --teacher="$dir/teacher" --holdout_first=5000 --run_dir="$dir/stats"
  for objective in $OBJECTIVES; do
    run --procedure=optimize_dataset --teacher="$dir/teacher" --stats="$dir/stats" \
        --objective="$objective" --num_samples=$((BATCHES_PER_CLASS * 640)) \
        --synthesis_steps="$STEPS" --run_dir="$dir/$SETTING/$objective"
    run --procedure=distill --teacher="$dir/teacher" --student="$student" \
        --dataset="$dir/$SETTING/$objective/$objective.npz" --loss=soft_ce --temperature=8 \
        --epochs="$DISTILL_EPOCHS" --run_dir="$dir/$SETTING/distill_$objective"
  done
done

python - "$ROOT" "$TEACHER_EPOCHS" "$SETTING" "$PAIRS" "$OBJECTIVES" <<'PY'
import json, os, sys
root, epochs, setting, pairs, objectives = sys.argv[1:]

def result(*parts):
    path = os.path.join(*parts, "result.json")
    return json.load(open(path)) if os.path.exists(path) else {}

def pct(r, key="test_accuracy"):
    return f"{100 * r[key]:.2f}" if key in r else "-"

print(f"Fashion-MNIST, teachers/students {epochs} epochs, reconstruction {setting} "
      "(batches per class, steps, distillation epochs)\n")
print("| teacher -> student | teacher | student (real data) | objective | student (data-free) "
      "| reconstruction image-steps/s | optimisation min | stats.npz MB | stats MB per class |")
print("|---|---|---|---|---|---|---|---|---|")
for pair in pairs.split():
    teacher, student = pair.split(":")
    base = os.path.join(root, teacher, f"e{epochs}")
    t, s, stats = result(base, "teacher"), result(base, "student"), result(base, "stats")
    for objective in objectives.split():
        opt = result(base, setting, objective)
        kd = result(base, setting, f"distill_{objective}")
        print(f"| {teacher} -> {student} | {pct(t)} | {pct(s)} | {objective} | {pct(kd)} "
              f"| {opt.get('image_steps_per_sec', '-')} "
              f"| {opt.get('optimisation_seconds', 0) / 60:.1f} "
              f"| {stats.get('stats_file_bytes', 0) / 1e6:.1f} "
              f"| {stats.get('stats_bytes_per_class', 0) / 1e6:.2f} |")
PY
