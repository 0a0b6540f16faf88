"""Poll strategies: when a polling backend looks for work again.

A polling backend (see :class:`~pyapalis.backends._custom.CustomBackend`) cannot be
told that work arrived; it asks its database. A strategy decides when it asks
again after a poll that found nothing. While polls find work the backend polls
again at once (it is draining); a strategy only paces the idle backend.

A strategy is configuration and holds no state, so one strategy object can
serve many backends and many polls. Each user calls :meth:`PollStrategy.ticker`
to get its own :class:`PollTicker`, the stateful part:

* ``await ticker.wait()`` returns when the next poll is due. It is called after
  a poll that found nothing, and it is cancellation-safe: a cancelled wait may
  simply be called again.
* ``ticker.found_work()`` tells the ticker a poll found work, which resets any
  backoff.
* ``await ticker.aclose()``, optional, releases what the ticker holds (the
  stream of a :class:`StreamStrategy`); its user calls it when done.

Every wait happens on trio's clock, so strategies run in virtual time.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import trio

__all__ = [
    "BackoffConfig",
    "FutureStrategy",
    "IntervalStrategy",
    "MultiStrategy",
    "PollStrategy",
    "PollTicker",
    "StreamStrategy",
]


@runtime_checkable
class PollTicker(Protocol):
    """One user's view of a strategy: says when the next poll is due."""

    async def wait(self) -> None:
        """Return when the next poll is due (called after a poll that found nothing).

        Must be cancellation-safe: after a cancelled wait, ``wait()`` can be
        called again.
        """

    def found_work(self) -> None:
        """A poll found work: forget any backoff."""


@runtime_checkable
class ClosingTicker(Protocol):
    """Optional: a ticker holding something to release when its user is done."""

    async def aclose(self) -> None:
        """Release what the ticker holds (called once, when polling stops)."""


@runtime_checkable
class RandomSource(Protocol):
    """What :class:`BackoffConfig` draws its jitter from (``random.Random``)."""

    def random(self) -> float:
        """A float in [0, 1)."""


@runtime_checkable
class PollStrategy(Protocol):
    """Stateless configuration that makes a :class:`PollTicker` per user."""

    def ticker(self) -> PollTicker:
        """A fresh ticker with its own state."""


def _seconds(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as finite seconds (> 0, or >= 0 with ``allow_zero``), else a clear error."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name}: expected seconds as int, float or timedelta, got {type(value).__name__}"
        )
    low_ok = value >= 0 if allow_zero else value > 0
    if math.isnan(value) or math.isinf(value) or not low_ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


