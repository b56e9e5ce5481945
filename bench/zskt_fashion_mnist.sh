#!/usr/bin/env bash
# ZSKT on Fashion-MNIST without any training image: LeNet-5 teacher (32x32x1) -> zero-shot
# LeNet-5-half student (beta 0: attention transfer needs WRNs), N = 4,000 outer iterations of
# 1 generator + 10 student steps on batches of 128, then the transition curves / MTE of the
# student, and of a few-shot KD student (FEWSHOT_RUN, default $BENCH_DIR/fewshot_kd_M100, if
# it exists), against the teacher. GENERATOR_RANGE=teacher (default) squashes the generator's
# output into the teacher's [0, 1] input range (--generator_range=teacher); GENERATOR_RANGE=free
# is the paper's unbounded output. Run by hand; do not run in CI.
#
# Cost: one iteration of LeNet-5 -> LeNet-5-half is dominated by the generator (~0.46 GMAC per
# sample per iteration): 0.55 s on the idle 2-core CPU, so ~37 min for the 4,000 iterations
# (about twice that while another job shares the cores), ~5 min for the teacher if it must be
# trained, a few minutes for the curves (300 images x 9 targets x K = 100).
#
#   bench/zskt_fashion_mnist.sh                             # products in runs/bench/
#   QUICK=1 BENCH_DIR=/tmp/b bench/zskt_fashion_mnist.sh    # a minutes-long smoke version
#
# The teacher is $BENCH_DIR/lenet5_fashion_mnist (shared with bench/zskd_fashion_mnist.sh) when
# it exists, else it is trained there with flags/teachers/lenet5_fashion_mnist.cfg. Every step
# is resumable: run the script again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
teacher=$out/lenet5_fashion_mnist
range=${GENERATOR_RANGE:-teacher}  # teacher: generator output squashed into [0, 1]; free: the paper's
suffix=$([ "$range" = teacher ] && echo _range || true)
student=$out/zskt_fashion_mnist/lenet5_half$suffix
curves=$out/zskt_fashion_mnist/curves$suffix
fewshot=${FEWSHOT_RUN:-$out/fewshot_kd_M100}  # a few-shot KD student of the same teacher
fewshot_curves=$out/zskt_fashion_mnist/curves_fewshot
teacher_flags=() zero_shot_flags=(--iterations="${ITERATIONS:-4000}") curve_flags=(--num_images=300)
if [ "${QUICK:-0}" = 1 ]; then  # tiny sizes: checks the script, not the method
  teacher_flags=(--epochs=1 --max_train_examples=2000)
  zero_shot_flags=(--iterations=20 --batch_size=32 --max_test_examples=1000)
  curve_flags=(--num_images=20 --adversarial_steps=10 --max_test_examples=1000)
fi

zskd() { python -m zskd_tf.main "$@" --verbose=epoch; }

if [ ! -f "$teacher/result.json" ]; then
  zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$teacher" \
    "${teacher_flags[@]}"
fi
zskd --procedure=zero_shot --teacher="$teacher" --student=lenet5_half --dataset=fashion_mnist \
  --beta=0 --seeds=0 --generator_range="$range" --run_dir="$student" "${zero_shot_flags[@]}"
zskd --procedure=transition_curves --teacher="$teacher" --student_run="$student/seed_0" \
  --dataset=fashion_mnist --run_dir="$curves" "${curve_flags[@]}"
python tools/plot_transition_curves.py --run_dir="$curves" --out="$curves/curves.png"
if [ -f "$fewshot/result.json" ]; then  # the same measurement on the few-shot KD student
  zskd --procedure=transition_curves --teacher="$teacher" --student_run="$fewshot" \
    --dataset=fashion_mnist --run_dir="$fewshot_curves" "${curve_flags[@]}"
  python tools/plot_transition_curves.py --run_dir="$fewshot_curves" \
    --out="$fewshot_curves/curves.png"
fi

python - "$out" "${student#"$out"/}" <<'PY'
import json, os, sys
out, student_dir = sys.argv[1:]
def result(path):
    with open(os.path.join(out, path, "result.json")) as f:
        return json.load(f)
teacher, student = result("lenet5_fashion_mnist"), result(student_dir)
seed = result(f"{student_dir}/seed_0")
curves = result(student_dir.replace("lenet5_half", "curves"))
fewshot = os.path.join(out, "zskt_fashion_mnist/curves_fewshot")
print(f"\nZSKT on Fashion-MNIST, LeNet-5 (teacher {teacher['test_accuracy']:.2%}) -> LeNet-5-half, "
      f"no training image")
print(f"zero-shot student: {student['test_accuracy']:.2%} after "
      f"{student['zero_shot']['iterations']} iterations "
      f"({seed['train_seconds_this_session'] / 3600:.2f} h in the last session)")
print(f"MTE student vs teacher: {curves['mte']:.3f} ({curves['num_images']} images, "
      f"K = {curves['adversarial_steps']})")
if os.path.exists(os.path.join(fewshot, "result.json")):
    few = result("zskt_fashion_mnist/curves_fewshot")
    print(f"MTE few-shot KD student vs teacher: {few['mte']:.3f} ({few['student_run']})")
PY
