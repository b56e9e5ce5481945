#!/usr/bin/env bash
# Sharded synthesis (docs/several_machines.md): the quick pipeline's 6,000 ZSKD data impressions
# (400 steps, batches of 500, --deterministic) made by one process, and by two shards running at
# once on the same machine and then merged. Prints each wall time and whether the merged
# impressions equal the one-process ones bit for bit. Run by hand on an otherwise idle machine.
#
#   bench/sharded_synthesis.sh            # both, then the comparison (products in runs/bench)
#   bench/sharded_synthesis.sh one        # only the one-process run (starts afresh)
#   bench/sharded_synthesis.sh two        # only the two shards and their merge (starts afresh)
#   bench/sharded_synthesis.sh compare    # only the comparison
#
# Settings (environment): BENCH_DIR, TEACHER (a zskd_tf run directory; default: the LeNet-5 of
# bench/teacher_fashion_mnist.sh), NUM_SAMPLES (6000), STEPS (400).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}/sharded_synthesis
teacher=${TEACHER:-runs/teachers/lenet5_fashion_mnist}
args=(--procedure=data_impressions --teacher="$teacher" --num_samples="${NUM_SAMPLES:-6000}"
      --synthesis_steps="${STEPS:-400}" --synthesis_batch_size=500 --deterministic
      --verbose=quiet)
mode=${1:-all}

timed() {  # timed NAME COMMAND...: run it, print and keep its wall time
  local name=$1 start
  shift
  start=$(date +%s.%N)
  "$@"
  python -c "import sys; print(f'$name: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s wall')" \
    "$start" "$(date +%s.%N)" | tee -a "$out/times.txt"
}

one() {
  rm -rf "$out/one"
  timed "one process" python -m zskd_tf.main "${args[@]}" --run_dir="$out/one"
}

two_shards() {
  python -m zskd_tf.main "${args[@]}" --shard=0/2 --run_dir="$out/shard_0" &
  local first=$!
  python -m zskd_tf.main "${args[@]}" --shard=1/2 --run_dir="$out/shard_1"
  wait "$first"
}

two() {
  rm -rf "$out/shard_0" "$out/shard_1" "$out/merged"
  timed "two shards at once" two_shards
  timed "merge" python -m zskd_tf.main --procedure=merge --verbose=quiet \
    --inputs="$out/shard_0,$out/shard_1" --run_dir="$out/merged"
}

compare() {
  python - "$out" <<'PY'
import json, os, sys
import numpy as np
out = sys.argv[1]
one = np.load(os.path.join(out, "one", "impressions.npz"))
merged = np.load(os.path.join(out, "merged", "impressions.npz"))
arrays = [k for k in one.files if k != "meta"]
same = all(np.array_equal(one[k], merged[k]) for k in arrays)
meta_one, meta_merged = (json.loads(str(f["meta"])) for f in (one, merged))
meta_one.pop("created"), meta_merged.pop("created")  # the one field that must differ
print(f"{one['x'].shape[0]} impressions; arrays {arrays} of the merge equal the one-process "
      f"run's bit for bit: {same}; metadata equal but for its date: {meta_one == meta_merged}")
PY
}

mkdir -p "$out"
case $mode in
  one) one ;;
  two) two ;;
  compare) compare ;;
  all) one; two; compare ;;
  *) echo "usage: $0 [one|two|compare]" >&2; exit 2 ;;
esac