# -- interval ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """How an :class:`IntervalStrategy` slows down while polls come back empty.

    After the *k*-th empty poll in a row the base wait is
    ``interval * multiplier**(k-1)``, capped at ``max_delay``; a poll that
    finds work resets it to ``interval``. ``jitter`` in [0, 1] spreads the
    polls of many consumers: each wait is drawn uniformly from
    ``[base * (1 - jitter), base]`` (so ``max_delay`` stays a true cap, as in
    :meth:`BackoffMode.exponential`). Pass ``rng`` (a ``random.Random``) for
    reproducible draws.
    """

    max_delay: float
    multiplier: float = 2.0
    jitter: float = 0.0
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        max_delay = _seconds(self.max_delay, "BackoffConfig: max_delay")
        multiplier = self.multiplier
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, (int, float))
            or math.isinf(multiplier)
            or not multiplier >= 1
        ):
            raise ValueError(
                f"BackoffConfig: multiplier must be a finite number >= 1, got {multiplier!r}"
            )
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise ValueError(f"BackoffConfig: jitter must be between 0 and 1, got {jitter!r}")
        if self.rng is not None and not isinstance(self.rng, RandomSource):
            raise TypeError(
                f"BackoffConfig: rng must be a random.Random (with .random()), got {self.rng!r}"
            )
        object.__setattr__(self, "max_delay", max_delay)
        object.__setattr__(self, "multiplier", float(multiplier))
        object.__setattr__(self, "jitter", float(jitter))


class IntervalStrategy:
    """Poll again ``interval`` seconds (or a ``timedelta``) after an empty poll.

    ``IntervalStrategy(1).with_backoff(BackoffConfig(max_delay=30))`` doubles
    the wait after each further empty poll, up to 30 s, and drops back to 1 s
    once a poll finds work.
    """

    __slots__ = ("_backoff", "_interval")

    def __init__(self, interval: float | timedelta) -> None:
        self._interval = _seconds(interval, "IntervalStrategy: interval")
        self._backoff: BackoffConfig | None = None

    @property
    def interval(self) -> float:
        """Seconds between an empty poll and the next one (without backoff)."""
        return self._interval

    @property
    def backoff(self) -> BackoffConfig | None:
        """How the wait grows while polls come back empty, or None."""
        return self._backoff

    def with_backoff(self, backoff: BackoffConfig) -> IntervalStrategy:
        """The same interval, growing by ``backoff`` while polls come back empty."""
        if not isinstance(backoff, BackoffConfig):
            raise TypeError(
                f"with_backoff: backoff must be a BackoffConfig, got {type(backoff).__name__}"
            )
        if backoff.max_delay < self._interval:
            raise ValueError(
                f"with_backoff: max_delay ({backoff.max_delay!r}) must not be shorter "
                f"than the interval ({self._interval!r})"
            )
        strategy = IntervalStrategy(self._interval)
        strategy._backoff = backoff
        return strategy

    def ticker(self) -> IntervalTicker:
        return IntervalTicker(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalStrategy):
            return NotImplemented
        return (self._interval, self._backoff) == (other._interval, other._backoff)

    def __hash__(self) -> int:
        return hash((self._interval, self._backoff))

    def __repr__(self) -> str:
        if self._backoff is None:
            return f"IntervalStrategy({self._interval!r})"
        return f"IntervalStrategy({self._interval!r}).with_backoff({self._backoff!r})"


class IntervalTicker:
    """The state of one :class:`IntervalStrategy` user: empty polls in a row, and
    the deadline of the wait in progress.

    The deadline is kept when a wait is cancelled, so a wait that is
    interrupted and resumed still ends at the time first computed.
    """

    __slots__ = ("_deadline", "_empty_polls", "_strategy")

    def __init__(self, strategy: IntervalStrategy) -> None:
        self._strategy = strategy
        self._empty_polls = 0
        self._deadline: float | None = None

    def _next_delay(self) -> float:
        """The wait that the next :meth:`wait` would start (drawing jitter, if any)."""
        strategy = self._strategy
        backoff = strategy.backoff
        if backoff is None:
            return strategy.interval
        # The exponent is bounded: a backend idle for days must not overflow.
        exponent = min(self._empty_polls, 1024)
        try:
            delay = min(strategy.interval * backoff.multiplier**exponent, backoff.max_delay)
        except OverflowError:
            delay = backoff.max_delay
        if backoff.jitter:
            delay *= 1.0 - backoff.jitter * (backoff.rng or random).random()
        return delay

    async def wait(self) -> None:
        if self._deadline is None:
            self._deadline = trio.current_time() + self._next_delay()
            self._empty_polls += 1
        deadline = self._deadline
        try:
            await trio.sleep_until(deadline)
        finally:
            # A tick that came due while its wait was being cancelled (a
            # MultiStrategy race won at the same instant) is spent, so that
            # it does not fire again at once.
            if trio.current_time() >= deadline:
                self._deadline = None

    def found_work(self) -> None:
        self._empty_polls = 0
        self._deadline = None

    async def aclose(self) -> None:
        """Nothing to release."""


# -- stream and future ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamStrategy:
    """Poll whenever a stream yields (a notification channel, a clock of your own).

    ``StreamStrategy(factory)``: ``factory()`` returns an async iterable; each
    ticker calls it for its own stream. Once the stream ends, that ticker
    never asks for a poll again. A wait interrupted mid-item (a
    :class:`MultiStrategy` race lost, a worker stopping) cannot resume an
    async generator, so the next wait calls ``factory()`` again: a generator
    starts over, while a factory that returns the same
    ``trio.MemoryReceiveChannel`` loses nothing.
    """

    factory: Callable[[], AsyncIterable[Any]]

    def __post_init__(self) -> None:
        if not callable(self.factory):
            raise TypeError(
                "StreamStrategy: factory must be a callable returning an async iterable, "
                f"got {self.factory!r}"
            )

    def ticker(self) -> StreamTicker:
        return StreamTicker(self.factory)


class StreamTicker:
    """One :class:`StreamStrategy` user: its own iterator over the stream."""

    __slots__ = ("_ended", "_factory", "_iterator")

    def __init__(self, factory: Callable[[], AsyncIterable[Any]]) -> None:
        self._factory = factory
        self._iterator: AsyncIterator[Any] | None = None
        self._ended = False

    async def wait(self) -> None:
        if self._ended:
            await trio.sleep_forever()
        if self._iterator is None:
            stream = self._factory()
            if not isinstance(stream, AsyncIterable):
                raise TypeError(
                    "StreamStrategy: factory() must return an async iterable, "
                    f"got {type(stream).__name__}"
                )
            self._iterator = aiter(stream)
        iterator = self._iterator
        self._iterator = None  # taken back below unless the wait is interrupted
        try:
            await anext(iterator)
        except StopAsyncIteration:
            self._ended = True
            await trio.sleep_forever()
        self._iterator = iterator

    def found_work(self) -> None:
        pass

    async def aclose(self) -> None:
        """Close the stream's iterator if it has ``aclose`` (an async generator).

        A ``trio.MemoryReceiveChannel`` is its own iterator and is left open:
        the factory's owner closes it.
        """
        iterator, self._iterator = self._iterator, None
        if inspect.isasyncgen(iterator):
            await iterator.aclose()


@dataclass(frozen=True, slots=True)
class FutureStrategy:
    """Poll when ``await function()`` returns; each wait calls it anew.

    For example ``FutureStrategy(event.wait)`` polls once the event is set
    (and at once after that, so pair it with a fresh event or a
    :class:`MultiStrategy`), or an async function that awaits a notification.
    A cancelled wait cancels that call.
    """

    function: Callable[[], Awaitable[Any]]

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(
                f"FutureStrategy: function must be an async callable, got {self.function!r}"
            )

    def ticker(self) -> FutureTicker:
        return FutureTicker(self.function)


class FutureTicker:
    """One :class:`FutureStrategy` user."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[[], Awaitable[Any]]) -> None:
        self._function = function

    async def wait(self) -> None:
        awaitable = self._function()
        if not isinstance(awaitable, Awaitable):
            raise TypeError(
                f"FutureStrategy: function() must return an awaitable, got {awaitable!r}"
            )
        await awaitable

    def found_work(self) -> None:
        pass

    async def aclose(self) -> None:
        """Nothing to release."""


