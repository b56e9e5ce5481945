#!/usr/bin/env bash
# ZSKT with the paper's own kind of pair on Fashion-MNIST (32x32x1): a WRN-16-2 teacher ->
# zero-shot WRN-16-1 student with attention transfer (beta 250), the paper's unbounded
# generator (--generator_range=free: WRNs take mean/std-normalised images), 1 generator + 10
# student steps on batches of 128, seed 0, final test accuracy (no best-of-test selection).
# Run by hand; do not run in CI.
#
# Teacher: $BENCH_DIR/wrn-16-2_fashion_mnist, the WRN recipe for WRN_EPOCHS (default 2)
# epochs, shared with bench/distill_fashion_mnist.sh; trained here when absent (~9 min an
# epoch on the idle 2-core CPU).
# ITERATIONS (default 600): outer iterations N. MIXED_BFLOAT16=1 adds --mixed_bfloat16
# (about 3.2 s per iteration here against 4.3 s in float32). Each setting has its own run
# directory, $BENCH_DIR/zskt_fashion_mnist/wrn-16-1_itN[_bf16]; a killed run continues from
# its last checkpoint when the script is run again. FREEZE_GENERATOR_AT=F adds
# --freeze_generator_at=F (the generator stops learning at that fraction of the iterations;
# directory suffix _freezeF).
#
#   ITERATIONS=600 MIXED_BFLOAT16=1 bench/zskt_fashion_mnist_wrn.sh
#   ITERATIONS=1200 MIXED_BFLOAT16=1 FREEZE_GENERATOR_AT=0.85 bench/zskt_fashion_mnist_wrn.sh
#   QUICK=1 BENCH_DIR=/tmp/b bench/zskt_fashion_mnist_wrn.sh   # a minutes-long smoke version
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
iterations=${ITERATIONS:-600}
[ "${QUICK:-0}" = 1 ] && iterations=4
teacher=$out/wrn-16-2_fashion_mnist
student=$out/zskt_fashion_mnist/wrn-16-1_it$iterations
teacher_flags=(--epochs="${WRN_EPOCHS:-2}") zero_shot_flags=(--iterations="$iterations")
if [ "${MIXED_BFLOAT16:-0}" = 1 ]; then
  zero_shot_flags+=(--mixed_bfloat16)
  student+=_bf16
fi
if [ -n "${FREEZE_GENERATOR_AT:-}" ]; then
  zero_shot_flags+=(--freeze_generator_at="$FREEZE_GENERATOR_AT")
  student+=_freeze$FREEZE_GENERATOR_AT
fi
if [ "${QUICK:-0}" = 1 ]; then  # tiny sizes: checks the script, not the method
  teacher_flags=(--epochs=1 --max_train_examples=512)
  zero_shot_flags+=(--batch_size=16 --n_student_steps=2 --max_test_examples=500)
fi

zskd() { python -m zskd_tf.main "$@" --verbose=epoch; }

zskd --procedure=train --model=wrn-16-2 --dataset=fashion_mnist --run_dir="$teacher" \
  "${teacher_flags[@]}"
zskd --procedure=zero_shot --teacher="$teacher" --student=wrn-16-1 --dataset=fashion_mnist \
  --seeds=0 --run_dir="$student" "${zero_shot_flags[@]}"
python - "$teacher" "$student" <<'PY'
import json, sys
teacher, student = (json.load(open(f"{d}/result.json")) for d in sys.argv[1:])
print(f"teacher {teacher['test_accuracy']:.4f}; zero-shot student "
      f"{student['test_accuracy']:.4f} after {student['zero_shot']['iterations']} iterations "
      f"(mixed_bfloat16 {student['zero_shot']['mixed_bfloat16']}); {sys.argv[2]}")
PY
