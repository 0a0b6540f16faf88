"""Poll strategies: exact waits in virtual time, backoff, races, bad input."""

from __future__ import annotations

import math
import random
import re
from collections.abc import AsyncIterator, Callable, Collection
from datetime import timedelta

import pytest
import trio
import trio.testing

from pyapalis.backends._poll import (
    BackoffConfig,
    FutureStrategy,
    IntervalStrategy,
    MultiStrategy,
    PollStrategy,
    PollTicker,
    StreamStrategy,
)


async def wake_times(ticker: PollTicker, n: int, *, found: Collection[int] = ()) -> list[float]:
    """When each of ``n`` waits returned; ``found_work()`` after the waits numbered in ``found``."""
    start = trio.current_time()
    times = []
    for i in range(n):
        await ticker.wait()
        times.append(trio.current_time() - start)
        if i in found:
            ticker.found_work()
    return times


# -- IntervalStrategy --------------------------------------------------------------


async def test_interval_waits_exactly_the_interval(autojump_clock: trio.testing.MockClock) -> None:
    ticker = IntervalStrategy(2.5).ticker()
    assert await wake_times(ticker, 4) == [2.5, 5.0, 7.5, 10.0]


async def test_interval_accepts_a_timedelta(autojump_clock: trio.testing.MockClock) -> None:
    strategy = IntervalStrategy(timedelta(milliseconds=1500))
    assert strategy.interval == 1.5
    assert await wake_times(strategy.ticker(), 2) == [1.5, 3.0]


async def test_interval_without_backoff_ignores_found_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticker = IntervalStrategy(1).ticker()
    assert await wake_times(ticker, 3, found={0, 1}) == [1.0, 2.0, 3.0]


async def test_backoff_grows_while_empty_caps_and_resets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = IntervalStrategy(1).with_backoff(BackoffConfig(max_delay=5))
    ticker = strategy.ticker()
    # Waits 1, 2, 4, then capped at 5, 5; work found after the 5th wait: back to 1, 2.
    times = await wake_times(ticker, 7, found={4})
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 5.0, 5.0, 1.0, 2.0]


async def test_backoff_multiplier(autojump_clock: trio.testing.MockClock) -> None:
    ticker = IntervalStrategy(0.5).with_backoff(BackoffConfig(max_delay=10, multiplier=3)).ticker()
    times = await wake_times(ticker, 5)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps == [0.5, 1.5, 4.5, 10.0, 10.0]


