"""The two kinds of failure a user sees: bad input (`UsageError`, naming the flag; exit 2) and a run that cannot
go on (`RunError`, exit 1).
"""

from __future__ import annotations


class MLMError(Exception):
    """Base class of the toolkit's user-facing errors."""

    exit_code = 1


class UsageError(MLMError, ValueError):
    """The input is wrong; the message names the flag or field to fix."""

    exit_code = 2

    def __init__(self, message: str, flag: str | None = None):
        self.flag, self.detail = flag, message
        super().__init__(f"{flag}: {message}" if flag else message)


class WrongType(UsageError, TypeError):
    """A value of the wrong type, from Python: a `TypeError` to the caller, exit 2 on the command line."""


class RunError(MLMError, RuntimeError):
    """The input is fine but the run cannot go on (network, disk, a missing checkpoint)."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler ending a job) in a CLI, met as Ctrl-C is: a training loop saves a checkpoint."""
