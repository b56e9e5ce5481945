#!/usr/bin/env bash
# ZSKD on Fashion-MNIST: LeNet-5 teacher -> 48,000 / 24,000 / 12,000 data impressions ->
# LeNet-5-half students -> a table of test accuracies. Run by hand; it is long (README.md, ZSKD section,
# "Cost": 4-6.5 h of synthesis on a shared 2-core CPU; teacher and students add ~15 min).
#
#   bench/zskd_fashion_mnist.sh            # products in runs/bench/ (BENCH_DIR to change)
#   QUICK=1 BENCH_DIR=/tmp/b bench/zskd_fashion_mnist.sh   # a minutes-long smoke version
#
# The teacher is runs/bench/lenet5_fashion_mnist when it exists, else it is trained there with
# flags/teachers/lenet5_fashion_mnist.cfg. Every step is resumable: run the script again after
# an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
teacher=$out/lenet5_fashion_mnist
sizes="48000 24000 12000"
teacher_flags=() impression_flags=() student_flags=()
if [ "${QUICK:-0}" = 1 ]; then  # tiny sizes: checks the script, not the method
  sizes="400 200 100"
  teacher_flags=(--epochs=1 --max_train_examples=2000)
  impression_flags=(--synthesis_steps=20)
  student_flags=(--epochs=2 --max_test_examples=1000)
fi

zskd() { python -m zskd_tf.main "$@" --verbose=epoch; }

if [ ! -f "$teacher/result.json" ]; then
  zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$teacher" \
    "${teacher_flags[@]}"
fi
for n in $sizes; do
  zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$teacher" \
    --num_samples="$n" --run_dir="$out/zskd_fashion_mnist/impressions_$n" "${impression_flags[@]}"
  zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$teacher" \
    --dataset="$out/zskd_fashion_mnist/impressions_$n/impressions.npz" \
    --run_dir="$out/zskd_fashion_mnist/student_$n" "${student_flags[@]}"
done

python - "$out" $sizes <<'PY'
import json, os, sys
out, sizes = sys.argv[1], sys.argv[2:]
def result(path):
    with open(os.path.join(out, path, "result.json")) as f:
        return json.load(f)
teacher = result("lenet5_fashion_mnist")
print(f"\nZSKD on Fashion-MNIST (teacher LeNet-5: {teacher['test_accuracy']:.2%}; "
      "paper: teacher 90.84 %, ZSKD 48,000 DIs 79.62 % with augmentation)")
print(f"{'DIs':>7}  {'DI loss':>8}  {'teacher=target':>14}  {'student acc':>11}  {'h (last run)':>12}")
for n in sizes:
    di = result(f"zskd_fashion_mnist/impressions_{n}")
    st = result(f"zskd_fashion_mnist/student_{n}")
    print(f"{int(n):>7}  {di['mean_loss']:>8.4f}  {di['teacher_matches_target']:>14.1%}  "
          f"{st['test_accuracy']:>11.2%}  "
          f"{(di['seconds_this_session'] + st['train_seconds_this_session']) / 3600:>12.2f}")
PY
