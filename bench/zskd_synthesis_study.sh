#!/usr/bin/env bash
# Which synthesis settings and which teacher make useful ZSKD data impressions on Fashion-MNIST?
# A small, fixed setting: 6,000 impressions x 400 Adam steps in batches of 500, then a
# LeNet-5-half student with the ZSKD student flagfile (20 epochs); one row per setting with the
# impressions' mean pixel value and the student's final test accuracy. ~3 min per row on the idle
# 2-core CPU. Run by hand. Results: README "Benchmarks", ZSKD.
#
#   bench/zskd_synthesis_study.sh            # all rows, products in runs/bench/zskd_study
#   bench/zskd_synthesis_study.sh sseung     # only the rows whose name or teacher contains "sseung"
#   bench/zskd_synthesis_study.sh pgd        # the adversarially trained teachers' rows
#   bench/zskd_synthesis_study.sh syn        # synthesis-time jitter and flip
#   bench/zskd_synthesis_study.sh bf16       # bfloat16 input gradients
#   bench/zskd_synthesis_study.sh _e1        # students trained for 120 epochs (s100_e6: 60)
# Every row spells out the flagfiles' recipe of the time (uniform start, lr 1e-3; 20-epoch
# students on stored targets) before its own flags, so it measures the same thing today.
# Rows sharing a teacher and impression flags (e.g. the student variants) each synthesise
# their own impressions, with the same seed: the same impressions.
#
# Teachers (trained here if absent, with flags/teachers/lenet5_fashion_mnist.cfg):
#   e20   the recipe's full 20 epochs (runs/bench/lenet5_fashion_mnist, 91.00 %)
#   e5    5 epochs, e3: 3 epochs; wd1e-3: 20 epochs with L2 1e-3; s200: sseung0703's MNIST recipe
#         (200 epochs, batch 512, constant lr); e5_noise0.3: 5 epochs with --input_noise=0.3;
#         e5_pgdE: 5 epochs of L2 PGD adversarial training, --adversarial_eps=E; pgdE: 20 epochs;
#         e5_pgd0.5_affine, e5_pgd0.5_crop_flip: e5_pgd0.5 trained with that --augment;
#         e5_pgd0.5_k7: e5_pgd0.5 with 7 PGD steps (--adversarial_train_steps=7) instead of 3
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
study=$out/zskd_study
only=${1:-}

