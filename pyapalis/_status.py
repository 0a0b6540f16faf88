"""The lifecycle states of a task, shared by both cores and every backend."""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.StrEnum):
    """Where a task is in its life.

    The values equal the names so a status round-trips through JSON and SQL as
    its name: ``Status("Done") is Status.Done`` and ``str(Status.Done) == "Done"``.
    ``Failed`` is a real final state: unlike apalis, a task that exhausted its
    attempts is never recorded as ``Done``.
    """

    Pending = "Pending"
    """Waiting in a backend for a worker (or for its ``run_at``)."""
    Queued = "Queued"
    """Taken by a backend's fetcher, not yet started."""
    Running = "Running"
    """A worker is executing it."""
    Done = "Done"
    """Finished successfully."""
    Failed = "Failed"
    """Failed and no attempts remain."""
    Killed = "Killed"
    """Aborted (``AbortError``) or killed by hand: never retried."""

    @classmethod
    def _missing_(cls, value: object) -> Status:
        names = ", ".join(member.name for member in cls)
        raise ValueError(f"unknown Status {value!r}; expected one of: {names}")

    @property
    def is_final(self) -> bool:
        """True for the states a task never leaves: Done, Failed, Killed."""
        return self in _FINAL


_FINAL = frozenset({Status.Done, Status.Failed, Status.Killed})
