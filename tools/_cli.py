"""What the tools share: the repository on sys.path, quiet TensorFlow, and ``run(main)``
(``zskd_tf.cli_runner``), which turns a flag error or a UserError into one line ``error: ...``
and exit status 2."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from zskd_tf.cli_runner import fail, run  # noqa: E402,F401
