"""Argument checks every backend shares: one rule, one exception type, one message.

A backend method checks its arguments with these functions before it touches
its store, so the same bad call fails the same way on every backend
(``list_tasks(page="1")`` is a ``TypeError`` on MemoryStorage, JsonStorage,
SQLite, PostgreSQL and Redis alike, with the same message). The conformance
suite (:mod:`pyapalis.testing`) holds every backend to it.

The rules:

- a value of the wrong *type* raises ``TypeError``; a value of the right type
  that is out of range (an empty id, page 0, a negative delay, an unknown
  status name) raises ``ValueError``;
- the message is ``"<where> must be <what is expected>, got <type> <repr>"``,
  the same wording for both exception types, where ``where`` names the
  method and the argument (``"list_tasks: page"``); a long repr is cut short;
- each check returns the value in the form a backend stores (a ``TaskId``, a
  ``Status``, a float of seconds), so callers need no second conversion.

``bool`` is never accepted as a number (``page=True`` is a ``TypeError``).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from typing import TypeGuard

from ..._implementation import Task, TaskId
from ..._status import Status

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "check_count",
    "check_delay",
    "check_final_status",
    "check_limit",
    "check_name",
    "check_page",
    "check_positive_int",
    "check_priority",
    "check_run_at",
    "check_status_filter",
    "check_task",
    "check_task_id",
    "check_task_ids",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""The range of a stored priority (a 64-bit integer column in every database)."""

_SHOWN = 60
"""At most this many characters of a bad value's repr go into a message."""


def _got(value: object) -> str:
    shown = repr(value)
    if len(shown) > _SHOWN:
        shown = shown[: _SHOWN - 3] + "..."
    return f"{type(value).__name__} {shown}"


def _wrong_type(where: str, expected: str, value: object) -> TypeError:
    return TypeError(f"{where} must be {expected}, got {_got(value)}")


def _out_of_range(where: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{where} must be {expected}, got {_got(value)}")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# -- task ids ------------------------------------------------------------------

_TASK_ID = "a TaskId or a non-empty str"


def check_task_id(value: object, where: str) -> TaskId:
    """A task id given as a ``TaskId`` or its text; ``""`` is a ``ValueError``."""
    if isinstance(value, TaskId):
        return value
    if isinstance(value, str):
        if not value:
            raise _out_of_range(where, _TASK_ID, value)
        return TaskId(value)
    raise _wrong_type(where, _TASK_ID, value)


def check_task_ids(values: object, where: str) -> list[TaskId]:
    """A list of task ids from any iterable of them, in order (duplicates kept).

    A single id (a ``str`` or ``TaskId``) is a ``TypeError``: iterating a str
    would silently look up one task per character. A bad item is reported as
    ``"<where> item"``.
    """
    if isinstance(values, (str, bytes, TaskId)) or not isinstance(values, Iterable):
        raise _wrong_type(where, "an iterable of task ids", values)
    item = f"{where} item"
    return [check_task_id(value, item) for value in values]


def check_task(value: object, where: str) -> Task:
    """A :class:`Task` (of the core in use)."""
    if not isinstance(value, Task):
        raise _wrong_type(where, "a Task", value)
    return value


# -- statuses ------------------------------------------------------------------

_STATUS_FILTER = "a Status, a Status name or None"
_FINAL_STATUS = "Status.Done, Status.Failed or Status.Killed"


def check_status_filter(value: object, where: str) -> Status | None:
    """A status to filter by: a ``Status``, its name (``"Done"``) or None for all."""
    if value is None or isinstance(value, Status):
        return value
    if isinstance(value, str):
        try:
            return Status(value)
        except ValueError:
            raise _out_of_range(where, _STATUS_FILTER, value) from None
    raise _wrong_type(where, _STATUS_FILTER, value)


def check_final_status(value: object, where: str) -> Status:
    """The status an ack records: ``Done``, ``Failed`` or ``Killed``."""
    if not isinstance(value, Status):
        raise _wrong_type(where, _FINAL_STATUS, value)
    if not value.is_final:
        raise _out_of_range(where, _FINAL_STATUS, value)
    return value


# -- counts, pages, limits -----------------------------------------------------


def check_positive_int(value: object, where: str) -> int:
    """An int >= 1 (a page number, a page size, a batch size)."""
    if not _is_int(value):
        raise _wrong_type(where, "an int >= 1", value)
    if value < 1:
        raise _out_of_range(where, "an int >= 1", value)
    return value


check_page = check_positive_int
"""``list_tasks``' ``page`` (pages start at 1) and ``page_size``."""


def check_limit(value: object, where: str) -> int | None:
    """A bound that may be absent: an int >= 1, or None for no bound (``maxsize``)."""
    if value is None:
        return None
    if not _is_int(value):
        raise _wrong_type(where, "an int >= 1 or None", value)
    if value < 1:
        raise _out_of_range(where, "an int >= 1 or None", value)
    return value


def check_count(value: object, where: str) -> int:
    """An int >= 0 (how many results to keep, 0 for none)."""
    if not _is_int(value):
        raise _wrong_type(where, "an int >= 0", value)
    if value < 0:
        raise _out_of_range(where, "an int >= 0", value)
    return value


def check_priority(value: object, where: str) -> int:
    """A task priority: an int that fits in 64 bits (higher runs first)."""
    expected = f"an int from {INT64_MIN} to {INT64_MAX}"
    if not _is_int(value):
        raise _wrong_type(where, expected, value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _out_of_range(where, expected, value)
    return value


# -- names ---------------------------------------------------------------------


def check_name(value: object, where: str) -> str:
    """A non-empty str: a queue name, a worker name."""
    if not isinstance(value, str):
        raise _wrong_type(where, "a non-empty str", value)
    if not value:
        raise _out_of_range(where, "a non-empty str", value)
    return value


# -- time ----------------------------------------------------------------------

_DELAY = "a finite number of seconds >= 0 or a timedelta"
_RUN_AT = "a finite UNIX timestamp >= 0 in seconds"


def _seconds(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond the range of a float
        return math.inf


def check_delay(value: object, where: str) -> float:
    """A delay in seconds from now: a finite number >= 0 or a ``timedelta``."""
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _seconds(value)
    else:
        raise _wrong_type(where, _DELAY, value)
    if not 0 <= seconds < math.inf:  # NaN fails this too
        raise _out_of_range(where, _DELAY, value)
    return seconds


def check_run_at(value: object, where: str) -> float:
    """When a task is due, as UNIX seconds (wall clock): a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(where, _RUN_AT, value)
    seconds = _seconds(value)
    if not 0 <= seconds < math.inf:
        raise _out_of_range(where, _RUN_AT, value)
    return seconds
