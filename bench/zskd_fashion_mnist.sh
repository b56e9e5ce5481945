#!/usr/bin/env bash
# ZSKD on Fashion-MNIST: LeNet-5 teacher -> 48,000 data impressions -> LeNet-5-half students
# on all 48,000, and on seeded random subsets of 24,000 and 12,000 of them (--max_train_examples:
# impressions are independent draws, so a random subset is a sample of a smaller run up to the
# exact class balance) -> a table of test accuracies. SEPARATE=1 synthesises each size on its own
# instead. Run by hand; it is long (README.md, ZSKD section, "Cost").
#
#   bench/zskd_fashion_mnist.sh            # products in runs/bench/ (BENCH_DIR to change)
#   SYNTHESIS_BATCH_SIZE=500 bench/zskd_fashion_mnist.sh   # faster synthesis (paper: 100)
#   QUICK=1 BENCH_DIR=/tmp/b bench/zskd_fashion_mnist.sh   # a minutes-long smoke version
#
# Settings (environment):
#   TEACHER_EPOCHS=20 (default) the Fashion-MNIST LeNet-5 recipe's full length, in
#                     $BENCH_DIR/lenet5_fashion_mnist; any other N trains N epochs in
#                     $BENCH_DIR/lenet5_fashion_mnist_eN (the ZSKT benchmark's teacher is N = 5).
#   IMPRESSIONS=paper (default) the paper's and the authors' synthesis (uniform start, lr 1e-3);
#               IMPRESSIONS=sseung sseung0703's: N(0, 1) start, image L2 1e-3, here lr 0.1.
#   TEACHER_ADVERSARIAL_EPS=0 (default); E > 0 trains the teacher adversarially
#                     (--adversarial_eps=E, L2 PGD) in $BENCH_DIR/lenet5_fashion_mnist[_eN]_pgdE.
#   SYNTHESIS_STEPS (default 1500), SYNTHESIS_BATCH_SIZE (default 100).
#   IMPRESSION_JITTER=0 (default); P > 0 synthesises with --impression_jitter=P (own directory).
#   SIZES="48000 24000 12000" (default): impressions made (the first) and the subsets of them the
#                     other students use (SEPARATE=1: each size synthesised on its own).
#   STUDENT_AUGMENT=none (default; the students read the stored targets); crop_flip, affine or
#                     affine_wide train the students on augmented impressions with the teacher's
#                     targets computed online (student_<augment>_N run directories).
#   STUDENT_EPOCHS (default: the flagfile's recipe, 20 epochs); N trains the students N epochs
#                     (student[_<augment>]_eN_N run directories).
#   BFLOAT16_INPUT_GRADIENT=1 synthesises with --bfloat16_input_gradient (own directory).
# Every step is resumable: run the script again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}
epochs=${TEACHER_EPOCHS:-20}
eps=${TEACHER_ADVERSARIAL_EPS:-0}  # > 0: an adversarially trained teacher (--adversarial_eps)
teacher_name=lenet5_fashion_mnist$([ "$epochs" = 20 ] || echo "_e$epochs")
teacher_flags=()
[ "$epochs" = 20 ] || teacher_flags=(--epochs="$epochs")
[ "$eps" = 0 ] || teacher_name+=_pgd$eps
teacher=$out/$teacher_name
sizes=${SIZES:-48000 24000 12000}  # the first is synthesised, the others are its subsets
impression_flags=(--synthesis_batch_size="${SYNTHESIS_BATCH_SIZE:-100}"
                  --synthesis_steps="${SYNTHESIS_STEPS:-1500}")
tag=$([ "$epochs" = 20 ] || echo "_e$epochs")$([ "$eps" = 0 ] || echo "_pgd$eps")
case ${IMPRESSIONS:-paper} in
  paper) impression_flags+=(--impression_init=uniform --impression_l2=0 --synthesis_lr=0.001) ;;
  sseung) impression_flags+=(--impression_init=normal --impression_l2=1e-3 --synthesis_lr=0.1)
          tag+=_sseung ;;
  *) echo "IMPRESSIONS must be paper or sseung" >&2; exit 2 ;;
