"""The errors an operation reports to a person, each with the exit code scripts rely on."""

from __future__ import annotations

import enum

__all__ = ["ExitCode", "OperationError"]


class ExitCode(enum.IntEnum):
    """The ``pyapalis`` command's exit codes (documented in the README)."""

    OK = 0
    """Done (a worker stopped by SIGINT/SIGTERM also exits 0)."""
    FAILURE = 1
    """The store failed (unreachable, locked, corrupt) or the worker raised."""
    USAGE = 2
    """Bad arguments: an unknown URL scheme or option, a MODULE:ATTR naming nothing."""
    NOT_FOUND = 3
    """No task with that id."""
    UNSUPPORTED = 4
    """The backend lacks the capability the action needs."""
    CONFLICT = 5
    """The task's status does not allow the action (retrying a Pending task)."""
    INTERRUPTED = 130
    """Ctrl-C before the command could install its own handling."""


class OperationError(Exception):
    """An operation that cannot be done: one line for a person, an exit code for a script."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message
