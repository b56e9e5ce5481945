#!/usr/bin/env bash
# The ZSKD recipe chosen on the validation split (bench/zskd_validation_study.sh), reported on
# the test set with the teacher as given: LeNet-5 trained by flags/teachers/lenet5_fashion_mnist.cfg
# on all 60,000 training images (trained here when absent). One line per seed and recipe.
#
#   bench/zskd_recipe_test.sh                        # the new recipes, seeds 0 and 1; the paper's, seed 0
#   SEEDS="0 1 2" RECIPES=new bench/zskd_recipe_test.sh
#   NUM=48000 STEPS=400 bench/zskd_recipe_test.sh    # the paper's scale (hours on a CPU)
#   NUM=48000 RECIPES="new_init" bench/zskd_recipe_test.sh
#
# Measured 2026-12-03 (teacher 91.10 %, 3,000 impressions): new 50.24 % and 56.23 %, paper
# 34.48 % (docs/zskd_recipe_study.md).
#
# Recipes (impression flags | student flags, added to flags/zskd/fashion_mnist_*.cfg):
#   paper: the flagfiles before the study: uniform start, Adam lr 1e-3; a random student, 20
#          epochs on the stored T = 20 targets (the recipe's step schedule)
#   new:   N(0, 1) start, image L2 1e-3, Adam lr 3; a random student, 120 epochs with affine
#          augmentation and the teacher's online targets (the flagfiles of 2026-12-03)
#   new_init: the flagfiles now: new's impressions (shared with it); the student starts from
#          the teacher's strongest channels and decays its rate (--init_from_teacher
#          --lr_schedule=cosine)
#   new_init_hint: the same with channel hints at the student's last tap
#          (--hint_weight=${HINT_WEIGHT:-1000}, the weight chosen on the validation split at
#          6,000 impressions); the same impressions
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}/zskd_recipe
teacher=${TEACHER:-runs/teachers/lenet5_fashion_mnist}
num=${NUM:-3000}
steps=${STEPS:-400}
read -r -a seeds <<<"${SEEDS:-0 1}"
read -r -a recipes <<<"${RECIPES:-new_init new paper}"

declare -A impression_flags=(
  [paper]="--impression_init=uniform --impression_l2=0 --synthesis_lr=0.001"
  [new]="--impression_init=normal --impression_l2=1e-3 --synthesis_lr=3.0"
  [new_init]="--impression_init=normal --impression_l2=1e-3 --synthesis_lr=3.0"
  [new_init_hint]="--impression_init=normal --impression_l2=1e-3 --synthesis_lr=3.0")
declare -A student_flags=(
  [paper]="--augment=none --targets=stored --epochs=20 --noinit_from_teacher --lr_schedule=step"
  [new]="--augment=affine --targets=teacher --epochs=120 --noinit_from_teacher --lr_schedule=step"
  [new_init]="--augment=affine --targets=teacher --epochs=120 --init_from_teacher --lr_schedule=cosine"
  [new_init_hint]="--augment=affine --targets=teacher --epochs=120 --init_from_teacher --lr_schedule=cosine --hint_weight=${HINT_WEIGHT:-1000}")

zskd() { python -m zskd_tf.main "$@" --verbose=quiet; }
zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$teacher"
for recipe in "${recipes[@]}"; do
  for seed in "${seeds[@]}"; do
    [[ $recipe == paper && $seed != "${seeds[0]}" && -z ${PAPER_ALL_SEEDS:-} ]] && continue
    run=$out/${recipe}_n${num}_s${steps}_seed$seed
    impressions=$out/${recipe%%_*}_n${num}_s${steps}_seed$seed/impressions  # new* share
    # shellcheck disable=SC2086
    zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$teacher" \
      --num_samples="$num" --synthesis_batch_size=500 --synthesis_steps="$steps" \
      --seed="$seed" ${impression_flags[$recipe]} --run_dir="$impressions"
    # shellcheck disable=SC2086
    zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$teacher" --seed="$seed" \
      --dataset="$impressions/impressions.npz" ${student_flags[$recipe]} \
      --run_dir="$run/student"
    python - "$teacher" "$run" "$recipe" "$seed" <<'PY'
import json, sys
teacher, run, recipe, seed = sys.argv[1:]
read = lambda d: json.load(open(f"{d}/result.json"))
t, s = read(teacher)["test_accuracy"], read(f"{run}/student")["test_accuracy"]
print(f"{recipe:>5} seed {seed}: teacher {t:.2%}, student test {s:.2%} "
      f"(share kept {s / t:.3f})  ({run})", flush=True)
PY
  done
done
