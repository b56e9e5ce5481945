"""Running an absl program so that user mistakes are one line: ``error: ...``, exit status 2.

Shared by ``python -m zskd_tf.main`` and the scripts in ``tools/``; defines no flags.
"""
import errno
import os
import sys

from absl import app, flags

from zskd_tf.errors import UserError


def fail(message) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


# absl's help flags print the help, then exit with status 1; asking for help is no failure.
_HELP_FLAGS = frozenset({"help", "h", "?", "helpshort", "helpfull", "helpxml"})


def parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except SystemExit as e:
        if e.code == 1 and any(a.lstrip("-").split("=")[0] in _HELP_FLAGS for a in argv[1:]):
            sys.exit(0)
        raise
    except flags.Error as e:
        fail(str(e).splitlines()[0].replace("ERROR:: ", ""))
    except OSError as e:  # e.g. an unreadable --flagfile
        fail(f"cannot read a flag file: {e}")


_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _is_storage_error(e: BaseException) -> bool:
    """A full disk, an exceeded quota or a read-only file system, from Python or TensorFlow."""
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRORS:
        return True
    return any(os.strerror(code) in str(e) for code in _STORAGE_ERRORS)


def run(main) -> None:
    """Parses the flags and runs ``main()``; UserError -> ``error:`` line and exit 2."""
    def guarded(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments {' '.join(argv[1:])}: every option is a --flag")
        try:
            main()
        except UserError as e:
            fail(e)
        except Exception as e:  # noqa: BLE001  (a full or read-only disk is not a bug)
            if not _is_storage_error(e):
                raise
            where = f" {e.filename}" if getattr(e, "filename", None) else ""
            reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
            fail(f"cannot write{where}: {reason}; finished products are kept, and the same "
                 "command resumes once the disk has room")
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume", file=sys.stderr)
            sys.exit(130)

    app.run(guarded, flags_parser=parse_flags)
