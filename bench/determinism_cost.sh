#!/usr/bin/env bash
# What --deterministic costs: the same LeNet-5 training (Fashion-MNIST, 3 epochs of the
# recipe on all 60,000 images) with and without it, and whether two deterministic runs give
# bit-identical weights. Run by hand on an otherwise idle machine (about 4 min).
#
#   bench/determinism_cost.sh     # products in runs/bench/determinism (BENCH_DIR to change)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_DIR:-runs/bench}/determinism
args=(--procedure=train --model=lenet5 --dataset=fashion_mnist --epochs=3 --verbose=quiet)
for name in plain deterministic_a deterministic_b; do
  extra=()
  [ "$name" = plain ] || extra=(--deterministic)
  python -m zskd_tf.main "${args[@]}" "${extra[@]}" --run_dir="$out/$name"
done
python - "$out" <<'PY'
import json, os, sys
import keras
out = sys.argv[1]
seconds = {n: json.load(open(os.path.join(out, n, "result.json")))["train_seconds_this_session"]
           for n in ("plain", "deterministic_a", "deterministic_b")}
det = (seconds["deterministic_a"] + seconds["deterministic_b"]) / 2
print(f"train seconds: plain {seconds['plain']:.1f}, deterministic {seconds['deterministic_a']:.1f}"
      f" / {seconds['deterministic_b']:.1f}: x{det / seconds['plain']:.2f}")
a, b = (keras.saving.load_model(os.path.join(out, n, "model.keras")).get_weights()
        for n in ("deterministic_a", "deterministic_b"))
same = all((x == y).all() for x, y in zip(a, b))
print(f"two --deterministic runs bit-identical: {same}")
PY
