#!/usr/bin/env bash
# The test set, once the choice is made on the validation split: the Lopes et al. student of the
# pipelines (all_layers reconstruction, LeNet-5-half from the teacher's channels, 120 epochs of
# teacher-scored affine views, cosine decay, T = 8) with and without channel hints
# (--hint_weight=100), from the teacher as given: LeNet-5 trained by
# flags/teachers/lenet5_fashion_mnist.cfg (the recipe's 20 epochs, 91.00 %).
#
#   bench/lopes_hints_test.sh                       # 9,600 images x 300 steps, seeds 0 and 1
#   NUM=3200 STEPS=300 SEEDS="0 1 2" bench/lopes_hints_test.sh
#   TEACHER=runs/pipeline_quick/teacher bench/lopes_hints_test.sh   # another teacher
#
# The rows that chose it: bench/quick_pipeline_validation.sh with TEACHER_EPOCHS=20
# STUDENT_INIT=teacher, rows lopes_affine and lopes_affine_hint100 (docs/quick_pipeline_study.md).
# Prints one line per student: its test accuracy (final epoch) and the teacher's.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench/lopes_hints}
teacher=${TEACHER:-runs/teachers/lenet5_fashion_mnist}
num=${NUM:-9600}
steps=${STEPS:-300}

zskd() { python -m zskd_tf.main "$@" --verbose=quiet; }
[[ -e $teacher/result.json ]] || zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg \
  --run_dir="$teacher"
zskd --procedure=compute_stats --teacher="$teacher" --dataset=fashion_mnist \
  --run_dir="$out/stats"
for seed in ${SEEDS:-0 1}; do
  ds=$out/all_layers_${num}x${steps}_seed$seed
  zskd --procedure=optimize_dataset --teacher="$teacher" --stats="$out/stats" \
    --objective=all_layers --num_samples="$num" --synthesis_steps="$steps" --seed="$seed" \
    --run_dir="$ds"
  for hint in 0 100; do
    s=$out/student_${num}x${steps}_hint${hint}_seed$seed
    zskd --procedure=distill --student=lenet5_half --teacher="$teacher" \
      --dataset="$ds/all_layers.npz" --loss=soft_ce --temperature=8 --targets=teacher \
      --augment=affine --epochs=120 --init_from_teacher --lr_schedule=cosine \
      --hint_weight="$hint" --seed="$seed" --run_dir="$s"
    python - "$s" "$hint" "$seed" <<'PY'
import json, sys
run, hint, seed = sys.argv[1:]
r = json.load(open(f"{run}/result.json"))
print(f"hint_weight {hint:>3} seed {seed}: student test {r['test_accuracy']:.2%} "
      f"(teacher {r['teacher_test_accuracy']:.2%})")
PY
  done
done
