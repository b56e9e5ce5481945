#!/usr/bin/env bash
# Issue 3 benchmarks on the full Fashion-MNIST (run from anywhere; ~1 h on a 2-core CPU):
#  1. KD student LeNet-5-half from the LeNet-5 teacher on all real data (+ the scratch student);
#  2. few-shot KD versus no-teacher with M = 10, 50, 100 images per class, same step budget;
#  3. a WRN-16-1 G8B2 student (KD + AT) from a WRN-16-2 teacher, a few epochs each;
#  4. distill versus train throughput of the same student (images/s in metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${TEACHER:-runs/bench/lenet5_fashion_mnist_recipe}
[ -f "$T/result.json" ] || python -m zskd_tf.main --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$T"
main() { python -m zskd_tf.main --verbose=epoch "$@"; }
main --procedure=distill --teacher="$T" --student=lenet5_half --dataset=fashion_mnist \
     --run_dir=runs/bench/kd_lenet5_half
# KD regularises: with twice the epochs the KD student keeps improving (the scratch one overfits)
main --procedure=distill --teacher="$T" --student=lenet5_half --dataset=fashion_mnist \
     --epochs=40 --run_dir=runs/bench/kd_lenet5_half_e40
main --procedure=train --model=lenet5_half --dataset=fashion_mnist \
     --run_dir=runs/bench/scratch_lenet5_half
# Few-shot: the same ~3,000 Adam steps of batch 64 for KD and for the no-teacher baseline.
for M in 10 50 100; do
  E=$(( 3000 * 64 / (10 * M) ))
  main --procedure=distill --teacher="$T" --student=lenet5_half --dataset=fashion_mnist \
       --samples_per_class=$M --batch_size=64 --epochs=$E --run_dir=runs/bench/fewshot_kd_M$M
  main --procedure=distill --alpha=0 --beta=0 --student=lenet5_half --dataset=fashion_mnist \
       --samples_per_class=$M --batch_size=64 --epochs=$E --run_dir=runs/bench/fewshot_noteacher_M$M
done
# WRN on Fashion-MNIST padded to 32x32: a WRN-16-2 teacher, then a WRN-16-1 G8B2 student.
main --procedure=train --model=wrn-16-2 --dataset=fashion_mnist --epochs=${WRN_EPOCHS:-2} \
     --run_dir=runs/bench/wrn-16-2_fashion_mnist
main --procedure=distill --teacher=runs/bench/wrn-16-2_fashion_mnist --student=wrn-16-1 \
     --conv=G8B2 --beta=1000 --dataset=fashion_mnist --epochs=${WRN_EPOCHS:-2} \
     --run_dir=runs/bench/wrn-16-1_G8B2_from_wrn-16-2
python bench/summarize.py "$T" runs/bench/kd_lenet5_half runs/bench/kd_lenet5_half_e40 \
    runs/bench/scratch_lenet5_half \
    runs/bench/fewshot_*_M* runs/bench/wrn-16-2_fashion_mnist runs/bench/wrn-16-1_G8B2_from_wrn-16-2
python tools/count_params.py --model=lenet5,lenet5_half --input_shape=32,32,1
python tools/count_params.py --model=wrn-16-2,wrn-16-1 --conv=Conv,G8B2 --input_shape=32,32,1
