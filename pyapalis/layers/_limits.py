"""Task layers that limit how much work starts: concurrency, rate, load shedding.

The limits work through readiness: ``ready()`` waits until a task may start
and reserves that start for the consumer loop that asked (a trio task), so the
worker pulls a task only when it can run it (backpressure). The reservation is
kept across ``ready()`` calls of the same loop (after an idle wait, a pause),
and used by that loop's next call; a call without one (below a
``LoadShedLayer``, or a service called directly) takes its own, waiting if it
must. ``ready_nowait()`` reserves without waiting, for ``LoadShedLayer``.

Each service a layer builds has its own state (as in tower): every worker
built with a layer gets its own limit. (A limit shared by several workers would
let the reservations of one worker's idle loops starve the others.)
"""

from __future__ import annotations

import collections
import math
from datetime import timedelta
from typing import Any

import trio

from .._errors import OverloadedError
from .._implementation import Task
from .._worker._service import AlwaysReady, Service, ready_nowait_of
from ._common import check_count, check_seconds

__all__ = ["ConcurrencyLimitLayer", "LoadShedLayer", "OverloadedError", "RateLimitLayer"]

_current_task = trio.lowlevel.current_task


# -- concurrency ------------------------------------------------------------------


class _Permits:
    """``limit`` permits, each held by one trio task (a consumer loop)."""

    __slots__ = ("holders", "limit", "lot")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders: set[Any] = set()
        self.lot = trio.lowlevel.ParkingLot()

    def try_reserve(self, me: Any) -> bool:
        holders = self.holders
        if me in holders:
            return True
        if len(holders) < self.limit:
            holders.add(me)
            return True
        return False

    async def reserve(self, me: Any) -> None:
        while not self.try_reserve(me):
            await self.lot.park()

    def release(self, me: Any) -> None:
        self.holders.discard(me)
        if self.lot:
            self.lot.unpark()

    unreserve = release  # a permit reserved and not used is simply given back


class ConcurrencyLimitLayer:
    """At most ``limit`` tasks run inside this layer at once.

    With ``WorkerBuilder.concurrency(n)`` loops and a smaller ``limit``, the
    loops without a permit wait before they pull (backpressure); the layer
    also bounds the part of the stack inside it when outer layers run more
    (a ``LoadShedLayer`` outside it sheds the excess instead).
    """

    def __init__(self, limit: int) -> None:
        self.limit = check_count("ConcurrencyLimitLayer", "limit", limit)

    def layer(self, inner: Service) -> Service:
        return _ConcurrencyLimitService(inner, _Permits(self.limit))

    def __repr__(self) -> str:
        return f"ConcurrencyLimitLayer({self.limit!r})"


class _ReservingService:
    """A service that admits a task once it holds a reservation of ``slots``.

    ``slots`` (:class:`_Permits` or :class:`_Window`) has ``holders``,
    ``try_reserve(me)``, ``await reserve(me)`` and ``unreserve(me)``.
    """

    __slots__ = ("_inner", "_inner_nowait", "_slots")

    def __init__(self, inner: Service, slots: _Permits | _Window) -> None:
        self._inner = inner
        self._inner_nowait = ready_nowait_of(inner)
        self._slots = slots

    async def ready(self) -> None:
        """Wait for a reservation and keep it for this consumer loop's next call."""
        me = _current_task()
        if not self._slots.try_reserve(me):
            await self._slots.reserve(me)

    def ready_nowait(self) -> bool:
        """Reserve (and the inner services' readiness) without waiting."""
        me = _current_task()
        slots = self._slots
        held = me in slots.holders
        if not held and not slots.try_reserve(me):
            return False
        inner_nowait = self._inner_nowait
        if inner_nowait is not None and not inner_nowait():
            if not held:
                slots.unreserve(me)
            return False
        return True


class _ConcurrencyLimitService(_ReservingService):
    __slots__ = ()
    _slots: _Permits

    async def __call__(self, task: Task) -> Any:
        me = _current_task()
        permits = self._slots
        if not permits.try_reserve(me):
            await permits.reserve(me)
        try:
            return await self._inner(task)
        finally:
            permits.release(me)


# -- rate ----------------------------------------------------------------------------


