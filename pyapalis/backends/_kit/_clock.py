"""The run clock: wall time <-> trio time, converted in one place for every backend.

Backends store when a task is due as UNIX seconds (``run_at``, a lease's
expiry), but every wait in pyapalis happens on trio's clock so tests can run in
virtual time. A backend converts a wall-clock time into a trio deadline when it
queues the task: ``deadline = trio.current_time() + (run_at - wall_now)``.

"Wall now" is ``max(time.time(), trio.current_time() + offset)``, where the
offset ``time.time() - trio.current_time()`` is read once per trio run (when
the run first asks, through :func:`run_clock`). On a real clock the two terms
agree and the conversion is the plain one. Under a virtual clock trio time
leaps ahead while wall time barely moves: then the second term wins, and wall
times written during the run (a retry's ``run_at``, a lease) stay consistent
with the deadlines computed from them. With ``time.time()`` alone, a retried
task's ``run_at`` would look far in the future after each leap and be
re-delayed whenever it is queued again. The first term keeps a task built with
a real ``time.time()`` (as :class:`TaskBuilder` does) due when real time says
so. Tasks converted together (:meth:`DeadlineConverter.deadlines`) share one
reading of wall now, so they keep the order of their ``run_at``.

Whether the run's clock is virtual is *declared*, never guessed: a clock class
registered as a :class:`VirtualClock` (``pyapalis.testing`` registers
``trio.testing.MockClock`` when imported; register your own with
``VirtualClock.register(MyClock)``). Under a virtual clock, backends do
blocking work (an fsync, a SQLite call) on the trio thread: sent to a thread,
the autojump clock would take the wait for idleness and leap ahead.

Code off the trio thread (a producer thread) cannot read trio's clock: it asks
:func:`seconds_until` how far away a ``run_at`` is by the system clock alone.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable

import trio

__all__ = ["DeadlineConverter", "VirtualClock", "run_clock", "seconds_until"]


class VirtualClock(abc.ABC):  # noqa: B024 (a marker: classes are registered, not derived)
    """Marks trio clock classes whose time is virtual (``VirtualClock.register(cls)``).

    A marker, not a base class: nothing is implemented or required. While the
    current run's clock is one, :attr:`DeadlineConverter.virtual` is true.
    """


class DeadlineConverter:
    """Converts wall-clock times to trio deadlines and back for one trio run."""

    __slots__ = ("_offset", "virtual")

    def __init__(self) -> None:
        # Read both clocks back to back: the offset is fixed for the run.
        self._offset = time.time() - trio.current_time()
        self.virtual = isinstance(trio.lowlevel.current_clock(), VirtualClock)
        """True when the run's clock is a registered :class:`VirtualClock`: blocking
        work must then not be sent to a thread, or the autojump clock takes the
        wait for idleness and leaps ahead."""

    def wall_now(self, now: float | None = None) -> float:
        """Now as wall-clock seconds; ``now`` is ``trio.current_time()`` if given."""
        if now is None:
            now = trio.current_time()
        return max(time.time(), now + self._offset)

    def deadline(self, wall: float, now: float | None = None) -> float:
        """The trio deadline of the wall-clock time ``wall``."""
        if now is None:
            now = trio.current_time()
        return now + (wall - self.wall_now(now))

    def deadlines(self, now: float | None = None) -> Callable[[float], float]:
        """A converter of wall-clock times to trio deadlines with one reading of
        wall now: tasks converted with it keep the order of their ``run_at``."""
        if now is None:
            now = trio.current_time()
        shift = now - self.wall_now(now)

        def deadline(wall: float) -> float:
            return wall + shift

        return deadline

    def wall_time(self, deadline: float, now: float | None = None) -> float:
        """The wall-clock time of a trio ``deadline`` (the inverse of :meth:`deadline`)."""
        if now is None:
            now = trio.current_time()
        return self.wall_now(now) + (deadline - now)


_CONVERTER: trio.lowlevel.RunVar[DeadlineConverter] = trio.lowlevel.RunVar("pyapalis_clock")


def run_clock() -> DeadlineConverter:
    """The converter of the current trio run (created on first use; call inside a run)."""
    try:
        return _CONVERTER.get()
    except LookupError:
        converter = DeadlineConverter()
        _CONVERTER.set(converter)
        return converter


def seconds_until(wall: float) -> float:
    """How far the wall-clock time ``wall`` is from now by the system clock (may be < 0).

    For code that cannot read trio's clock (another thread, or before any
    run); inside a run, convert with :func:`run_clock` instead.
    """
    return wall - time.time()