async def test_backoff_jitter_is_within_bounds_and_reproducible(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = BackoffConfig(max_delay=8, jitter=0.5, rng=random.Random(1234))
    ticker = IntervalStrategy(1).with_backoff(config).ticker()
    times = await wake_times(ticker, 6)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    twin = random.Random(1234)
    expected = [base * (1 - 0.5 * twin.random()) for base in bases]
    assert gaps == pytest.approx(expected, abs=1e-9)
    for gap, base in zip(gaps, bases, strict=True):
        assert base * 0.5 <= gap <= base
    assert len(set(gaps)) == len(gaps), "each wait draws its own jitter"


async def test_a_cancelled_interval_wait_keeps_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticker = IntervalStrategy(5).ticker()
    with trio.move_on_after(2):
        await ticker.wait()
    assert trio.current_time() == 2
    await ticker.wait()
    assert trio.current_time() == 5, "the interrupted wait resumes, it does not restart"
    await ticker.wait()
    assert trio.current_time() == 10


async def test_found_work_clears_a_pending_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticker = IntervalStrategy(5).ticker()
    with trio.move_on_after(2):
        await ticker.wait()
    ticker.found_work()
    await ticker.wait()
    assert trio.current_time() == 7


async def test_tickers_of_one_strategy_are_independent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = IntervalStrategy(1).with_backoff(BackoffConfig(max_delay=100))
    first, second = strategy.ticker(), strategy.ticker()
    await wake_times(first, 3)  # first backs off to 4 s ...
    start = trio.current_time()
    await second.wait()  # ... second starts at 1 s
    assert trio.current_time() - start == 1.0


def test_strategies_are_poll_strategies() -> None:
    strategies = [
        IntervalStrategy(1),
        StreamStrategy(lambda: _ticks(1)),
        FutureStrategy(trio.lowlevel.checkpoint),
        MultiStrategy(IntervalStrategy(1)),
    ]
    for strategy in strategies:
        assert isinstance(strategy, PollStrategy)
        assert isinstance(strategy.ticker(), PollTicker)


def test_interval_equality_and_repr() -> None:
    config = BackoffConfig(max_delay=4)
    assert IntervalStrategy(1) == IntervalStrategy(1.0)
    assert IntervalStrategy(1) != IntervalStrategy(2)
    assert IntervalStrategy(1).with_backoff(config) == IntervalStrategy(1).with_backoff(config)
    assert IntervalStrategy(1).with_backoff(config) != IntervalStrategy(1)
    assert repr(IntervalStrategy(1)) == "IntervalStrategy(1.0)"
    assert repr(IntervalStrategy(1).with_backoff(config)).startswith(
        "IntervalStrategy(1.0).with_backoff(BackoffConfig(max_delay=4.0"
    )


# -- StreamStrategy ----------------------------------------------------------------


async def _ticks(period: float, count: int = 1000) -> AsyncIterator[None]:
    for _ in range(count):
        await trio.sleep(period)
        yield None


async def test_stream_polls_whenever_the_stream_yields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[str](10)
    ticker = StreamStrategy(lambda: receive).ticker()

    async def notify() -> None:
        for at in (1, 4, 4.5):
            await trio.sleep_until(at)
            await send.send("new work")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(notify)
        assert await wake_times(ticker, 3) == [1.0, 4.0, 4.5]


async def test_stream_that_ends_never_polls_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticker = StreamStrategy(lambda: _ticks(2, count=2)).ticker()
    assert await wake_times(ticker, 2) == [2.0, 4.0]
    with trio.move_on_after(1000) as scope:
        await ticker.wait()
    assert scope.cancelled_caught
    assert trio.current_time() == 1004


async def test_stream_generator_restarts_after_an_interrupted_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    made: list[float] = []

    def factory() -> AsyncIterator[None]:
        made.append(trio.current_time())
        return _ticks(3)

    ticker = StreamStrategy(factory).ticker()
    await ticker.wait()
    assert trio.current_time() == 3
    with trio.move_on_after(1):
        await ticker.wait()
    await ticker.wait()  # a fresh generator: 3 s from t=4
    assert trio.current_time() == 7
    await ticker.wait()  # the same generator goes on
    assert trio.current_time() == 10
    assert made == [0.0, 4.0]
    await ticker.aclose()  # closes the generator (else trio warns when it is collected)
    await ticker.aclose()


async def test_stream_factory_must_return_an_async_iterable() -> None:
    ticker = StreamStrategy(lambda: [1, 2]).ticker()
    with pytest.raises(TypeError, match=r"^StreamStrategy: factory\(\) must return an async "):
        await ticker.wait()


# -- FutureStrategy ----------------------------------------------------------------


async def test_future_polls_when_the_function_returns_and_calls_it_anew(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[float] = []

    async def next_notification() -> None:
        calls.append(trio.current_time())
        await trio.sleep(2)

    ticker = FutureStrategy(next_notification).ticker()
    assert await wake_times(ticker, 3) == [2.0, 4.0, 6.0]
    assert calls == [0.0, 2.0, 4.0]


async def test_future_errors_propagate() -> None:
    async def broken() -> None:
        raise ConnectionError("listener gone")

    with pytest.raises(ConnectionError, match="listener gone"):
        await FutureStrategy(broken).ticker().wait()


async def test_future_function_must_return_an_awaitable() -> None:
    ticker = FutureStrategy(lambda: 5).ticker()
    with pytest.raises(TypeError, match=r"^FutureStrategy: function\(\) must return an awaitable"):
        await ticker.wait()


# -- MultiStrategy ------------------------------------------------------------------


async def test_multi_first_ready_wins(autojump_clock: trio.testing.MockClock) -> None:
    events = [trio.Event()]

    async def notified() -> None:
        await events[-1].wait()
        events.append(trio.Event())

    ticker = MultiStrategy(IntervalStrategy(3), FutureStrategy(notified)).ticker()

    async def notify_at(at: float) -> None:
        await trio.sleep_until(at)
        events[-1].set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(notify_at, 1)
        # The notification at 1 wins; the interval keeps its deadline at 3 and wins next.
        assert await wake_times(ticker, 2) == [1.0, 3.0]
        nursery.start_soon(notify_at, 4)
        assert await wake_times(ticker, 2) == [1.0, 3.0]  # at 4, then 6 (3 s after 3)


async def test_multi_is_reusable_over_many_polls(autojump_clock: trio.testing.MockClock) -> None:
    ticker = MultiStrategy(IntervalStrategy(2), IntervalStrategy(5)).ticker()
    times = await wake_times(ticker, 12)
    # 2 s ticks and 5 s ticks merged; coinciding ticks (10, 20) poll once.
    assert times == [2, 4, 5, 6, 8, 10, 12, 14, 15, 16, 18, 20]


async def test_one_multi_strategy_serves_several_consumers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = MultiStrategy(IntervalStrategy(2), IntervalStrategy(3))
    results: dict[str, list[float]] = {}

    async def consume(name: str, delay: float) -> None:
        await trio.sleep(delay)
        ticker = strategy.ticker()
        start = trio.current_time()
        times = await wake_times(ticker, 4)
        results[name] = [start + t for t in times]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, "a", 0)
        nursery.start_soon(consume, "b", 1)
    assert results["a"] == [2, 3, 4, 6]
    assert results["b"] == [3, 4, 5, 7]
    assert strategy.ticker() is not strategy.ticker()


async def test_multi_forwards_found_work(autojump_clock: trio.testing.MockClock) -> None:
    backing_off = IntervalStrategy(1).with_backoff(BackoffConfig(max_delay=60))
    ticker = MultiStrategy(backing_off, IntervalStrategy(100)).ticker()
    times = await wake_times(ticker, 4, found={2})
    assert times == [1, 3, 7, 8]


async def test_multi_raises_a_strategy_error_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def broken() -> None:
        await trio.sleep(1)
        raise ConnectionError("listener gone")

    ticker = MultiStrategy(IntervalStrategy(5), FutureStrategy(broken)).ticker()
    with pytest.raises(ConnectionError, match="listener gone"):
        await ticker.wait()
    assert trio.current_time() == 1


async def test_multi_of_one(autojump_clock: trio.testing.MockClock) -> None:
    ticker = MultiStrategy(IntervalStrategy(4)).ticker()
    assert await wake_times(ticker, 2) == [4, 8]


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: IntervalStrategy(-1),
            ValueError,
            "IntervalStrategy: interval: must be a finite number of seconds > 0, got -1",
        ),
        (
            lambda: IntervalStrategy(0),
            ValueError,
            "IntervalStrategy: interval: must be a finite number of seconds > 0, got 0",
        ),
        (
            lambda: IntervalStrategy(math.nan),
            ValueError,
            "IntervalStrategy: interval: must be a finite number of seconds > 0, got nan",
        ),
        (
            lambda: IntervalStrategy(math.inf),
            ValueError,
            "IntervalStrategy: interval: must be a finite number of seconds > 0, got inf",
        ),
        (
            lambda: IntervalStrategy("1"),
            TypeError,
            "IntervalStrategy: interval: expected seconds as int, float or timedelta, got str",
        ),
        (
            lambda: IntervalStrategy(True),
            TypeError,
            "IntervalStrategy: interval: expected seconds as int, float or timedelta, got bool",
        ),
        (
            lambda: BackoffConfig(max_delay=-2),
            ValueError,
            "BackoffConfig: max_delay: must be a finite number of seconds > 0, got -2",
        ),
        (
            lambda: BackoffConfig(max_delay=math.nan),
            ValueError,
            "BackoffConfig: max_delay: must be a finite number of seconds > 0, got nan",
        ),
        (
            lambda: BackoffConfig(max_delay=10, multiplier=0.5),
            ValueError,
            "BackoffConfig: multiplier must be a finite number >= 1, got 0.5",
        ),
        (
            lambda: BackoffConfig(max_delay=10, multiplier=math.nan),
            ValueError,
            "BackoffConfig: multiplier must be a finite number >= 1, got nan",
        ),
        (
            lambda: BackoffConfig(max_delay=10, jitter=1.5),
            ValueError,
            "BackoffConfig: jitter must be between 0 and 1, got 1.5",
        ),
        (
            lambda: BackoffConfig(max_delay=10, jitter=-0.1),
            ValueError,
            "BackoffConfig: jitter must be between 0 and 1, got -0.1",
        ),
        (
            lambda: BackoffConfig(max_delay=10, rng=42),
            TypeError,
            "BackoffConfig: rng must be a random.Random (with .random()), got 42",
        ),
        (
            lambda: IntervalStrategy(5).with_backoff(BackoffConfig(max_delay=2)),
            ValueError,
            "with_backoff: max_delay (2.0) must not be shorter than the interval (5.0)",
        ),
        (
            lambda: IntervalStrategy(5).with_backoff(30),
            TypeError,
            "with_backoff: backoff must be a BackoffConfig, got int",
        ),
        (
            lambda: StreamStrategy(42),
            TypeError,
            "StreamStrategy: factory must be a callable returning an async iterable, got 42",
        ),
        (
            lambda: FutureStrategy(None),
            TypeError,
            "FutureStrategy: function must be an async callable, got None",
        ),
        (
            lambda: MultiStrategy(),
            ValueError,
            "MultiStrategy: needs at least one strategy",
        ),
        (
            lambda: MultiStrategy(IntervalStrategy(1), 5),
            TypeError,
            "MultiStrategy: strategy 1 must be a poll strategy (with .ticker()), got 5",
        ),
    ],
)
def test_bad_input(make: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        make()


async def test_aclose_closes_generators_and_leaves_channels_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[float] = []

    async def ticks() -> AsyncIterator[None]:
        try:
            while True:
                await trio.sleep(1)
                yield None
        finally:
            closed.append(trio.current_time())

    send, receive = trio.open_memory_channel[None](1)
    ticker = MultiStrategy(
        StreamStrategy(ticks), StreamStrategy(lambda: receive), IntervalStrategy(9)
    ).ticker()
    await ticker.wait()  # the generator ticks at 1; the channel's wait is cancelled
    assert (trio.current_time(), closed) == (1.0, [])
    await ticker.aclose()
    assert closed == [1.0]
    send.send_nowait(None)  # the channel still works
    with trio.move_on_after(0.5):
        await ticker.wait()
    assert trio.current_time() == 1.0, "the channel's item ended the wait at once"
    await ticker.aclose()
    assert closed == [1.0, 1.0], "the generator started by that wait ended when it lost"
