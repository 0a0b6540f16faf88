"""Twin of ``csrc/_attempt.pxi``: the ``Attempt`` counter."""

from __future__ import annotations

from typing import ClassVar, final

__all__ = ["Attempt", "uncount"]

# -- Attempt ------------------------------------------------------------------

# The largest count the compiled core's C ``long long`` holds.
_ATTEMPT_MAX = 9223372036854775807


@final
class Attempt:
    """A counter of executions, shared by a task and its clones.

    The worker increments it when an execution starts, so a handler's first
    run sees 1. It is a mutable object on purpose: a retry layer holding a
    clone of the task sees the count the worker advanced.
    """

    __slots__ = ("_count",)

    def __init__(self, n: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"Attempt: n must be an int, got {type(n).__name__} {n!r}")
        if n < 0:
            raise ValueError(f"Attempt: n must be >= 0, got {n!r}")
        if n > _ATTEMPT_MAX:
            raise ValueError(f"Attempt: n must be <= {_ATTEMPT_MAX}, got {n!r}")
        self._count = int(n)

    def current(self) -> int:
        """The number of executions started so far."""
        return self._count

    def increment(self) -> int:
        """Count one more execution; returns the previous count."""
        if self._count == _ATTEMPT_MAX:
            # The compiled core's C counter would wrap: both cores stop here.
            raise OverflowError(f"Attempt: the counter is at its maximum ({_ATTEMPT_MAX})")
        self._count += 1
        return self._count - 1

    def __int__(self) -> int:
        return self._count

    def __index__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Attempt({self._count})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attempt):
            return self._count == other._count
        if isinstance(other, int) and not isinstance(other, bool):
            return self._count == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        if result is NotImplemented:
            return NotImplemented
        return not result

    # A mutable counter must not be a dict key.
    __hash__: ClassVar[None] = None  # type: ignore[assignment]


def uncount(attempt: Attempt) -> None:
    """Take back the last counted execution, if any (``undo_attempt``'s step).

    The compiled core does this on the C field directly; the twin has it here,
    next to the counter, so no other module touches ``Attempt``'s state.
    """
    if attempt._count > 0:
        attempt._count -= 1
