#!/usr/bin/env bash
# The whole ZSKD chain for one dataset with one command (like sseung0703's autotrain.py):
#   teacher -> data impressions -> student -> evaluate -> export
#
#   tools/zskd_pipeline.sh mnist|fashion_mnist|cifar10 [--flag=value ...]
#
# Each step is `python -m zskd_tf.main --flagfile=...` (flags/teachers/, flags/zskd/); products go
# to runs/teachers/ and runs/zskd/<dataset>/. Every step is resumable: run the same command again
# after an interruption and it continues (finished steps just report their result). Extra flags
# are passed to every step: use operational ones only, e.g. --strategy=mirrored --data_dir=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  mnist) teacher=lenet5_mnist ;;
  fashion_mnist) teacher=lenet5_fashion_mnist ;;
  cifar10) teacher=alexnet_cifar10 ;;
  *) echo "usage: $0 mnist|fashion_mnist|cifar10 [--flag=value ...]" >&2; exit 2 ;;
esac
dataset=$1
shift

step() {
  echo "== python -m zskd_tf.main --flagfile=$1 $*"
  python -m zskd_tf.main "--flagfile=$1" "${@:2}"
}

step "flags/teachers/${teacher}.cfg" "$@"
for name in impressions student evaluate export; do
  step "flags/zskd/${dataset}_${name}.cfg" "$@"
done
echo "== done: runs/zskd/${dataset}/evaluate/result.json"
