"""Twin of ``csrc/_time.pxi``: validation of durations, timestamps and limits."""

from __future__ import annotations

import datetime as _datetime
import math
import time

_Seconds = int | float | _datetime.timedelta


# -- validation shared by the builder and the task fields --------------------


def _as_seconds(value: object, name: str, allow_zero: bool) -> float:
    """Validate a duration given as a number of seconds or a ``timedelta``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, _datetime.timedelta)):
        raise TypeError(
            f"{name}: expected seconds as int, float or timedelta, "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(value, _datetime.timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except OverflowError:
            # An int beyond the range of a float: as unusable as infinity.
            seconds = math.inf
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name}: duration must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: duration must be {bound} seconds, got {value!r}")
    return seconds


def _as_timestamp(value: object, name: str) -> float:
    """Validate a UNIX timestamp in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name}: expected a UNIX timestamp in seconds (int or float), "
            f"got {type(value).__name__} {value!r}"
        )
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"{name}: timestamp must be a finite number >= 0, got {value!r}")
    return seconds


def _as_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value!r}")
    if value > 2147483647:
        raise ValueError(f"{name}: must be <= 2147483647, got {value!r}")
    return int(value)


def _after_now(delay: object, name: str, unit: float) -> float:
    """``now + delay * unit`` seconds, for the builder's ``run_after``/``run_in_*``."""
    at = time.time() + _as_seconds(delay, name, True) * unit
    if math.isinf(at):
        raise ValueError(f"{name}: delay is too large, got {delay!r}")
    return at


def _as_priority(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if value < -9223372036854775807 - 1 or value > 9223372036854775807:
        raise ValueError(
            f"{name}: must fit in 64 bits "
            f"(-9223372036854775808 to 9223372036854775807), got {value!r}"
        )
    return int(value)