class _Window:
    """Start times of the last ``limit`` tasks, and the starts reserved but not yet made."""

    __slots__ = ("holders", "limit", "lot", "per", "starts")

    def __init__(self, limit: int, per: float) -> None:
        self.limit = limit
        self.per = per
        self.starts: collections.deque[float] = collections.deque()
        self.holders: set[Any] = set()
        self.lot = trio.lowlevel.ParkingLot()

    def try_reserve(self, me: Any) -> bool:
        holders = self.holders
        if me in holders:
            return True
        starts = self.starts
        if len(starts) + len(holders) >= self.limit:
            if not starts:
                return False
            # Tokens come back ``per`` seconds after the start that spent them.
            horizon = trio.current_time() - self.per
            while starts and starts[0] <= horizon:
                starts.popleft()
            if len(starts) + len(holders) >= self.limit:
                return False
        holders.add(me)
        return True

    async def reserve(self, me: Any) -> None:
        while not self.try_reserve(me):
            deadline = self.starts[0] + self.per if self.starts else math.inf
            with trio.move_on_at(deadline):
                await self.lot.park()

    def start(self, me: Any) -> None:
        self.holders.discard(me)
        self.starts.append(trio.current_time())
        if self.lot:
            # Loops waiting while every token was reserved: the first return is now known.
            self.lot.unpark_all()

    def unreserve(self, me: Any) -> None:
        """Give back a reserved start that will not be made."""
        self.holders.discard(me)
        if self.lot:
            self.lot.unpark_all()


class RateLimitLayer:
    """At most ``n`` tasks start in any ``per_seconds`` window (a token bucket).

    The bucket holds ``n`` tokens; a task takes one when it starts, and each
    token comes back ``per_seconds`` after the start that spent it. So a burst
    of ``n`` starts at once, then one start per returning token: no window of
    ``per_seconds`` ever holds more than ``n`` starts. While the
    bucket is empty the layer is not ready, and the worker sleeps until the
    next token is due (on trio's clock). ``WorkerBuilder.rate_limit(n,
    per_seconds)`` is the shortcut.
    """

    def __init__(self, n: int, per_seconds: float | timedelta) -> None:
        self.n = check_count("RateLimitLayer", "n", n)
        self.per_seconds = check_seconds("RateLimitLayer", "per_seconds", per_seconds)

    def layer(self, inner: Service) -> Service:
        return _RateLimitService(inner, _Window(self.n, self.per_seconds))

    def __repr__(self) -> str:
        return f"RateLimitLayer({self.n!r}, per_seconds={self.per_seconds!r})"


class _RateLimitService(_ReservingService):
    __slots__ = ()
    _slots: _Window

    async def __call__(self, task: Task) -> Any:
        me = _current_task()
        window = self._slots
        if not window.try_reserve(me):
            await window.reserve(me)
        window.start(me)
        return await self._inner(task)


# -- load shedding -----------------------------------------------------------------


class LoadShedLayer:
    """Rejects a task at once, with :class:`OverloadedError`, when the services inside are busy.

    Without it, a limit inside makes the worker wait before it pulls. With it,
    the worker never waits for the services inside this layer: it pulls, and
    this layer asks them without waiting (``ready_nowait()``); if they cannot
    take the task now, the task fails with ``OverloadedError`` (an attempt,
    retried through the backend with the worker's backoff while its budget
    lasts). ``ConcurrencyLimitLayer``, ``RateLimitLayer`` and
    ``CircuitBreakerLayer`` answer ``ready_nowait()``; a service inside
    without it counts as ready, and its ``ready()`` is not awaited.
    """

    def layer(self, inner: Service) -> Service:
        return _LoadShedService(inner)

    def __repr__(self) -> str:
        return "LoadShedLayer()"


class _LoadShedService(AlwaysReady):
    __slots__ = ("_inner", "_inner_nowait", "shed_total")

    polls_inner_readiness = True

    def __init__(self, inner: Service) -> None:
        self._inner = inner
        self._inner_nowait = ready_nowait_of(inner)
        self.shed_total = 0

    def ready_nowait(self) -> bool:
        """Always ready."""
        return True

    async def __call__(self, task: Task) -> Any:
        inner_nowait = self._inner_nowait
        if inner_nowait is not None and not inner_nowait():
            self.shed_total += 1
            raise OverloadedError()
        return await self._inner(task)
