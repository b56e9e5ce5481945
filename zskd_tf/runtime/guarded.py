"""Reading files back: one guarded path for every file zskd_tf reads from a run directory.

A file can be damaged after it was written (a disk error, a copy cut short, an edit by hand).
Each reader here reads the whole file and raises :class:`DamagedFile` naming it, whatever the
parser raised. The caller decides what a damaged file means: a run's own state is discarded
and made again (:func:`discard`); another run's product is a UserError naming the file
(:func:`damaged_input`).
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

from zskd_tf.errors import UserError


class DamagedFile(Exception):
    """``path`` exists but cannot be read back whole."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def read_json(path: str):
    """The parsed JSON file ``path``; DamagedFile if it is not whole, valid UTF-8 JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedFile(path, _reason(e)) from None


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` archive ``path``, read in full (CRCs checked)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except OSError:
        if not os.path.exists(path):
            raise
        raise DamagedFile(path, "not a readable .npz archive") from None
    except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy raise many kinds
        raise DamagedFile(path, _reason(e)) from None


def read_npy(path: str) -> np.ndarray:
    """The array in the ``.npy`` file ``path``."""
    try:
        return np.load(path, allow_pickle=False)
    except OSError:
        if not os.path.exists(path):
            raise
        raise DamagedFile(path, "not a readable .npy file") from None
    except Exception as e:  # noqa: BLE001
        raise DamagedFile(path, _reason(e)) from None


def discard(path: str, reason: str, consequence: str) -> None:
    """Deletes the damaged run-state file (or directory) ``path`` and says so on stderr.

    Args:
      path: the damaged file.
      reason: what is wrong with it.
      consequence: what happens instead, e.g. "it is made again".
    """
    print(f"warning: {path} is damaged ({reason}); {consequence}", file=sys.stderr, flush=True)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def damaged_input(e: DamagedFile, advice: str) -> UserError:
    """The UserError for a damaged file produced by another run (a teacher, statistics)."""
    return UserError(f"{e.path} is damaged ({e.reason}); {advice}")
