"""Running an absl program so that user mistakes are one line: ``error: ...``, exit status 2.

Shared by ``python -m zskd_tf.main`` and the scripts in ``tools/``; defines no flags.
"""
import sys

from absl import app, flags

from zskd_tf.errors import UserError


def fail(message) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0].replace("ERROR:: ", ""))
    except OSError as e:  # e.g. an unreadable --flagfile
        fail(f"cannot read a flag file: {e}")


def run(main) -> None:
    """Parses the flags and runs ``main()``; UserError -> ``error:`` line and exit 2."""
    def guarded(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {' '.join(argv[1:])}: every option is a --flag")
        try:
            main()
        except UserError as e:
            fail(e)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume", file=sys.stderr)
            sys.exit(130)

    app.run(guarded, flags_parser=parse_flags)
