"""Errors that the user can fix.

Every error raised for bad input is a :class:`LinrepError` whose message is one line that names the
problem and the fix. The CLI prints it as ``linrep: error: <message>`` and exits with status 2, with
no traceback; the Python API simply raises it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "LinrepError",
    "ConfigError",
    "InputError",
    "OutputError",
    "TrainingError",
    "did_you_mean",
]


class LinrepError(Exception):
    """Base class of all user-facing errors (exit code 2 on the command line)."""

    exit_code = 2


class ConfigError(LinrepError, ValueError):
    """A configuration file, key or value is invalid."""


class InputError(LinrepError, ValueError):
    """A file, path or argument given to linrep is invalid (not a config key)."""


class OutputError(LinrepError, OSError):
    """A result could not be written (disk full, file too large, permission denied).

    Raised by every writer of :mod:`linrep.io`; the file being replaced is left as it was.
    """


class TrainingError(LinrepError, RuntimeError):
    """Training could not continue (e.g. a NaN loss)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or a list of valid choices.

    Args:
        word: what the user wrote.
        choices: the valid spellings.

    Returns:
        A short suffix to append to an error message.
    """
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid: {', '.join(repr(c) for c in choices)})"
