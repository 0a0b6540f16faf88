# Wall-clock reading and the validation of durations and timestamps shared by
# the builder and the task fields.

from libc.math cimport INFINITY

cdef inline double _wall_now() noexcept:
    """UNIX time in seconds, read without touching Python's ``time`` module."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef object _timedelta = _datetime.timedelta
cdef object _datetime_cls = _datetime.datetime


cdef double _as_seconds(object value, str name, bint allow_zero) except? -1.0:
    """Validate a duration given as a number of seconds or a ``timedelta``."""
    cdef double seconds
    if isinstance(value, bool) or not isinstance(value, (int, float, _timedelta)):
        raise TypeError(
            f"{name}: expected seconds as int, float or timedelta, "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(value, _timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = value
        except OverflowError:
            # An int beyond the range of a double: as unusable as infinity.
            seconds = INFINITY
    if isnan(seconds) or isinf(seconds):
        raise ValueError(f"{name}: duration must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: duration must be {bound} seconds, got {value!r}")
    return seconds


cdef double _as_timestamp(object value, str name) except? -1.0:
    """Validate a UNIX timestamp in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name}: expected a UNIX timestamp in seconds (int or float), "
            f"got {type(value).__name__} {value!r}"
        )
    cdef double seconds
    try:
        seconds = value
    except OverflowError:
        seconds = INFINITY
    if isnan(seconds) or isinf(seconds) or seconds < 0:
        raise ValueError(f"{name}: timestamp must be a finite number >= 0, got {value!r}")
    return seconds


cdef int _as_positive_int(object value, str name) except -1:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value!r}")
    if value > 2147483647:
        raise ValueError(f"{name}: must be <= 2147483647, got {value!r}")
    return value


cdef double _after_now(object delay, str name, double unit) except? -1.0:
    """``now + delay * unit`` seconds, for the builder's ``run_after``/``run_in_*``."""
    cdef double at = _wall_now() + _as_seconds(delay, name, True) * unit
    if isinf(at):
        raise ValueError(f"{name}: delay is too large, got {delay!r}")
    return at


cdef long long _as_priority(object value, str name) except? -1:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if value < -9223372036854775807 - 1 or value > 9223372036854775807:
        raise ValueError(
            f"{name}: must fit in 64 bits "
            f"(-9223372036854775808 to 9223372036854775807), got {value!r}"
        )
    return value
