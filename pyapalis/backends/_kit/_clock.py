"""One mapping between wall-clock time and trio's clock per trio run.

Backends store when a task is due as UNIX seconds (``run_at``, a lease's
expiry), but every wait in pyapalis happens on trio's clock so tests can run in
virtual time. A backend converts a wall-clock time into a trio deadline when it
queues the task:
``deadline = trio.current_time() + (run_at - time.time())``.

"Wall now" is ``max(time.time(), trio.current_time() + offset)``, where the
offset ``time.time() - trio.current_time()`` is read once per trio run (when
the run first asks, through :func:`run_clock`). On a real clock the two terms
agree and the conversion is exactly the one above. Under a virtual clock
(``trio.testing.MockClock``) trio time leaps ahead while wall time barely
moves: then the second term wins, and wall times written during the run
(a retry's ``run_at``, a lease) stay consistent with the deadlines computed
from them. With ``time.time()`` alone, a retried task's ``run_at`` would look
far in the future after each leap and be re-delayed whenever it is queued
again. The first term keeps a task built with a real ``time.time()`` (as
:class:`TaskBuilder` does) due when real time says so.
"""

from __future__ import annotations

import sys
import time

import trio

__all__ = ["DeadlineConverter", "run_clock"]


class DeadlineConverter:
    """Converts wall-clock times to trio deadlines and back for one trio run."""

    __slots__ = ("_offset", "virtual")

    def __init__(self) -> None:
        # Read both clocks back to back: the offset is fixed for the run.
        self._offset = time.time() - trio.current_time()
        # trio.testing is not imported here (it pulls in pytest): if nobody
        # imported it, the run's clock cannot be its MockClock.
        testing = sys.modules.get("trio.testing")
        self.virtual = testing is not None and isinstance(
            trio.lowlevel.current_clock(), testing.MockClock
        )
        """True under a virtual clock: blocking work must then not be sent to a
        thread, or the autojump clock takes the wait for idleness and leaps ahead."""

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
