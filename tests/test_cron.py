"""CronStream: cron ticks on trio's clock, exact in virtual time.

Every test runs in virtual time (``autojump_clock``) with ``time.time()``
replaced by a :class:`~pyapalis.testing.WallClock` that starts at a chosen
instant, so the ticks (datetimes) and the trio times they come at are exact.
Daylight-saving changes are those of Europe/Berlin in 2026: clocks jump from
02:00 to 03:00 on 29 March and fall back from 03:00 to 02:00 on 25 October.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from pyapalis import (
    CronStream,
    JsonStorage,
    MemoryStorage,
    Pipe,
    RetryPolicy,
    Status,
    TaskId,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.backends import Backend, RunsAlongside, TaskSource
from pyapalis.testing import TestWorker, WallClock

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC

StartAt = Callable[[dt.datetime], WallClock]


# Each test names autojump_clock itself: pytest-trio runs a test on a clock
# fixture only when the test asks for it, not through another fixture.
@pytest.fixture
def start_at(monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock) -> StartAt:
    """``start_at(when)``: wall time is ``when`` at trio time 0 and follows the virtual clock."""

    def install(when: dt.datetime) -> WallClock:
        clock = WallClock(start=when.timestamp(), clock=autojump_clock)
        monkeypatch.setattr(time, "time", clock)
        return clock

    return install


async def timed_ticks(stream: CronStream, count: int) -> list[tuple[float, dt.datetime]]:
    seen = []
    for _ in range(count):
        tick = await anext(stream)
        seen.append((trio.current_time(), tick))
    return seen


# -- the schedule, in virtual time -----------------------------------------------------------


async def test_every_minute_ticks_exactly_60_seconds_apart(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    seen = await timed_ticks(CronStream("* * * * *"), 3)
    assert seen == [
        (30.0, dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)),
        (90.0, dt.datetime(2026, 5, 4, 12, 2, tzinfo=UTC)),
        (150.0, dt.datetime(2026, 5, 4, 12, 3, tzinfo=UTC)),
    ]
    assert all(tick.tzinfo == ZoneInfo("UTC") for _, tick in seen)


async def test_a_tick_due_exactly_now_is_yielded_at_once(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    seen = await timed_ticks(CronStream("* * * * *"), 2)
    assert [at for at, _ in seen] == [0.0, 60.0]


async def test_an_optional_seconds_field_comes_first(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 1, tzinfo=UTC))
    seen = await timed_ticks(CronStream("*/15 * * * * *"), 3)
    assert [at for at, _ in seen] == [14.0, 29.0, 44.0]
    assert seen[0][1] == dt.datetime(2026, 5, 4, 12, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("alias", "first", "second"),
    [
        ("@hourly", dt.datetime(2026, 5, 4, 13, 0), dt.datetime(2026, 5, 4, 14, 0)),
        ("@daily", dt.datetime(2026, 5, 5, 0, 0), dt.datetime(2026, 5, 6, 0, 0)),
        ("@midnight", dt.datetime(2026, 5, 5, 0, 0), dt.datetime(2026, 5, 6, 0, 0)),
        ("@weekly", dt.datetime(2026, 5, 10, 0, 0), dt.datetime(2026, 5, 17, 0, 0)),
        ("@monthly", dt.datetime(2026, 6, 1, 0, 0), dt.datetime(2026, 7, 1, 0, 0)),
        ("@yearly", dt.datetime(2027, 1, 1, 0, 0), dt.datetime(2028, 1, 1, 0, 0)),
        ("@annually", dt.datetime(2027, 1, 1, 0, 0), dt.datetime(2028, 1, 1, 0, 0)),
    ],
)
def test_aliases_in_a_time_zone(alias: str, first: dt.datetime, second: dt.datetime) -> None:
    stream = CronStream(alias, tz="Europe/Berlin")
    start = dt.datetime(2026, 5, 4, 12, 30, tzinfo=BERLIN)
    one = stream.next_after(start)
    assert one is not None
    assert [one, stream.next_after(one)] == [
        first.replace(tzinfo=BERLIN),
        second.replace(tzinfo=BERLIN),
    ]


async def test_an_alias_is_awaited_in_its_time_zone(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 30, tzinfo=BERLIN))
    seen = await timed_ticks(CronStream("@daily", tz="Europe/Berlin"), 2)
    assert seen == [
        (11.5 * 3600, dt.datetime(2026, 5, 5, 0, 0, tzinfo=BERLIN)),
        (35.5 * 3600, dt.datetime(2026, 5, 6, 0, 0, tzinfo=BERLIN)),
    ]


async def test_a_tzinfo_is_accepted_as_the_zone(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    start_at(dt.datetime(2026, 5, 4, 12, 30, tzinfo=UTC))
    stream = CronStream("0 15 * * *", tz=plus_two)
    ((at, tick),) = await timed_ticks(stream, 1)
    assert tick == dt.datetime(2026, 5, 4, 15, 0, tzinfo=plus_two)
    assert tick.utcoffset() == dt.timedelta(hours=2)
    assert at == 30 * 60.0


async def test_a_wall_clock_jump_during_a_long_wait_is_noticed(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    # A machine suspended for half an hour: trio's monotonic clock did not move.
    wall = start_at(dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC))

    async def suspend() -> None:
        await trio.sleep(100)
        wall.start += 1800

    async with trio.open_nursery() as nursery:
        nursery.start_soon(suspend)
        seen = await timed_ticks(CronStream("0 13 * * *"), 1)
    assert seen == [(1800.0, dt.datetime(2026, 5, 4, 13, 0, tzinfo=UTC))]


# -- daylight saving time ----------------------------------------------------------------------


async def test_dst_gap_a_daily_job_in_the_gap_runs_when_the_gap_ends(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    # 02:30 does not exist on 29 March: the job runs at 03:00 (CEST), as Debian cron does.
    start = dt.datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    start_at(start)
    seen = await timed_ticks(CronStream("30 2 * * *", tz="Europe/Berlin"), 3)
    assert [tick for _, tick in seen] == [
        dt.datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN),
        dt.datetime(2026, 3, 30, 2, 30, tzinfo=BERLIN),
        dt.datetime(2026, 3, 31, 2, 30, tzinfo=BERLIN),
    ]
    # 12:00 CET to 03:00 CEST is 14 real hours; then 23.5 hours; then 24.
    assert [at for at, _ in seen] == [14 * 3600.0, 37.5 * 3600.0, 61.5 * 3600.0]
    assert [tick.utcoffset() for _, tick in seen] == [dt.timedelta(hours=2)] * 3


async def test_dst_gap_a_frequent_job_follows_real_time(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 3, 29, 1, 20, tzinfo=BERLIN))
    seen = await timed_ticks(CronStream("*/30 * * * *", tz="Europe/Berlin"), 3)
    assert [tick for _, tick in seen] == [
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN),
        dt.datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN),  # 02:00 and 02:30 never happen
        dt.datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN),
    ]
    assert [at for at, _ in seen] == [600.0, 2400.0, 4200.0]


async def test_dst_overlap_a_daily_job_runs_once(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    # 02:30 happens twice on 25 October: the job runs at the first one only.
    start = dt.datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN)
    start_at(start)
    seen = await timed_ticks(CronStream("30 2 * * *", tz="Europe/Berlin"), 2)
    first, second = (tick for _, tick in seen)
    assert (first.fold, first.utcoffset()) == (0, dt.timedelta(hours=2))
    assert first.astimezone(UTC) == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert second == dt.datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN)
    assert seen[1][0] - seen[0][0] == 25 * 3600.0


async def test_dst_overlap_a_frequent_job_runs_in_both_passes(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 10, 25, 1, 50, tzinfo=BERLIN))
    stream = CronStream("*/30 * * * *", tz="Europe/Berlin")
    seen = await timed_ticks(stream, 5)
    local = [(tick.hour, tick.minute, tick.fold) for _, tick in seen]
    assert local == [(2, 0, 0), (2, 30, 0), (2, 0, 1), (2, 30, 1), (3, 0, 0)]
    assert [at for at, _ in seen] == [600.0, 2400.0, 4200.0, 6000.0, 7800.0]
    # The two passes of 02:00 are two ticks with two ids.
    ids = {stream.tick_id(tick) for _, tick in seen}
    assert len(ids) == 5


async def test_dst_overlap_a_stream_started_in_the_second_pass_does_not_run_again(
    autojump_clock: trio.testing.MockClock,
    start_at: StartAt,
) -> None:
    # 02:10 of the second pass (CET): the 02:30 job already ran in the first pass.
    start_at(dt.datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN))
    # With missed="last", the tick caught up is the first pass's: the id it had then.
    stream = CronStream("30 2 * * *", tz="Europe/Berlin", missed="last")
    ((at, last),) = await timed_ticks(stream, 1)
    assert at == 0.0
    assert last.astimezone(UTC) == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert stream.tick_id(last) == TaskId(f"cron:{stream.identity()}:2026-10-25T00:30:00Z")
    # Without, the next run is the next day's.
    ((at, tick),) = await timed_ticks(CronStream("30 2 * * *", tz="Europe/Berlin"), 1)
    assert tick == dt.datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN)
    assert at == 24 * 3600.0 + 20 * 60


# -- missed ticks --------------------------------------------------------------------------------


async def test_missed_skip_drops_ticks_that_came_while_the_consumer_was_busy(
    autojump_clock: trio.testing.MockClock, start_at: StartAt, caplog: pytest.LogCaptureFixture
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    stream = CronStream("* * * * *", name="report")
    assert await anext(stream) == dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    await trio.sleep(130)  # busy through 12:01 and 12:02
    tick = await anext(stream)
    assert (trio.current_time(), tick) == (180.0, dt.datetime(2026, 5, 4, 12, 3, tzinfo=UTC))
    assert "CronStream" in caplog.text and "skipped" in caplog.text


async def test_missed_last_yields_the_latest_missed_tick_at_once(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    stream = CronStream("* * * * *", missed="last")
    assert await anext(stream) == dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC)  # caught up at once
    await trio.sleep(29.5)
    assert await anext(stream) == dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)
    await trio.sleep(130)  # busy through 12:02 and 12:03
    seen = await timed_ticks(stream, 2)
    assert seen == [
        (160.0, dt.datetime(2026, 5, 4, 12, 3, tzinfo=UTC)),  # the last missed, at once
        (210.0, dt.datetime(2026, 5, 4, 12, 4, tzinfo=UTC)),
    ]


async def test_missed_at_start_skip_waits_and_last_catches_up(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 30, tzinfo=UTC))
    last = await timed_ticks(CronStream("0 * * * *", missed="last"), 2)
    # Its previous tick (12:00) at once, then the schedule.
    assert last == [
        (0.0, dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC)),
        (1800.0, dt.datetime(2026, 5, 4, 13, 0, tzinfo=UTC)),
    ]
    await trio.sleep(60)
    skip = await timed_ticks(CronStream("0 * * * *"), 1)
    assert skip == [(5400.0, dt.datetime(2026, 5, 4, 14, 0, tzinfo=UTC))]


async def test_missed_last_takes_a_tick_due_now_as_the_last(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    seen = await timed_ticks(CronStream("* * * * *", missed="last"), 2)
    assert seen == [
        (0.0, dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC)),
        (60.0, dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)),
    ]


# -- cancellation and concurrency ----------------------------------------------------------------


async def test_a_cancelled_wait_loses_no_tick(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    stream = CronStream("* * * * *")
    with trio.move_on_after(10) as scope:
        await anext(stream)
    assert scope.cancelled_caught
    seen = await timed_ticks(stream, 1)
    assert seen == [(30.0, dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC))]


async def test_a_cancelled_catch_up_is_yielded_again(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 30, tzinfo=UTC))
    stream = CronStream("0 * * * *", missed="last")
    with trio.CancelScope() as scope:
        scope.cancel()
        await anext(stream)
    assert await anext(stream) == dt.datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


async def test_two_tasks_waiting_on_one_stream_is_refused(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    stream = CronStream("* * * * *")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(anext, stream)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError, match="already waiting"):
            await anext(stream)
        nursery.cancel_scope.cancel()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"expression": 5}, TypeError, r"^CronStream: expression must be a str, got int 5$"),
        (
            {"expression": "* * *"},
            ValueError,
            r"^CronStream: cron expression '\* \* \*' has 3 fields; expected 5",
        ),
        ({"expression": "@often"}, ValueError, r"^CronStream: unknown alias '@often' \(known: "),
        (
            {"expression": "61 * * * *"},
            ValueError,
            r"^CronStream: bad cron expression '61 \* \* \* \*': Bad minute$",
        ),
        (
            {"expression": "* * * * *", "tz": "Mars/Olympus"},
            ValueError,
            r"^CronStream: unknown time zone 'Mars/Olympus'$",
        ),
        (
            {"expression": "* * * * *", "tz": 2},
            TypeError,
            r"^CronStream: tz must be a zone name \(str\) or a tzinfo, got int 2$",
        ),
        (
            {"expression": "* * * * *", "name": ""},
            ValueError,
            r"^CronStream: name must be a non-empty str, got str ''$",
        ),
        (
            {"expression": "* * * * *", "name": 7},
            TypeError,
            r"^CronStream: name must be a non-empty str, got int 7$",
        ),
        (
            {"expression": "* * * * *", "missed": "all"},
            ValueError,
            r"^CronStream: missed must be 'skip' or 'last', got str 'all'$",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_problem(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    expression = kwargs.pop("expression")
    with pytest.raises(error, match=message):
        CronStream(expression, **kwargs)  # type: ignore[arg-type]


def test_a_naive_datetime_is_refused() -> None:
    stream = CronStream("* * * * *")
    with pytest.raises(TypeError, match=r"^CronStream.tick_id: tick must be an aware datetime"):
        stream.tick_id(dt.datetime(2026, 1, 1))
    with pytest.raises(TypeError, match=r"^CronStream.next_after: when must be an aware datetime"):
        stream.next_after(dt.datetime(2026, 1, 1))


# -- tick ids --------------------------------------------------------------------------------------


def test_tick_ids_derive_from_the_schedule_and_the_tick() -> None:
    tick = dt.datetime(2026, 5, 4, 14, 0, tzinfo=BERLIN)
    one = CronStream("0 * * * *", tz="Europe/Berlin")
    other_process = CronStream("0   *  * * *", tz=BERLIN)  # the same schedule, written apart
    assert one.tick_id(tick) == other_process.tick_id(tick)
    assert str(one.tick_id(tick)) == f"cron:{one.identity()}:2026-05-04T12:00:00Z"
    assert one.tick_id(tick.astimezone(UTC)) == one.tick_id(tick)  # an instant, any zone
    # Expression, zone and queue are the identity of an unnamed schedule.
    differing = {
        one.tick_id(tick),
        one.tick_id(tick, queue="emails"),
        CronStream("0 * * * *").tick_id(tick),
        CronStream("0 */1 * * *", tz="Europe/Berlin").tick_id(tick),
    }
    assert len(differing) == 4
    # A name is the whole identity.
    named = CronStream("0 * * * *", name="report")
    renamed_schedule = CronStream("0 */2 * * *", tz="Asia/Tokyo", name="report")
    assert named.tick_id(tick, queue="a") == renamed_schedule.tick_id(tick, queue="b")
    assert str(named.tick_id(tick)) == "cron:report:2026-05-04T12:00:00Z"


def test_next_after_and_repr() -> None:
    stream = CronStream("30 2 * * *", tz="Europe/Berlin", name="nightly")
    assert stream.next_after(dt.datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)) == dt.datetime(
        2026, 3, 29, 3, 0, tzinfo=BERLIN
    )
    assert repr(stream) == "CronStream('30 2 * * *', tz='Europe/Berlin', name='nightly')"
    assert (stream.expression, stream.name, stream.missed) == ("30 2 * * *", "nightly", "skip")
    assert stream.tz == BERLIN


# -- a backend: a worker runs its handler once per tick ------------------------------------------


async def test_a_worker_on_a_cron_stream_runs_the_handler_per_tick(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    stream = CronStream("* * * * *")
    assert isinstance(stream, Backend) and isinstance(stream, RunsAlongside)
    seen: list[tuple[float, dt.datetime]] = []

    async def handler(tick: dt.datetime, worker: WorkerContext) -> None:
        seen.append((trio.current_time(), tick))
        if len(seen) == 3:
            worker.stop()

    await WorkerBuilder("every-minute").backend(stream).build(handler).run()
    assert seen == [
        (30.0, dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)),
        (90.0, dt.datetime(2026, 5, 4, 12, 2, tzinfo=UTC)),
        (150.0, dt.datetime(2026, 5, 4, 12, 3, tzinfo=UTC)),
    ]


async def test_a_failing_tick_is_retried_through_the_stream(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    calls: list[tuple[float, dt.datetime]] = []

    async def handler(tick: dt.datetime, worker: WorkerContext) -> None:
        calls.append((trio.current_time(), tick))
        if len(calls) == 1:
            raise RuntimeError("flaky")
        worker.stop()

    worker = (
        WorkerBuilder("retrying")
        .backend(CronStream("* * * * *"))
        .retry(RetryPolicy.retries(1))
        .build(handler)
    )
    await worker.run()
    tick = dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)
    assert calls == [(30.0, tick), (30.0, tick)]


async def test_test_worker_executes_ticks_one_by_one(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    stream = CronStream("* * * * *", name="minutely")

    async def handler(tick: dt.datetime) -> str:
        return f"{tick:%H:%M}"

    async with TestWorker(stream, handler) as worker:
        first = await worker.execute_next()
        assert trio.current_time() == 30.0
        second = await worker.execute_next()
        assert trio.current_time() == 90.0
    assert [(str(task_id), result.unwrap()) for task_id, result in (first, second)] == [
        ("cron:minutely:2026-05-04T12:01:00Z", "12:01"),
        ("cron:minutely:2026-05-04T12:02:00Z", "12:02"),
    ]


# -- a pipe: ticks become tasks of a storage, each once ------------------------------------------


async def test_a_pipe_pushes_each_tick_as_a_task_with_its_tick_id(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    stream = CronStream("* * * * *", name="report")
    assert isinstance(stream, TaskSource)
    storage = MemoryStorage()
    seen: list[tuple[float, str]] = []

    async def handler(tick: str, worker: WorkerContext) -> None:
        seen.append((trio.current_time(), tick))
        if len(seen) == 2:
            worker.stop()

    await WorkerBuilder("reports").backend(Pipe(stream, storage)).build(handler).run()
    assert seen == [(30.0, "2026-05-04T12:01:00+00:00"), (90.0, "2026-05-04T12:02:00+00:00")]
    assert dt.datetime.fromisoformat(seen[0][1]) == dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)
    results = await storage.check_status(
        [TaskId("cron:report:2026-05-04T12:01:00Z"), TaskId("cron:report:2026-05-04T12:02:00Z")]
    )
    assert [result.status for result in results] == [Status.Done, Status.Done]


async def test_two_processes_running_one_schedule_push_each_tick_once(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    """Two pipes of the same schedule (as two processes would run it) feed one storage."""
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    storage = MemoryStorage()
    runs: list[str] = []

    async def handler(tick: str) -> None:
        runs.append(tick)

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            pipe = Pipe(CronStream("* * * * *", tz="Europe/Berlin"), storage)
            nursery.start_soon(pipe.run)
        # The second worker starts after the first has run 12:01 to completion:
        # its pipe's catch-up push of 12:01 (missed="last") stores nothing.
        worker = WorkerBuilder("a").backend(storage).build(handler)
        nursery.start_soon(worker.run)
        await trio.sleep(31)
        assert runs == ["2026-05-04T14:01:00+02:00"]
        late = Pipe(CronStream("* * * * *", tz="Europe/Berlin", missed="last"), storage)
        nursery.start_soon(late.run)
        await trio.sleep(120)
        nursery.cancel_scope.cancel()
    assert runs == [
        "2026-05-04T14:01:00+02:00",
        "2026-05-04T14:02:00+02:00",
        "2026-05-04T14:03:00+02:00",
    ]


async def test_a_tick_whose_push_was_interrupted_is_pushed_first_next_run(
    autojump_clock: trio.testing.MockClock, start_at: StartAt
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    storage = MemoryStorage(maxsize=1)
    await storage.push("filler")
    pipe = Pipe(CronStream("* * * * *", name="report"), storage)
    with trio.move_on_after(45):  # 12:01 comes at 30 s; its push waits for room
        await pipe.run()
    assert storage.take_nowait() is not None  # the filler leaves: room for one
    with trio.move_on_after(1):
        await pipe.run()
    task = storage.take_nowait()
    assert task is not None
    assert (str(task.parts.task_id), task.args) == (
        "cron:report:2026-05-04T12:01:00Z",
        "2026-05-04T12:01:00+00:00",
    )
    assert pipe.count == 1


def test_a_pipe_of_ticks_needs_a_backend_with_push_task() -> None:
    class PushOnly:
        async def push(self, args: object) -> TaskId:
            return TaskId("x")

    with pytest.raises(
        TypeError,
        match=r"^Pipe: CronStream makes tasks: the backend needs an async push_task\(\) "
        r"method, and PushOnly has none$",
    ):
        Pipe(CronStream("* * * * *"), PushOnly())


async def test_one_expression_feeding_two_queues_of_a_file_gives_each_its_ticks(
    autojump_clock: trio.testing.MockClock, start_at: StartAt, tmp_path: Path
) -> None:
    start_at(dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=UTC))
    with JsonStorage(tmp_path / "tasks.jsonl") as reports, reports.queue("emails") as emails:
        with trio.move_on_after(31):
            async with trio.open_nursery() as nursery:
                for storage in (reports, emails):
                    nursery.start_soon(Pipe(CronStream("* * * * *"), storage).run)
        one = await reports.list_tasks()
        other = await emails.list_tasks()
    assert (
        [task.args for task in one]
        == [task.args for task in other]
        == ["2026-05-04T12:01:00+00:00"]
    )
    stream = CronStream("* * * * *")
    tick = dt.datetime(2026, 5, 4, 12, 1, tzinfo=UTC)
    assert one[0].parts.task_id == stream.tick_id(tick, queue="default")
    assert other[0].parts.task_id == stream.tick_id(tick, queue="emails")
