"""The two kinds of failure a user can meet, so the CLIs can map them to exit codes.

`UsageError` is bad input (a flag, a field, a file): exit 2. `RunError` is a run that could not
finish for a reason outside the arguments (no network for a push, a full disk): exit 1.
Both carry a one-line message that names the flag or field; neither is ever an `assert`.
"""


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