# -- several at once ------------------------------------------------------------------


class MultiStrategy:
    """Poll when the first of several strategies says so.

    ``MultiStrategy(IntervalStrategy(30), StreamStrategy(notifications))``
    polls on each notification and at least every 30 s. Unlike apalis's,
    which hands its strategies to the first user and is empty afterwards,
    this is plain configuration: every ticker gets its own tickers of every
    strategy, for as many polls as it likes. The strategies that lose a race
    are cancelled (see each one for what that means; an interval keeps its
    deadline).
    """

    __slots__ = ("_strategies",)

    def __init__(self, *strategies: PollStrategy) -> None:
        if not strategies:
            raise ValueError("MultiStrategy: needs at least one strategy")
        for position, strategy in enumerate(strategies):
            if not isinstance(strategy, PollStrategy):
                raise TypeError(
                    f"MultiStrategy: strategy {position} must be a poll strategy "
                    f"(with .ticker()), got {strategy!r}"
                )
        self._strategies = strategies

    @property
    def strategies(self) -> tuple[PollStrategy, ...]:
        """The strategies raced, in the order given."""
        return self._strategies

    def ticker(self) -> MultiTicker:
        return MultiTicker([strategy.ticker() for strategy in self._strategies])

    def __repr__(self) -> str:
        return f"MultiStrategy({', '.join(map(repr, self._strategies))})"


class MultiTicker:
    """Races the tickers of a :class:`MultiStrategy`."""

    __slots__ = ("_tickers",)

    def __init__(self, tickers: list[PollTicker]) -> None:
        self._tickers = tickers

    async def wait(self) -> None:
        if len(self._tickers) == 1:
            await self._tickers[0].wait()
            return

        async def race(ticker: PollTicker, winner: trio.CancelScope) -> None:
            await ticker.wait()
            winner.cancel()

        try:
            async with trio.open_nursery() as nursery:
                for ticker in self._tickers:
                    nursery.start_soon(race, ticker, nursery.cancel_scope)
        except BaseExceptionGroup as group:
            # A strategy failed: raise its error itself, not a group of one.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    def found_work(self) -> None:
        for ticker in self._tickers:
            ticker.found_work()

    async def aclose(self) -> None:
        """Close every strategy's ticker that can be closed."""
        for ticker in self._tickers:
            await close_ticker(ticker)


async def close_ticker(ticker: PollTicker) -> None:
    """Call ``ticker.aclose()`` if the ticker has one (:class:`ClosingTicker`, optional)."""
    if isinstance(ticker, ClosingTicker):
        await ticker.aclose()
