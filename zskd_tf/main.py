"""Command line: ``python -m zskd_tf.main --procedure=NAME --run_dir=DIR [--flagfile=F]``.

User mistakes print one line ``error: ...`` and exit with status 2; a bug in zskd_tf exits
with status 1 and a traceback.
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from zskd_tf import cli_flags, cli_help, cli_runner  # noqa: E402  (cli_flags defines the flags)


def main():
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress goes to stdout; --verbosity=0 for more
    cfg = cli_flags.config_from_flags()
    ignored = cli_flags.unread(cfg.procedure, cli_help.flags_typed(sys.argv))
    if ignored:
        print(f"warning: {cli_flags.unread_warning(cfg.procedure, ignored)}", file=sys.stderr,
              flush=True)
    from zskd_tf import procedures
    procedures.run(cfg)


if __name__ == "__main__":
    if cli_help.asks_for_help(sys.argv):  # --help: the flags of the procedure named
        _procedure = cli_help.procedure_named(sys.argv)
        for _name in cli_help.help_flags(_procedure):
            flags.declare_key_flag(_name)
        __doc__ = cli_help.usage(__doc__, _procedure)
    cli_runner.run(main)
