#!/usr/bin/env bash
# Lopes et al. (2017) on MNIST, one table row per command:
#
#   tools/lopes_pipeline.sh PAIR OBJECTIVE [FLAG ...]
#
# PAIR: hinton (Table 1: hinton1200 -> hinton800) or lenet (Table 2: lenet -> lenet_half).
# OBJECTIVE: top_layer, all_layers, spectral_all_layers, spectral_layer_pairs, or the
# baselines student (trained on MNIST) and standard_kd (KD on the real images).
# Chains the flagfiles of flags/teachers/ and flags/lopes/PAIR/: teacher -> compute_stats ->
# optimize_dataset -> distill. Every step is resumable and a finished step is skipped, so
# running it again continues where it stopped. FLAGs (e.g. --data_dir=DIR, --strategy=...)
# are passed to every step.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
pair=$1 objective=$2
shift 2
case "$pair" in
  hinton) teacher=flags/teachers/hinton1200_mnist.cfg ;;
  lenet) teacher=flags/teachers/lenet_mnist.cfg ;;
  *) echo "error: unknown PAIR '$pair' (hinton or lenet)" >&2; exit 2 ;;
esac
case "$objective" in
  top_layer|all_layers|spectral_all_layers|spectral_layer_pairs)
    steps=(compute_stats "optimize_$objective" "distill_$objective"); last="distill_$objective" ;;
  student|standard_kd) steps=("$objective"); last=$objective ;;
  *) echo "error: unknown OBJECTIVE '$objective'" >&2; exit 2 ;;
esac

step() {
  local flagfile=$1
  shift
  echo "== $flagfile" >&2
  python -m zskd_tf.main --flagfile="$flagfile" "$@"
}
[ "$objective" = student ] || step "$teacher" "$@"
for name in "${steps[@]}"; do
  step "flags/lopes/$pair/$name.cfg" "$@"
done
python - "runs/lopes/$pair/$last/result.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: test accuracy {result['test_accuracy']:.4f}"
      + (f" (teacher {result['teacher_test_accuracy']:.4f})" if "teacher_test_accuracy" in result else ""))
PY
