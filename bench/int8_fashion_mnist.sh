#!/usr/bin/env bash
# Data-free int8 deployment on Fashion-MNIST (docs/int8_quantization.md): a LeNet-5 teacher and
# a LeNet-5-half KD student of it (distilled on real data, 10 epochs), each exported as float
# and full-integer TFLite, int8 calibrated on (a) 500 real training images, (b) 500 ZSKD data
# impressions of the teacher (1500 steps, one batch of 500), (c) 500 images of uniform noise;
# then a table of test accuracy, agreement, size and latency (bench/int8_table.py).
# About 25 min on 2 shared CPU cores, most of it training; finished runs are reused.
#
#   bench/int8_fashion_mnist.sh             # products in runs/int8/ (BENCH_DIR to change)
#   LENET=0 WRN=1 bench/int8_fashion_mnist.sh  # the WRN part alone
#   WRN=1 bench/int8_fashion_mnist.sh       # also a WRN-16-2 teacher (2 epochs) and a WRN-16-1
#                                           # KD + AT student of it (1 epoch)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_DIR:-runs/int8}
main() { python -m zskd_tf.main --verbose=epoch "$@"; }

rows=()
export_int8() {  # NAME RUN_DIR LABEL SOURCE SAMPLES
  main --procedure=export --model_path="$2" --tflite --quantize=int8 --calibration="$4" \
       --calibration_samples="$5" --run_dir="$B/export_$1_$3"
  rows+=("$1:$2:$B/export_$1_$3:$3")
}
if [ "${LENET:-1}" = 1 ]; then
  T=$B/lenet5_teacher
  main --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$T"
  main --procedure=data_impressions --teacher="$T" --num_samples=500 --synthesis_batch_size=500 \
       --run_dir="$B/lenet5_impressions"
  main --procedure=distill --teacher="$T" --student=lenet5_half --dataset=fashion_mnist \
       --epochs=10 --run_dir="$B/lenet5_half_kd"

  for model in lenet5:"$T" lenet5_half_kd:"$B/lenet5_half_kd"; do
    export_int8 "${model%%:*}" "${model#*:}" real real 500
    export_int8 "${model%%:*}" "${model#*:}" impressions "$B/lenet5_impressions/impressions.npz" 500
    export_int8 "${model%%:*}" "${model#*:}" noise noise 500
  done
fi

if [ "${WRN:-0}" = 1 ]; then
  # WRN-16-2 (BatchNorm; 100 M MACs per image): 120 calibration images everywhere; impressions
  # of 100 steps at lr 0.05 (the paper's 1500 at 1e-3 cost hours on a CPU), plain, and with the
  # BatchNorm-statistics prior as --procedure=quantize adds it (weight 1).
  W=$B/wrn-16-2_teacher
  main --procedure=train --model=wrn-16-2 --dataset=fashion_mnist --epochs=2 --run_dir="$W"
  SYNTH=(--num_samples=120 --synthesis_batch_size=120 --synthesis_steps=100 --synthesis_lr=0.05)
  main --procedure=data_impressions --teacher="$W" "${SYNTH[@]}" --run_dir="$B/wrn_impressions"
  export_int8 wrn-16-2 "$W" real real 120
  export_int8 wrn-16-2 "$W" impressions "$B/wrn_impressions/impressions.npz" 120
  main --procedure=quantize --teacher="$W" --tflite --calibration_samples=120 "${SYNTH[@]:1}" \
       --run_dir="$B/quantize_wrn"
  rows+=("wrn-16-2:$W:$B/quantize_wrn:impressions+BN prior (quantize)")
  export_int8 wrn-16-2 "$W" noise noise 120
  S=$B/wrn-16-1_kd
  main --procedure=distill --teacher="$W" --student=wrn-16-1 --dataset=fashion_mnist --epochs=1 \
       --run_dir="$S"
  export_int8 wrn-16-1_kd "$S" real real 120
  export_int8 wrn-16-1_kd "$S" impressions "$B/wrn_impressions/impressions.npz" 120
  export_int8 wrn-16-1_kd "$S" noise noise 120
  main --procedure=quantize --teacher="$S" --tflite --calibration_samples=120 "${SYNTH[@]:1}" \
       --run_dir="$B/quantize_wrn-16-1_kd"
  rows+=("wrn-16-1_kd:$S:$B/quantize_wrn-16-1_kd:impressions+BN prior (quantize)")
fi

python bench/int8_table.py --model="$(IFS=,; echo "${rows[*]}")" --out="$B/int8_table.json"
