#!/usr/bin/env bash
# ZSKT on Fashion-MNIST without any training image: LeNet-5 teacher (32x32x1) -> zero-shot
# LeNet-5-half student (beta 0: attention transfer needs WRNs), N = 4,000 outer iterations of
# 1 generator + 10 student steps on batches of 128, then the transition curves / MTE of the
# student, and of a few-shot KD student of the same teacher (M = 100 real images per class,
# made here if absent), against the teacher. GENERATOR_RANGE=teacher (default) squashes the
# generator's output into the teacher's [0, 1] input range (--generator_range=teacher);
# GENERATOR_RANGE=free is the paper's unbounded output. Run by hand; do not run in CI.
#
# Teacher: TEACHER_EPOCHS=5 (the benchmark's choice, README "Benchmarks") trains LeNet-5 with
# the Fashion-MNIST recipe for 5 epochs in $BENCH_DIR/lenet5_fashion_mnist_e5; TEACHER_EPOCHS=20
# (the recipe's full length) uses $BENCH_DIR/lenet5_fashion_mnist, shared with
# bench/zskd_fashion_mnist.sh. Either is trained there when absent.
#
# Cost: one iteration of LeNet-5 -> LeNet-5-half is dominated by the generator (~0.46 GMAC per
# sample per iteration): 0.55 s on the idle 2-core CPU, so ~37 min for the 4,000 iterations
# (about twice that while another job shares the cores), ~2 min for the teacher if it must be
# trained, a few minutes for the curves (300 images x 9 targets x K = 100).
#
#   bench/zskt_fashion_mnist.sh                             # products in runs/bench/
#   QUICK=1 BENCH_DIR=/tmp/b bench/zskt_fashion_mnist.sh    # a minutes-long smoke version
#
# TEACHER_ADVERSARIAL_EPS=E > 0: the teacher is trained adversarially (--adversarial_eps=E, L2
# PGD; $BENCH_DIR/lenet5_fashion_mnist_eN_pgdE, shared with bench/zskd_fashion_mnist.sh).
# ITERATIONS (default 4000): other values get their own run directories (..._itN).
# Every step is resumable: run the script again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
epochs=${TEACHER_EPOCHS:-5}
eps=${TEACHER_ADVERSARIAL_EPS:-0}  # > 0: an adversarially trained teacher (--adversarial_eps)
teacher_name=lenet5_fashion_mnist$([ "$epochs" = 20 ] || echo "_e$epochs")
[ "$eps" = 0 ] || teacher_name+=_pgd$eps
teacher=$out/$teacher_name
range=${GENERATOR_RANGE:-teacher}  # teacher: generator output squashed into [0, 1]; free: the paper's
tag=$([ "$range" = teacher ] && echo _range || true)$([ "$epochs" = 20 ] || echo "_e$epochs")
[ "$eps" = 0 ] || tag+=_pgd$eps
[ "${ITERATIONS:-4000}" = 4000 ] || tag+=_it$ITERATIONS
student=$out/zskt_fashion_mnist/lenet5_half$tag
curves=$out/zskt_fashion_mnist/curves$tag
fewshot=$out/zskt_fashion_mnist/fewshot_kd_M100$tag  # few-shot KD student of the same teacher
fewshot_curves=$out/zskt_fashion_mnist/curves_fewshot$tag
teacher_flags=() zero_shot_flags=(--iterations="${ITERATIONS:-4000}")
[ "$epochs" = 20 ] || teacher_flags=(--epochs="$epochs")  # 20: the recipe's own length
curve_flags=(--num_images=300) fewshot_flags=(--epochs=192)
if [ "${QUICK:-0}" = 1 ]; then  # tiny sizes: checks the script, not the method
  teacher_flags=(--epochs=1 --max_train_examples=2000)
  zero_shot_flags=(--iterations=20 --batch_size=32 --max_test_examples=1000)
  curve_flags=(--num_images=20 --adversarial_steps=10 --max_test_examples=1000)
  fewshot_flags=(--epochs=2 --max_test_examples=1000)
fi

[ "$eps" = 0 ] || teacher_flags+=(--adversarial_eps="$eps")

zskd() { python -m zskd_tf.main "$@" --verbose=epoch; }

zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$teacher" "${teacher_flags[@]}"
zskd --procedure=zero_shot --teacher="$teacher" --student=lenet5_half --dataset=fashion_mnist \
  --beta=0 --seeds=0 --generator_range="$range" --run_dir="$student" "${zero_shot_flags[@]}"
zskd --procedure=transition_curves --teacher="$teacher" --student_run="$student/seed_0" \
  --dataset=fashion_mnist --run_dir="$curves" "${curve_flags[@]}"
python tools/plot_transition_curves.py --run_dir="$curves" --out="$curves/curves.png"
# The same measurement on a few-shot KD student of the same teacher (bench/distill_fashion_mnist.sh
# settings: M = 100, batch 64, ~3,000 steps).
zskd --procedure=distill --teacher="$teacher" --student=lenet5_half --dataset=fashion_mnist \
  --samples_per_class=100 --batch_size=64 --run_dir="$fewshot" "${fewshot_flags[@]}"
zskd --procedure=transition_curves --teacher="$teacher" --student_run="$fewshot" \
  --dataset=fashion_mnist --run_dir="$fewshot_curves" "${curve_flags[@]}"
python tools/plot_transition_curves.py --run_dir="$fewshot_curves" \
  --out="$fewshot_curves/curves.png"

python - "$out" "$teacher_name" "${student#"$out"/}" "${curves#"$out"/}" "${fewshot#"$out"/}" \
  "${fewshot_curves#"$out"/}" <<'PY'
import json, os, sys
out, teacher_dir, student_dir, curves_dir, fewshot_dir, fewshot_curves_dir = sys.argv[1:]
def result(path):
    with open(os.path.join(out, path, "result.json")) as f:
        return json.load(f)
teacher, student = result(teacher_dir), result(student_dir)
seed = result(f"{student_dir}/seed_0")
print(f"\nZSKT on Fashion-MNIST, LeNet-5 ({teacher_dir}: {teacher['test_accuracy']:.2%}) -> "
      "LeNet-5-half, no training image")
print(f"{'student':>26}  {'test accuracy':>13}  {'MTE':>6}")
for name, run, curves in (("zero-shot", student, result(curves_dir)),
                          ("few-shot KD, M = 100", result(fewshot_dir), result(fewshot_curves_dir))):
    print(f"{name:>26}  {run['test_accuracy']:>13.2%}  {curves['mte']:>6.3f}")
print(f"zero-shot: {student['zero_shot']['iterations']} iterations, "
      f"{seed['train_seconds_this_session'] / 3600:.2f} h in the last session; MTE on "
      f"{result(curves_dir)['num_images']} images, K = {result(curves_dir)['adversarial_steps']}")
PY
