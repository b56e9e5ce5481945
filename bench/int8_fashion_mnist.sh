#!/usr/bin/env bash
# Data-free int8 deployment on Fashion-MNIST (docs/int8_quantization.md): a LeNet-5 teacher and
# a LeNet-5-half KD student of it (distilled on real data, 10 epochs), each exported as float
# and full-integer TFLite, int8 calibrated on (a) 500 real training images, (b) 500 ZSKD data
# impressions of the teacher (1500 steps, one batch of 500), (c) 500 images of uniform noise;
# then a table of test accuracy, agreement, size and latency (bench/int8_table.py).
# About 25 min on 2 shared CPU cores, most of it training; finished runs are reused.
#
#   bench/int8_fashion_mnist.sh             # products in runs/int8/ (BENCH_DIR to change)
#   WRN=1 bench/int8_fashion_mnist.sh       # also a WRN-16-2 teacher (2 epochs, ~5 min more)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_DIR:-runs/int8}
main() { python -m zskd_tf.main --verbose=epoch "$@"; }

T=$B/lenet5_teacher
main --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$T"
main --procedure=data_impressions --teacher="$T" --num_samples=500 --synthesis_batch_size=500 \
     --run_dir="$B/lenet5_impressions"
main --procedure=distill --teacher="$T" --student=lenet5_half --dataset=fashion_mnist \
     --epochs=10 --run_dir="$B/lenet5_half_kd"

rows=()
export_all() {  # NAME RUN_DIR IMPRESSIONS_NPZ
  local name=$1 run=$2 npz=$3
  for calibration in real impressions noise; do
    local source=$calibration
    [ "$calibration" = impressions ] && source=$npz
    main --procedure=export --model_path="$run" --tflite --quantize=int8 \
         --calibration="$source" --calibration_samples=500 \
         --run_dir="$B/export_${name}_$calibration"
    rows+=("$name:$run:$B/export_${name}_$calibration")
  done
}
export_all lenet5 "$T" "$B/lenet5_impressions/impressions.npz"
export_all lenet5_half_kd "$B/lenet5_half_kd" "$B/lenet5_impressions/impressions.npz"

if [ "${WRN:-0}" = 1 ]; then
  W=$B/wrn-16-2_teacher
  main --procedure=train --model=wrn-16-2 --dataset=fashion_mnist --epochs=2 --run_dir="$W"
  main --procedure=data_impressions --teacher="$W" --num_samples=500 --synthesis_batch_size=250 \
       --synthesis_steps=${WRN_SYNTHESIS_STEPS:-200} --run_dir="$B/wrn_impressions"
  export_all wrn-16-2 "$W" "$B/wrn_impressions/impressions.npz"
fi

python bench/int8_table.py --model="$(IFS=,; echo "${rows[*]}")" --out="$B/int8_table.json"
