"""Command line: ``python -m zskd_tf.main --procedure=NAME --run_dir=DIR [--flagfile=F]``.

User mistakes print one line ``error: ...`` and exit with status 2; a bug in zskd_tf exits
with status 1 and a traceback.
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from zskd_tf import cli_flags  # noqa: E402  (defines the flags)
from zskd_tf.errors import UserError  # noqa: E402


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _parse(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(str(e).splitlines()[0].replace("ERROR:: ", ""))
    except OSError as e:  # e.g. an unreadable --flagfile
        _fail(f"cannot read a flag file: {e}")


def main(argv):
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress goes to stdout; --verbosity=0 for more
    if len(argv) > 1:
        _fail(f"unexpected arguments {' '.join(argv[1:])}: every option is a --flag")
    try:
        cfg = cli_flags.config_from_flags()
        from zskd_tf import procedures
        procedures.run(cfg)
    except UserError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
