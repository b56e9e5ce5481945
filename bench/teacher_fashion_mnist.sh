#!/usr/bin/env bash
# Issue 2 benchmarks: the LeNet-5 teacher on the full Fashion-MNIST, and train-step throughput
# versus plain keras fit. Run from the repository root; prints the figures for the README.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m zskd_tf.main --flagfile=flags/teachers/lenet5_fashion_mnist.cfg \
    --run_dir=runs/bench/lenet5_fashion_mnist_recipe --verbose=epoch
# The ZSKD [S] MNIST recipe on Fashion-MNIST, for comparison (200 epochs, batch 512, constant lr)
python -m zskd_tf.main --procedure=train --model=lenet5 --dataset=fashion_mnist \
    --batch_size=512 --epochs=200 --lr_schedule=constant \
    --run_dir=runs/bench/lenet5_fashion_mnist_mnist_recipe --verbose=epoch
python bench/summarize.py runs/bench/lenet5_fashion_mnist_recipe \
    runs/bench/lenet5_fashion_mnist_mnist_recipe
python bench/train_throughput.py --model=lenet5 --batch_size=128 --epochs=2 --repeats=3
