"""What every method's typed config shares: taking its fields from the flags' values.

A method's config is a frozen dataclass whose fields are flags of the same name
(``zskd/config.py``, ``lopes/config.py``, ``zskt/config.py``); a flag left at None means "the
field's default".
"""
from __future__ import annotations

import dataclasses
import math

from zskd_tf.errors import UserError


def fields_given(cls, values) -> dict:
    """The values of ``cls``'s fields that the flags set.

    Args:
        cls: a dataclass whose fields are named as flags.
        values: the flags' values as attributes (the command line's or the Python API's
            config).

    Returns:
        {field name: value} for every field whose flag is present in ``values`` and not None.
    """
    return {field.name: getattr(values, field.name) for field in dataclasses.fields(cls)
            if getattr(values, field.name, None) is not None}


def parse_numbers(name: str, values, what: str) -> tuple[float, ...]:
    """A list flag's entries (strings or numbers) as floats.

    Args:
        name: the flag's name.
        values: its entries (None: none).
        what: how the message describes the values wanted, e.g. "numbers like 1e-3,1e-1".

    Returns:
        The floats, in order; UserError naming the first entry that is not a number.
    """
    numbers = []
    for value in values or ():
        try:
            numbers.append(float(value))
        except (TypeError, ValueError):
            raise UserError(f"--{name} must be {what}; {value!r} is not a number") from None
    return tuple(numbers)


def check_positive(name: str, value) -> None:
    """UserError unless ``--name``'s value is None or > 0.

    Args:
        name: the flag's name.
        value: its value (None: not given).
    """
    if value is not None and not value > 0:  # also refuses NaN
        raise UserError(f"--{name} must be a positive number, got {value}")


def check_non_negative(name: str, value) -> None:
    """UserError unless ``--name``'s value is None or >= 0.

    Args:
        name: the flag's name.
        value: its value (None: not given).
    """
    if value is not None and not value >= 0:  # also refuses NaN
        raise UserError(f"--{name} must be >= 0, got {value}")


def check_finite_non_negative(name: str, value) -> None:
    """UserError unless ``--name``'s value is a finite number >= 0.

    Args:
        name: the flag's name.
        value: its value.
    """
    if not (math.isfinite(value) and value >= 0):
        raise UserError(f"--{name} must be a finite number >= 0, got {value}")


def check_momentum(name: str, value) -> None:
    """UserError unless ``--name``'s value is in [0, 1) (0: off).

    Args:
        name: the flag's name.
        value: its value.
    """
    if not 0 <= value < 1:  # also refuses NaN
        raise UserError(f"--{name} must be in [0, 1), got {value}")


def check_choice(name: str, value, choices) -> None:
    """UserError unless ``--name``'s value is one of ``choices``.

    Args:
        name: the flag's name.
        value: its value.
        choices: the values it may take.
    """
    if value not in choices:
        raise UserError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")


class FlagConfig:
    """Base of a method's typed config (a frozen dataclass whose fields are named as flags)."""

    @classmethod
    def from_flags(cls, values):
        """The config a command line asks for, checked.

        Args:
            values: the flags' values as attributes (the command line's or the Python API's
                config); a flag left at None takes the field's default.

        Returns:
            ``cls(**fields_given(cls, values))``; the config's own checks raise UserError
            naming the flag of a bad value.
        """
        return cls(**fields_given(cls, values))
