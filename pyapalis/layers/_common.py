"""What the built-in layers share: argument checks and the outcome a task layer saw."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .._implementation import Task
from .._status import Status
from .._worker._service import NotReadyError

__all__ = [
    "check_callable",
    "check_count",
    "check_seconds",
    "outcome_label",
]

_LABELS = {
    Status.Done: "Done",
    Status.Failed: "Failed",
    Status.Killed: "Killed",
    Status.Pending: "Retry",
}


def check_count(owner: str, name: str, value: object) -> int:
    """``value`` as an int >= 1, or TypeError/ValueError naming ``owner: name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {value!r}")
    return value


def check_seconds(owner: str, name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` (int, float or timedelta) as finite seconds > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{owner}: {name} must be seconds (int, float or timedelta), "
            f"got {type(value).__name__} {value!r}"
        )
    else:
        seconds = float(value)
    if (
        math.isnan(seconds)
        or math.isinf(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{owner}: {name} must be a finite number of seconds {bound}, got {value!r}"
        )
    return seconds


def check_callable(owner: str, name: str, value: object) -> Callable[..., Any]:
    """``value`` if it is callable, else TypeError naming ``owner: name``."""
    if not callable(value):
        raise TypeError(f"{owner}: {name} must be callable, got {type(value).__name__} {value!r}")
    return value


def outcome_label(task: Task, error: BaseException | None) -> str:
    """What became of the task, as a task layer sees it once its inner service is done.

    ``Done``, ``Retry`` (queued again), ``Failed`` or ``Killed`` once the
    backend acknowledgement ran; ``Error`` for a failure raised before it (a
    layer refused the task; the worker settles it next); ``HandedBack`` when
    a layer inside could not take the task yet (:class:`NotReadyError`: the
    worker returns it to the backend unchanged).
    """
    label = _LABELS.get(task.parts.status)
    if label is not None:
        return label
    if error is None:
        return "Done"
    return "HandedBack" if isinstance(error, NotReadyError) else "Error"
