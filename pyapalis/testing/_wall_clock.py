"""A wall clock that moves with trio's clock, for tests in virtual time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import trio

__all__ = ["WallClock"]


class WallClock:
    """``time.time()`` for a test in virtual time: ``start`` plus trio's clock.

    Backends keep when a task is due as UNIX seconds (``run_at``) and read
    ``time.time()`` to turn it into a wait on trio's clock. Under trio's virtual
    clock (pytest-trio's ``autojump_clock``) the system's wall clock runs on
    while trio's stands still, so how early or late a scheduled task looks
    depends on how busy the machine was between building the task and queueing
    it. While a ``WallClock`` replaces ``time.time()``, wall time is virtual
    time: a task due 30 seconds from now is due exactly 30 virtual seconds
    from now, however slow the machine.

    The clock follows ``clock`` (a :class:`trio.abc.Clock`, such as the
    test's ``autojump_clock``) or, if none is given, the clock of the first
    trio run that reads it; it reads the same from any thread or trio run.
    Before it has a clock it reads ``start``.

    ``start`` defaults to the system clock plus :attr:`AHEAD` (10 minutes), so
    a time stamped by a clock the test does not control (the compiled core's
    ``TaskBuilder`` reads the system clock directly) is already past: a task
    stamped "now" that way is due at once. Build scheduled tasks from this
    clock: ``TaskBuilder(args).run_at_timestamp(clock.after(30))``.

    Code that reads the time as ``time.time()`` sees it; ``from time import
    time`` keeps the system's.

    In a pytest test::

        @pytest.fixture
        def wall_clock(monkeypatch, autojump_clock):
            clock = WallClock(clock=autojump_clock)
            monkeypatch.setattr(time, "time", clock)
            return clock

    or ``with WallClock().installed() as clock: ...``.
    """

    AHEAD = 600.0
    """Seconds the default start is ahead of the system clock."""

    __slots__ = ("_clock", "start")

    def __init__(self, start: float | None = None, *, clock: trio.abc.Clock | None = None) -> None:
        self.start = time.time() + self.AHEAD if start is None else float(start)
        """Wall-clock seconds at time 0 of the trio clock."""
        self._clock = clock

    @property
    def clock(self) -> trio.abc.Clock | None:
        """The trio clock this wall clock follows (None until a trio run reads it)."""
        return self._clock

    def now(self) -> float:
        """Wall-clock seconds now: ``start + clock.current_time()``."""
        clock = self._clock
        if clock is None:
            try:
                clock = trio.lowlevel.current_clock()
            except RuntimeError:  # not inside a trio run, and not bound to one yet
                return self.start
            self._clock = clock
        return self.start + clock.current_time()

    __call__ = now

    def after(self, seconds: float) -> float:
        """The wall-clock time ``seconds`` from now (for ``run_at_timestamp``)."""
        return self.now() + seconds

    @contextlib.contextmanager
    def installed(self) -> Iterator[WallClock]:
        """Replace ``time.time`` with this clock inside the block."""
        saved = time.time
        time.time = self
        try:
            yield self
        finally:
            time.time = saved

    def __repr__(self) -> str:
        return f"WallClock(start={self.start!r}, clock={self._clock!r})"
