# Attempt: how many times a task has started executing.

# The largest count a C ``long long`` holds; both cores refuse to go past it.
cdef long long _ATTEMPT_MAX = 9223372036854775807


@cython.final
@cython.freelist(256)
cdef class Attempt:
    """A counter of executions, shared by a task and its clones.

    The worker increments it when an execution starts, so a handler's first
    run sees 1. It is a mutable object on purpose: a retry layer holding a
    clone of the task sees the count the worker advanced.
    """

    cdef long long _count

    def __init__(self, n=0):
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"Attempt: n must be an int, got {type(n).__name__} {n!r}")
        if n < 0:
            raise ValueError(f"Attempt: n must be >= 0, got {n!r}")
        if n > _ATTEMPT_MAX:
            raise ValueError(f"Attempt: n must be <= {_ATTEMPT_MAX}, got {n!r}")
        self._count = n

    def current(self):
        """The number of executions started so far."""
        return self._count

    def increment(self):
        """Count one more execution; returns the previous count."""
        if self._count == _ATTEMPT_MAX:
            # The C counter would wrap to a negative number.
            raise OverflowError(f"Attempt: the counter is at its maximum ({_ATTEMPT_MAX})")
        self._count += 1
        return self._count - 1

    def __int__(self):
        return self._count

    def __index__(self):
        return self._count

    def __repr__(self):
        return f"Attempt({self._count})"

    def __eq__(self, other):
        if isinstance(other, Attempt):
            return self._count == (<Attempt>other)._count
        if isinstance(other, int) and not isinstance(other, bool):
            return self._count == other
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        if result is NotImplemented:
            return result
        return not result

    # A mutable counter must not be a dict key.
    __hash__ = None


cdef inline Attempt _new_attempt(long long count):
    cdef Attempt attempt = Attempt.__new__(Attempt)
    attempt._count = count
    return attempt
