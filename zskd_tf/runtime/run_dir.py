"""The run directory: flags.cfg, metrics.jsonl, result.json, checkpoints/ and products.

A run directory belongs to one procedure and one set of flags. Running the same command
again resumes (or, when ``result.json`` exists, reports the finished result); running a
different command on it is refused unless ``--overwrite`` is given. ``--overwrite`` only ever
deletes a directory zskd_tf recognises as a run (it holds ``flags.cfg`` or the marker file
``.zskd_tf_run``); a non-empty directory of anything else is refused, with or without it.

One process writes a run directory at a time: it holds an exclusive advisory ``fcntl.flock``
on the marker file (which records its PID) from the moment it accepts the directory until it
exits; the operating system releases the lock when the process dies, even by SIGKILL. A
process that finds the same run finished and intact only reads it, under a shared lock: any
number of them may report (or use) a finished run at once, and none of them while it is being
written or replaced.

What the directory knows of the command line's flags (their names and defaults, which are
operational, which name input files) comes with the config, as ``cfg.flag_schema``: a
:class:`FlagSchema` built by the command-line layer, which this module does not import.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping

from zskd_tf.errors import UserError
from zskd_tf.runtime import atomic, guarded, integrity

FLAGS_FILE = "flags.cfg"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
MARKER_FILE = ".zskd_tf_run"  # marks a directory as a zskd_tf run
INTEGRITY_KEY = "integrity"  # result.json: digests of the products and inputs (runtime.integrity)
_UNREAD = object()


@dataclasses.dataclass(frozen=True)
class FlagSchema:
    """What a run directory needs to know of the command line's flags.

    Built by the command-line layer (``cli_flags.flag_schema()``) and carried by every config
    as ``cfg.flag_schema``.

    Attributes:
        defaults: every flag of zskd_tf (not absl's own) -> its default value. flags.cfg holds
            these flags; one missing from an older flags.cfg had its default.
        operational: flags that say how a run is executed, not what it computes: they may
            change between a run and its resumption.
        input_paths: flags naming files or run directories a command reads: a finished run
            records their digests and is stale when one changes.
        given_only: flags whose being given, not only their value, changes what a command
            does (``--dataset`` of a model that knows its own dataset, ...). flags.cfg holds
            them only when given, so that the file, replayed as a ``--flagfile``, runs the
            same command; a missing line means the default, as for an older flags.cfg.
    """
    defaults: Mapping[str, object]
    operational: frozenset[str] = frozenset()
    input_paths: tuple[str, ...] = ()
    given_only: frozenset[str] = frozenset()

    @property
    def names(self) -> list[str]:
        """The flag names, sorted."""
        return sorted(self.defaults)

    def default_line(self, name: str) -> str | None:
        """The flags.cfg line of ``name`` at its default (None: not a flag, or no default)."""
        return _flag_line(name, self.defaults[name]) if name in self.defaults else None


def _is_temporary(name: str) -> bool:
    """An atomic writer's temporary ``.NAME.XXXX.tmp`` (see runtime.atomic)."""
    return name.startswith(".") and name.endswith(".tmp")


def _is_own_leftover(name: str) -> bool:
    return name == MARKER_FILE or _is_temporary(name)


_LOCKS: dict[str, tuple[int, bool]] = {}  # run directory -> (descriptor of its locked
# marker, whether the lock is exclusive), for this process


def _lock(path: str, exclusive: bool = True) -> None:
    """Takes the run directory's lock for the rest of this process (re-entrant).

    Args:
        path: the run directory (it exists).
        exclusive: True to write the directory (one process; its PID goes into the marker),
            False to read a finished run (any number of readers, no writer). A shared lock is
            upgraded when asked for an exclusive one; ``flock`` drops the shared lock first, so
            another process may win the directory in between, and then this one is refused.

    Raises:
        UserError: another process writes the directory (naming its PID), or reads it and
            ``exclusive`` is asked for.
    """
    held = _LOCKS.get(path)
    if held is not None and (held[1] or not exclusive):
        return
    fd = held[0] if held else os.open(os.path.join(path, MARKER_FILE), os.O_RDWR | os.O_CREAT,
                                      0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        _LOCKS.pop(path, None)
        raise UserError(_in_use(path, fd)) from None
    if exclusive:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _LOCKS[path] = (fd, exclusive)


def _in_use(path: str, fd: int) -> str:
    """Why ``path`` cannot be locked, found out with ``fd`` (which is then closed): a writer
    holds it (its PID is in the marker) or readers do (a shared lock can still be had)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        who = "is being read by another zskd_tf process (which reports or uses the finished run)"
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        who = f"is in use by another zskd_tf process (PID {holder})"
    finally:
        os.close(fd)
    return (f"--run_dir={path} {who}; wait for it to end (or stop it), then run the command "
            "again")


def release_locks() -> None:
    """Releases every run-directory lock this process holds (for callers that run several
    procedures in one process; a process that exits releases them anyway)."""
    for path in list(_LOCKS):
        os.close(_LOCKS.pop(path)[0])  # closing the descriptor releases its flock


def is_run_directory(path: str) -> bool:
    """Whether ``path`` is a directory zskd_tf made for a run (flags.cfg or the marker)."""
    return (os.path.isfile(os.path.join(path, FLAGS_FILE))
            or os.path.isfile(os.path.join(path, MARKER_FILE)))


def _flag_line(name: str, value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}={','.join(str(v) for v in value)}"
    return f"--{name}={value}"


def flag_lines(cfg) -> dict[str, str]:
    """Flag name -> the flagfile line that sets it (flags left at None are omitted, and so are
    the schema's ``given_only`` flags that were not given).

    Args:
        cfg: a config carrying its ``flag_schema`` (:class:`FlagSchema`) and, optionally, the
            names given (``present``; without it every flag counts as given).

    Returns:
        {flag name: line}, ``--overwrite`` left out.
    """
    schema, given = cfg.flag_schema, getattr(cfg, "present", None)
    lines = {}
    for name in schema.names:
        if name in schema.given_only and given is not None and name not in given:
            continue
        line = _flag_line(name, getattr(cfg, name, None))
        if line is not None and name != "overwrite":
            lines[name] = line
    return lines


DIGEST_PREFIX = "# sha256 of the lines below: "  # the first line of flags.cfg


def flagfile_text(lines: dict[str, str]) -> str:
    """The text of flags.cfg: a comment line with the SHA-256 of the lines below it (absl
    flagfiles skip comments), then one flag per line, sorted. Damage to any byte, a cut
    included, no longer matches the digest."""
    body = "".join(lines[n] + "\n" for n in sorted(lines))
    return f"{DIGEST_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}\n{body}"


def _read_flagfile(path: str, known) -> tuple[dict[str, str], bool]:
    """Flag name -> line of a saved flags.cfg, and whether the file is damaged: it does not
    match its digest line, or (files written before the digest) a line is not a flag of
    ``known`` or not printable text."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace")  # damaged bytes: U+FFFD
    first, _, rest = text.partition("\n")
    digest = first[len(DIGEST_PREFIX):] if first.startswith(DIGEST_PREFIX) else None
    if digest is not None:
        text = rest
    lines = {}
    damaged = "\ufffd" in text or (
        digest is not None and hashlib.sha256(text.encode()).hexdigest() != digest)
    for line in text.splitlines():
        line = line.strip()
        if not line or (line.startswith("#") and line.isascii()):
            continue
        if not line.startswith("--") or not line.isprintable():
            damaged = True
            continue
        name = line[2:].split("=", 1)[0]
        if "=" not in line and name.startswith("no") and name[2:] in known:
            name = name[2:]
        damaged = damaged or name not in known
        lines[name] = line
    return lines, damaged


class RunDir:
    """Paths and bookkeeping of one run directory."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._stale = None  # why the directory's content is another run (set by check)
        self._result = _UNREAD  # result() read and verified once
        self._inputs = None  # digests of the input paths (set by check/claim)
        self._warned_damage = False  # check() runs again in claim(): say it once

    def file(self, *names: str) -> str:
        return os.path.join(self.path, *names)

    # -- set-up ---------------------------------------------------------------------------
    def check(self, cfg) -> bool:
        """Whether this directory holds this same run (to resume or report).

        Raises UserError when it holds something else and ``--overwrite`` is not given, when
        it is not a zskd_tf run, when another process holds it, or when it cannot be written.
        Writes nothing but the lock of a run directory it accepts: call ``claim`` once the
        inputs are validated, so that a command refused for bad input leaves the directory
        as it was.
        """
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UserError(f"--run_dir={self.path} is a file, not a directory")
        existing = self.path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"cannot write to --run_dir={self.path} ({existing} is not "
                            "writable)")
        self._stale = None
        if not (os.path.isdir(self.path)
                and any(not _is_own_leftover(name) for name in os.listdir(self.path))):
            return False
        if not is_run_directory(self.path):
            raise UserError(f"--run_dir={self.path} holds files that zskd_tf did not write (no "
                            f"{FLAGS_FILE}); it is never deleted, not even with --overwrite: "
                            "choose another --run_dir")
        saved_path = self.file(FLAGS_FILE)
        saved, damaged = (_read_flagfile(saved_path, cfg.flag_schema.defaults)
                          if os.path.exists(saved_path) else ({}, False))
        if "procedure" not in saved:
            self._stale = f"holds a run whose {FLAGS_FILE} is missing or damaged"
        else:
            self._stale = self._difference(saved, flag_lines(cfg), cfg.flag_schema)
            if damaged and self._stale:
                self._stale = (f"holds a run whose {FLAGS_FILE} is damaged: what the run was "
                               "is unknown")
            elif damaged and not self._warned_damage:  # claim() rewrites it
                self._warned_damage = True
                print(f"warning: {saved_path} is damaged; every flag that defines the run "
                      "still matches, so it is rewritten and the run goes on",
                      file=sys.stderr, flush=True)
        if self._stale and not cfg.overwrite:
            raise UserError(f"--run_dir={self.path} {self._stale}; use a new --run_dir, or "
                            "--overwrite to replace it")
        # Before anything is read back or replaced: a finished, intact run is only read (a
        # shared lock); anything else is written (resumed, healed or replaced: exclusive).
        _lock(self.path, exclusive=bool(self._stale))
        if not self._stale:
            if self._result is _UNREAD:
                self._result = self._verified_result(discard=False)
            if self._result is None:  # unfinished or damaged: this process will write it
                _lock(self.path)
                self._result = _UNREAD  # read again under the exclusive lock
            self._stale = self._changed_inputs(cfg)
            if self._stale and not cfg.overwrite:
                raise UserError(f"--run_dir={self.path} {self._stale}; use --overwrite to "
                                "redo it, or a new --run_dir")
        return not self._stale

    def claim(self, cfg) -> None:
        """Replaces a different run (``--overwrite``), creates the directory, writes flags.cfg."""
        if self.path in _LOCKS:  # an earlier check() read it: exclusive before it reads again
            _lock(self.path)
        self.check(cfg)
        try:
            os.makedirs(self.path, exist_ok=True)
            _lock(self.path)
            if self._stale:
                self._wipe()
            self._remove_leftovers()
            self._inputs = self._input_digests(cfg)
            current = flag_lines(cfg)
            atomic.write_text(self.file(FLAGS_FILE), flagfile_text(current))
        except OSError as e:
            raise UserError(f"cannot write to --run_dir={self.path}: {e.strerror or e}") from None
        self._stale = None

    def _input_digests(self, cfg) -> dict[str, str]:
        """{flag: SHA-256} of the input paths the command names (teacher, stats, ...)."""
        if self._inputs is None:
            self._inputs = {}
            for name in cfg.flag_schema.input_paths:
                value = getattr(cfg, name, None)
                if (isinstance(value, str) and value and os.path.exists(value)
                        and (name != "dataset" or value.lower().endswith(".npz"))):
                    self._inputs[name] = integrity.path_sha256(
                        value, frozenset({RESULT_FILE, FLAGS_FILE}), is_run_directory)
        return self._inputs

    def _changed_inputs(self, cfg) -> str | None:
        """Why a finished run is stale: an input it recorded has changed since, or None."""
        result = self.result()
        recorded = ((result or {}).get(INTEGRITY_KEY) or {}).get("inputs") or {}
        current = self._input_digests(cfg) if recorded else {}
        changed = [name for name, digest in sorted(recorded.items())
                   if current.get(name) != digest]
        if not changed:
            return None
        shown = ", ".join(f"--{name}={getattr(cfg, name, '?')}" for name in changed)
        return (f"holds a finished run whose input {shown} has changed (or is gone) since "
                "it finished: the run is stale")

    def _remove_leftovers(self) -> None:
        """Deletes what killed atomic writes left behind (``.NAME.XXXX.tmp``, ``NAME.old``)."""
        for root, dirs, _ in os.walk(self.path):
            for name in list(dirs):
                full = os.path.join(root, name)
                if _is_temporary(name) or name.endswith(".old"):
                    shutil.rmtree(full, ignore_errors=True)
                    dirs.remove(name)
                elif is_run_directory(full):  # another run (pipeline steps): its own business
                    dirs.remove(name)

    @staticmethod
    def _difference(saved: dict, current: dict, schema: FlagSchema) -> str | None:
        significant = sorted((set(saved) | set(current)) - schema.operational)
        # A flag absent from an older flags.cfg had its default value (flags added later), as
        # has a given-only flag left out because it was not given (on either side).
        saved = {n: saved.get(n, schema.default_line(n)) for n in significant}
        current = {n: current.get(n, schema.default_line(n) if n in schema.given_only else None)
                   for n in significant}
        diffs = [n for n in significant if saved.get(n) != current.get(n)]
        if not diffs:
            return None
        if "procedure" in diffs:
            return (f"holds a run of another procedure ({saved.get('procedure', '?')}, "
                    f"not {current.get('procedure')})")
        shown = ", ".join(f"{current.get(n) or 'no --' + n} (was {saved.get(n) or 'unset'})"
                          for n in diffs[:3])
        return f"holds a run made with different flags: {shown}"

    def _wipe(self) -> None:
        """Empties this run directory (a recognised zskd_tf run), keeping only its marker."""
        if not is_run_directory(self.path):  # check() refuses this; never delete foreign files
            raise UserError(f"--run_dir={self.path} is not a zskd_tf run: not deleting it")
        for entry in os.listdir(self.path):
            if entry == MARKER_FILE:
                continue
            full = os.path.join(self.path, entry)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)
        self._result = _UNREAD

    # -- results and metrics --------------------------------------------------------------
    def result(self) -> dict | None:
        """The finished run's result, or None if the run has not finished.

        A damaged ``result.json``, or one whose recorded products are now missing or differ,
        is deleted with a warning: the run counts as unfinished, so the same command
        completes it again."""
        if self._result is _UNREAD:
            self._result = self._verified_result()
        return self._result

    def _verified_result(self, discard: bool = True) -> dict | None:
        """result.json if it is intact and its products match it, else None; a damaged one is
        deleted with a warning when ``discard`` (this process holds the exclusive lock)."""
        path = self.file(RESULT_FILE)
        if not os.path.exists(path):
            return None
        try:
            result = guarded.read_json(path)
            damage = None if isinstance(result, dict) else "not a JSON object"
        except guarded.DamagedFile as e:
            result, damage = None, e.reason
        if damage is None:
            recorded = (result.get(INTEGRITY_KEY) or {}).get("products") or {}
            changed = integrity.changed(self.path, recorded)
            if changed:
                damage = (f"its products {', '.join(changed)} are missing or differ from when "
                          "the run finished")
        if damage is None:
            return result
        if discard:
            guarded.discard(path, damage, "the run is taken as unfinished and completed again")
        return None

    def write_result(self, result: dict) -> None:
        """Writes result.json (last: it marks the run finished) with the digests of every
        product and of the inputs (see runtime.integrity)."""
        record = {"products": integrity.digests(self.path, frozenset({RESULT_FILE, FLAGS_FILE}),
                                                is_run_directory)}
        if self._inputs is not None:
            record["inputs"] = self._inputs
        atomic.write_json(self.file(RESULT_FILE), {**result, INTEGRITY_KEY: record})
        self._result = _UNREAD

    def append_metrics(self, record: dict) -> None:
        with open(self.file(METRICS_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def metrics(self) -> list[dict]:
        """The records of metrics.jsonl, in order; a line cut by a kill is skipped."""
        path = self.file(METRICS_FILE)
        if not os.path.exists(path):
            return []
        records = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
        return records

    def truncate_metrics(self, last_step: int) -> None:
        """Drops records logged after ``last_step`` (work lost by an interruption is redone)."""
        path = self.file(METRICS_FILE)
        if not os.path.exists(path):
            return
        kept = [json.dumps(r, sort_keys=True) for r in self.metrics()
                if r.get("step", 0) <= last_step]
        atomic.write_text(path, "".join(k + "\n" for k in kept))