esac
[ "${SYNTHESIS_STEPS:-1500}" = 1500 ] || tag+=_s$SYNTHESIS_STEPS
jitter=${IMPRESSION_JITTER:-0}  # > 0: --impression_jitter (not in ZSKD)
[ "$jitter" = 0 ] || { impression_flags+=(--impression_jitter="$jitter"); tag+=_jit$jitter; }
[ "${BFLOAT16_INPUT_GRADIENT:-0}" = 0 ] || { impression_flags+=(--bfloat16_input_gradient); tag+=_bf16; }
work=$out/zskd_fashion_mnist$tag
augment=${STUDENT_AUGMENT:-none}  # e.g. crop_flip: augmented DIs, targets by the teacher online
# Spelled out: the student flagfile's recipe changed (docs/zskd_recipe_study.md).
student_flags=(--augment=none --targets=stored --epochs=20) student=student
if [ "$augment" != none ]; then
  student_flags=(--augment="$augment" --targets=teacher --epochs=20) student+=_$augment
fi
if [ -n "${STUDENT_EPOCHS:-}" ]; then
  student_flags+=(--epochs="$STUDENT_EPOCHS") student+=_e$STUDENT_EPOCHS
fi
if [ "${QUICK:-0}" = 1 ]; then  # tiny sizes: checks the script, not the method
  sizes="400 200 100"
  impression_flags+=(--synthesis_batch_size=100 --synthesis_steps=20)
  teacher_flags=(--epochs=1 --max_train_examples=2000)
  student_flags+=(--epochs=2 --max_test_examples=1000)
fi

[ "$eps" = 0 ] || teacher_flags+=(--adversarial_eps="$eps")

zskd() { python -m zskd_tf.main "$@" --verbose=epoch; }

zskd --flagfile=flags/teachers/lenet5_fashion_mnist.cfg --run_dir="$teacher" "${teacher_flags[@]}"
largest=${sizes%% *}
for n in $sizes; do
  source=$largest subset=(--max_train_examples="$n")
  if [ "${SEPARATE:-0}" = 1 ] || [ "$n" = "$largest" ]; then
    source=$n subset=()
    zskd --flagfile=flags/zskd/fashion_mnist_impressions.cfg --teacher="$teacher" \
      --num_samples="$n" --run_dir="$work/impressions_$n" \
      "${impression_flags[@]}"
  fi
  zskd --flagfile=flags/zskd/fashion_mnist_student.cfg --teacher="$teacher" \
    --dataset="$work/impressions_$source/impressions.npz" \
    --run_dir="$work/${student}_$n" --noinit_from_teacher --lr_schedule=step "${subset[@]}" \
    "${student_flags[@]}"
done

python - "$out" "$teacher_name" "${work#"$out"/}" "${SEPARATE:-0}" "$student" $sizes <<'PY'
import json, os, sys
out, teacher_name, work, separate, student, sizes = (sys.argv[1], sys.argv[2], sys.argv[3],
                                                     sys.argv[4] == "1", sys.argv[5],
                                                     sys.argv[6:])
def result(path):
    with open(os.path.join(out, path, "result.json")) as f:
        return json.load(f)
teacher = result(teacher_name)
print(f"\nZSKD on Fashion-MNIST in {work} (teacher {teacher_name}: {teacher['test_accuracy']:.2%}; "
      "paper: teacher 90.84 %, ZSKD 48,000 DIs 79.62 % with augmentation)")
print(f"{'DIs':>7}  {'from':>14}  {'DI loss':>8}  {'teacher=target':>14}  {'student acc':>11}  "
      f"{'synthesis h':>11}  {'student h':>9}")
for n in sizes:
    source = n if separate or n == sizes[0] else sizes[0]
    di = result(f"{work}/impressions_{source}")
    st = result(f"{work}/{student}_{n}")
    origin = "own synthesis" if source == n else f"subset of {source}"
    print(f"{int(n):>7}  {origin:>14}  {di['mean_loss']:>8.4f}  "
          f"{di['teacher_matches_target']:>14.1%}  {st['test_accuracy']:>11.2%}  "
          f"{di['seconds_this_session'] / 3600 if source == n else 0:>11.2f}  "
          f"{st['train_seconds_this_session'] / 3600:>9.2f}")
PY
