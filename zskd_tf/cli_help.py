"""``--procedure=NAME --help``: the help of one procedure, with only the flags it reads.

absl's ``--help`` lists the *key flags* of the main module; ``main.py`` declares as key flags
the ones :func:`help_flags` returns for the procedure named on the command line (or in a
``--flagfile``), and shows :func:`usage` above them. ``--helpfull`` still lists every flag.
The table of procedures and their flags is :mod:`zskd_tf.procedures.registry`.
"""
from __future__ import annotations

from absl import flags

from zskd_tf.procedures import registry

HELP_ARGS = frozenset({"--help", "-help", "-h", "-?", "--helpshort", "-helpshort"})
# Listed in every procedure's help besides the registry's common flags (absl's own).
ABSL_FLAGS = ("flagfile",)


def asks_for_help(argv: list[str]) -> bool:
    """Whether the command line asks for the short help (``--help``, ``-h``, ...).

    Args:
        argv: the command line, program name first.

    Returns:
        True when one of its arguments is a help flag.
    """
    return any(arg in HELP_ARGS for arg in argv[1:])


def procedure_named(argv: list[str]) -> str | None:
    """The known procedure the command line names, reading ``--flagfile`` files too.

    Args:
        argv: the command line, program name first.

    Returns:
        The last ``--procedure`` value given, or None when there is none, it is not a known
        procedure or a flag file cannot be read (the real parse then reports the mistake).
    """
    try:
        args = flags.FLAGS.read_flags_from_files(argv[1:])
    except (flags.Error, OSError):
        args = argv[1:]
    named = None
    for index, arg in enumerate(args):
        name, equals, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name != "procedure":
            continue
        if not equals:
            value = args[index + 1] if index + 1 < len(args) else ""
        named = value
    return named if named in registry.BY_NAME else None


def flags_typed(argv: list[str]) -> set[str]:
    """The flags written on the command line itself, not those a ``--flagfile`` holds.

    A flag file may be shared between procedures (every run directory's ``flags.cfg`` holds
    every flag), so only flags typed on the command line are worth a warning when the
    procedure does not read them.

    Args:
        argv: the command line, program name first.

    Returns:
        Their names, ``--noNAME`` counted as ``NAME``; ``--flagfile`` and whatever follows a
        bare ``--`` left out.
    """
    typed = set()
    for arg in argv[1:]:
        if arg == "--":
            break
        if not arg.startswith("-"):
            continue
        name = arg.lstrip("-").partition("=")[0]
        if name not in flags.FLAGS and name.startswith("no") and name[2:] in flags.FLAGS:
            name = name[2:]
        if name in flags.FLAGS and name not in ABSL_FLAGS:
            typed.add(name)
    return typed


def help_flags(procedure: str | None) -> tuple[str, ...]:
    """The flags ``--help`` lists.

    Args:
        procedure: a procedure name, or None.

    Returns:
        The procedure's flags (``registry.Procedure.flags``), or the common flags without a
        procedure; each followed by absl's ``--flagfile``.
    """
    own = registry.get(procedure).flags if procedure else registry.COMMON
    return (*own, *ABSL_FLAGS)


def usage(doc: str, procedure: str | None) -> str:
    """The text ``--help`` prints above the flags.

    Args:
        doc: the main module's docstring.
        procedure: a procedure name, or None.

    Returns:
        Without a procedure, ``doc`` followed by the list of procedures; with one, what that
        procedure does and the flags it cannot run without.
    """
    if procedure is None:
        width = max(len(name) for name in registry.NAMES)
        rows = "\n".join(f"  {p.name:<{width}}  {p.summary}" for p in registry.PROCEDURES)
        return (f"{doc.rstrip()}\n\nProcedures (--procedure=NAME --help lists the flags of "
                f"one):\n{rows}\n")
    chosen = registry.get(procedure)
    needs = ", ".join(f"--{name}" for name in chosen.needs)
    return (f"python -m zskd_tf.main --procedure={chosen.name}: {chosen.summary}\n\n"
            f"Needs {needs}. The flags it reads follow; --helpfull lists every flag.\n")