teacher_dir() {
  case $1 in
    e20) echo "$out/lenet5_fashion_mnist" ;;
    s200) echo "$out/lenet5_fashion_mnist_mnist_recipe" ;;
    *) echo "$out/lenet5_fashion_mnist_$1" ;;
  esac
}
teacher_flags() {
  case $1 in
    e20) ;;
    e5) echo --epochs=5 ;;
    e3) echo --epochs=3 ;;
    wd1e-3) echo --weight_decay=1e-3 ;;
    s200) echo --epochs=200 --batch_size=512 --lr_schedule=constant ;;
    e5_noise0.3) echo --epochs=5 --input_noise=0.3 ;;
    e5_pgd0.5_affine) echo --epochs=5 --adversarial_eps=0.5 --augment=affine ;;
    e5_pgd0.5_crop_flip) echo --epochs=5 --adversarial_eps=0.5 --augment=crop_flip ;;
    e5_pgd0.5_k7) echo --epochs=5 --adversarial_eps=0.5 --adversarial_train_steps=7 ;;
    e5_pgd*) echo --epochs=5 --adversarial_eps="${1#e5_pgd}" ;;
    pgd*) echo --adversarial_eps="${1#pgd}" ;;
  esac
}
sseung=(--impression_init=normal --impression_l2=1e-3 --synthesis_lr=0.1)
# name | teacher | impression flags | student flags
rows=(
  "paper|e20|--synthesis_lr=0.001|"
  "uniform_lr0.01|e20|--synthesis_lr=0.01|"
  "uniform_lr0.1|e20|--synthesis_lr=0.1|"
  "normal_lr0.1|e20|--impression_init=normal --synthesis_lr=0.1|"
  "sseung|e20|${sseung[*]}|"
  "sseung_l2x10|e20|--impression_init=normal --impression_l2=1e-2 --synthesis_lr=0.1|"
  "sseung_tv1e-3|e20|${sseung[*]} --impression_tv=1e-3|"
  "sseung_T5|e20|${sseung[*]} --temperature=5|--targets=teacher"
  "sseung_crop_flip|e20|${sseung[*]}|--augment=crop_flip --targets=teacher"
  "paper|e5|--synthesis_lr=0.001|"
  "sseung|e5|${sseung[*]}|"
  "sseung_betas10,1|e5|${sseung[*]} --betas=10.0,1.0|"
  "sseung|e3|${sseung[*]}|"
  "sseung|wd1e-3|${sseung[*]}|"
  "sseung|s200|${sseung[*]}|"
  "sseung_crop_flip|e5|${sseung[*]}|--augment=crop_flip --targets=teacher"
  "sseung|e5_noise0.3|${sseung[*]}|"
  "sseung|e5_pgd0.25|${sseung[*]}|"
  "sseung|e5_pgd0.5|${sseung[*]}|"
  "sseung|e5_pgd1.0|${sseung[*]}|"
  "sseung|pgd0.5|${sseung[*]}|"
  "sseung_crop_flip|e5_pgd0.5|${sseung[*]}|--augment=crop_flip --targets=teacher"
  "sseung_affine|e5_pgd0.5|${sseung[*]}|--augment=affine --targets=teacher"
  "sseung_affine_wide|e5_pgd0.5|${sseung[*]}|--augment=affine_wide --targets=teacher"
  "sseung_crop_flip_e60|e5_pgd0.5|${sseung[*]}|--augment=crop_flip --targets=teacher --epochs=60"
  "sseung_s100|e5_pgd0.5|${sseung[*]} --synthesis_steps=100|"
  "sseung_s100_crop_flip|e5_pgd0.5|${sseung[*]} --synthesis_steps=100|--augment=crop_flip --targets=teacher"
  "sseung_uniform|e5_pgd0.5|--impression_l2=1e-3 --synthesis_lr=0.1|"
  "sseung_uniform_crop_flip|e5_pgd0.5|--impression_l2=1e-3 --synthesis_lr=0.1|--augment=crop_flip --targets=teacher"
  "sseung_s100|e5_pgd0.5_affine|${sseung[*]} --synthesis_steps=100|"
  "sseung_s100|e5_pgd0.5_crop_flip|${sseung[*]} --synthesis_steps=100|"
  "sseung_s100|e5_pgd0.5_k7|${sseung[*]} --synthesis_steps=100|"
  "sseung_s100|e5_pgd0.75|${sseung[*]} --synthesis_steps=100|"
  "sseung_s100_synflip|e5_pgd0.5|${sseung[*]} --synthesis_steps=100 --impression_flip|"
  "sseung_s100_synjit2|e5_pgd0.5|${sseung[*]} --synthesis_steps=100 --impression_jitter=2|"
  "sseung_s100_synjit2_flip|e5_pgd0.5|${sseung[*]} --synthesis_steps=100 --impression_jitter=2 --impression_flip|"
  "sseung_s100_synjit4_flip|e5_pgd0.5|${sseung[*]} --synthesis_steps=100 --impression_jitter=4 --impression_flip|"
  "sseung_s100_bf16|e5_pgd0.5|${sseung[*]} --synthesis_steps=100 --bfloat16_input_gradient|"
  "sseung_s100_e60|e5_pgd0.5|${sseung[*]} --synthesis_steps=100|--epochs=60"
  "sseung_s100_e120|e5_pgd0.5|${sseung[*]} --synthesis_steps=100|--epochs=120"
  "sseung_s100_e120|e5_pgd0.25|${sseung[*]} --synthesis_steps=100|--epochs=120"
  "sseung_s100_e120|pgd0.5|${sseung[*]} --synthesis_steps=100|--epochs=120"
  "sseung_s100_e120|e5|${sseung[*]} --synthesis_steps=100|--epochs=120"
  "sseung_s100_e120|e20|${sseung[*]} --synthesis_steps=100|--epochs=120"
  "sseung_s100_affine_e120|e5_pgd0.5|${sseung[*]} --synthesis_steps=100|--augment=affine --targets=teacher --epochs=120"
  "sseung_s100_crop_flip_e120|e5_pgd0.5|${sseung[*]} --synthesis_steps=100|--augment=crop_flip --targets=teacher --epochs=120"
)

zskd() { python -m zskd_tf.main "$@" --verbose=quiet; }
for row in "${rows[@]}"; do
  IFS='|' read -r name teacher impression student <<<"$row"
  [[ -z $only || $name == *$only* || $teacher == *$only* ]] || continue
  t=$(teacher_dir "$teacher")
  # shellcheck disable=SC2046
  zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$t" $(teacher_flags "$teacher")
  di=$study/${teacher}_${name}/impressions
  # shellcheck disable=SC2086
  zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$t" --num_samples=6000 \
    --synthesis_batch_size=500 --synthesis_steps=400 --impression_init=uniform \
    --impression_l2=0 --synthesis_lr=0.001 $impression --run_dir="$di"
  # shellcheck disable=SC2086
  zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$t" \
    --dataset="$di/impressions.npz" --run_dir="$study/${teacher}_${name}/student" \
    --augment=none --targets=stored --epochs=20 --noinit_from_teacher --lr_schedule=step $student
  python - "$t" "$di" "$study/${teacher}_${name}/student" "$teacher" "$name" <<'PY'
import json, sys
import numpy as np
teacher, di, student, teacher_name, name = sys.argv[1:]
read = lambda d: json.load(open(f"{d}/result.json"))
x = np.load(f"{di}/impressions.npz")["x"]
print(f"{teacher_name:>7} ({read(teacher)['test_accuracy']:.2%})  {name:<18} DI loss "
      f"{read(di)['mean_loss']:.4f}  pixel mean {x.mean():.3f}  student "
      f"{read(student)['test_accuracy']:.2%}", flush=True)
PY
done
