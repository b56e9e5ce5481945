#!/usr/bin/env bash
# Installs zskd_tf and what it needs on a fresh Debian/Ubuntu machine:
#  - the Debian package dataset-fashion-mnist (the real Fashion-MNIST, offline);
#  - the package itself with its test extras (TensorFlow 2.21 CPU wheel, Keras 3.15, tfds 4.9).
# Uses the active Python environment (create and activate a venv first if you want one).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
python -m pip install -q --disable-pip-version-check -e ".[test]"
