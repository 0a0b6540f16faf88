"""BackendBuilder, CustomBackend and dequeue_backend: build errors, poll timing,
retries, the features table, and the conformance suite."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis._errors import BuildError, RetryAfterError
from pyapalis._implementation import Attempt, Task, TaskBuilder, TaskId
from pyapalis._status import Status
from pyapalis._worker._worker import WorkerBuilder
from pyapalis.backends import Backend, SyncAck
from pyapalis.backends._capabilities import CAPABILITIES, TaskSink, feature_table
from pyapalis.backends._custom import BackendBuilder, CustomBackend, CustomConfig, dequeue_backend
from pyapalis.backends._poll import (
    BackoffConfig,
    IntervalStrategy,
    MultiStrategy,
    StreamStrategy,
)
from pyapalis.testing import BackendConformance, BackendHarness, WallClock

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def run_worker(
    backend: Any,
    handler: Callable[..., Any],
    *,
    until: float,
    configure: Callable[[WorkerBuilder], WorkerBuilder] = lambda b: b,
) -> None:
    """Run a worker on ``backend`` until virtual time ``until``, then stop it."""
    worker = configure(WorkerBuilder("custom").backend(backend)).build(handler)
    await worker.run_until(lambda: trio.sleep_until(until))


class Recorder:
    """A deque database whose fetcher and sink record when they run."""

    def __init__(self, batch: int = 10) -> None:
        self.db: deque[Any] = deque()
        self.batch = batch
        self.polls: list[tuple[float, int]] = []  # (time, tasks found)
        self.sunk: list[list[Task]] = []

    def fetch(self, db: deque[Any], config: CustomConfig) -> list[Any]:
        found = [db.popleft() for _ in range(min(len(db), self.batch))]
        self.polls.append((trio.current_time(), len(found)))
        return found

    def sink(self, db: deque[Any], config: CustomConfig, tasks: list[Task]) -> None:
        self.sunk.append(list(tasks))
        db.extend(tasks)

    def backend(self, poll: Any) -> CustomBackend[deque[Any]]:
        return (
            BackendBuilder[deque[Any]]()
            .database(self.db)
            .fetcher(self.fetch)
            .sink(self.sink)
            .config(poll)
            .build()
        )


# -- building -------------------------------------------------------------------------


def _fetch(db: Any, config: CustomConfig) -> None:
    return None


def _sink(db: Any, config: CustomConfig, tasks: list[Task]) -> None:
    pass


_CONFIG = CustomConfig(poll=IntervalStrategy(1))


@pytest.mark.parametrize(
    ("builder", "kind", "message"),
    [
        (
            lambda: BackendBuilder().fetcher(_fetch).sink(_sink).config(_CONFIG),
            "MissingDb",
            "MissingDb: the backend has no database; call .database(db)",
        ),
        (
            lambda: BackendBuilder().database([]).sink(_sink).config(_CONFIG),
            "MissingFetcher",
            "MissingFetcher: the backend has no fetcher; call .fetcher(fn)",
        ),
        (
            lambda: BackendBuilder().database([]).fetcher(_fetch).config(_CONFIG),
            "MissingSink",
            "MissingSink: the backend has no sink; call .sink(fn)",
        ),
        (
            lambda: BackendBuilder().database([]).fetcher(_fetch).sink(_sink),
            "MissingConfig",
            "MissingConfig: the backend has no config; call .config(CustomConfig(...))",
        ),
        (lambda: BackendBuilder(), "MissingDb", None),
    ],
    ids=["db", "fetcher", "sink", "config", "nothing"],
)
def test_missing_part_raises_build_error(
    builder: Callable[[], BackendBuilder[Any]], kind: str, message: str | None
) -> None:
    with pytest.raises(BuildError) as info:
        builder().build()
    assert info.value.kind == kind
    if message is not None:
        assert str(info.value) == message


def test_none_is_a_valid_database() -> None:
    backend = BackendBuilder().database(None).fetcher(_fetch).sink(_sink).config(_CONFIG).build()
    assert backend.database is None


def test_config_accepts_a_strategy() -> None:
    strategy = MultiStrategy(IntervalStrategy(1), IntervalStrategy(5))
    backend = BackendBuilder().database([]).fetcher(_fetch).sink(_sink).config(strategy).build()
    assert backend.config == CustomConfig(poll=strategy)
    assert backend.config.buffer_size == 10


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: BackendBuilder().fetcher(5),
            TypeError,
            "fetcher: expected a function (db, config), got 5",
        ),
        (
            lambda: BackendBuilder().sink(None),
            TypeError,
            "sink: expected a function (db, config, tasks), got None",
        ),
        (
            lambda: BackendBuilder().config(1.0),
            TypeError,
            "config: expected a CustomConfig or a poll strategy, got float",
        ),
        (
            lambda: CustomConfig(poll=1),
            TypeError,
            "CustomConfig: poll must be a poll strategy (with .ticker()), got 1",
        ),
        (
            lambda: CustomConfig(poll=IntervalStrategy(1), buffer_size=0),
            ValueError,
            "CustomConfig: buffer_size must be an int >= 1, got int 0",
        ),
        (
            lambda: CustomConfig(poll=IntervalStrategy(1), buffer_size=2.5),
            TypeError,
            "CustomConfig: buffer_size must be an int >= 1, got float 2.5",
        ),
        (
            lambda: dequeue_backend(-1),
            ValueError,
            "dequeue_backend: poll_interval must be a finite number of seconds > 0, got -1",
        ),
        (
            lambda: dequeue_backend(0),
            ValueError,
            "dequeue_backend: poll_interval must be a finite number of seconds > 0, got 0",
        ),
        (
            lambda: dequeue_backend(math.nan),
            ValueError,
            "dequeue_backend: poll_interval must be a finite number of seconds > 0, got nan",
        ),
        (
            lambda: dequeue_backend(math.inf),
            ValueError,
            "dequeue_backend: poll_interval must be a finite number of seconds > 0, got inf",
        ),
        (
            lambda: dequeue_backend("1"),
            TypeError,
            "dequeue_backend: poll_interval must be seconds as int, float or timedelta, got str",
        ),
        (
            lambda: dequeue_backend(True),
            TypeError,
            "dequeue_backend: poll_interval must be seconds as int, float or timedelta, got bool",
        ),
        (
            lambda: dequeue_backend(1, buffer_size=0),
            ValueError,
            "dequeue_backend: buffer_size must be an int >= 1, got int 0",
        ),
        (
            lambda: dequeue_backend(1, buffer_size="2"),
            TypeError,
            "dequeue_backend: buffer_size must be an int >= 1, got str '2'",
        ),
    ],
)
def test_bad_input(call: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        call()


# Bad input to push_task and reschedule: the conformance suite (TestDequeueBackendConformance).


# -- the features table ----------------------------------------------------------------


def test_features_table_is_true() -> None:
    table = feature_table(CustomBackend)
    assert set(table) == set(CAPABILITIES), "every capability has a row"
    backend = dequeue_backend(1)
    for name, protocol in CAPABILITIES.items():
        declared = table[name] != "not supported"
        assert declared == isinstance(backend, protocol), name
    assert table["TaskSink"] == "supported"
    assert table["Reschedule"] == "supported"
    assert isinstance(backend, Backend)
    assert isinstance(backend, SyncAck)


# -- dequeue_backend end to end ----------------------------------------------------------


async def test_dequeue_backend_fifo_with_exact_poll_timing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = dequeue_backend(1.0, buffer_size=2)
    ids = await backend.push_bulk(range(5))
    assert [task.args for task in backend.database] == [0, 1, 2, 3, 4]
    seen: list[tuple[int, float, TaskId]] = []

    async def handler(item: int, task_id: TaskId) -> None:
        seen.append((item, trio.current_time(), task_id))

    async def late_push() -> None:
        await trio.sleep_until(2.5)
        await backend.push(5)  # no wake-up: found by the poll at 3.0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_push)
        await run_worker(backend, handler, until=3.5)
    assert [(item, at) for item, at, _ in seen] == [
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
        (3, 0.0),
        (4, 0.0),
        (5, 3.0),
    ]
    assert [task_id for _, _, task_id in seen[:5]] == ids
    # t=0: three polls with work and one empty; empty at 1 and 2; at 3 one with work
    # and one empty.
    assert backend.polls == 8
    assert not backend.database


async def test_poll_timing_with_backoff_resets_when_work_is_found(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    strategy = IntervalStrategy(1).with_backoff(BackoffConfig(max_delay=4))
    backend = recorder.backend(strategy)
    seen: list[tuple[str, float]] = []

    async def handler(item: str) -> None:
        seen.append((item, trio.current_time()))

    async def push_later() -> None:
        await trio.sleep_until(9.5)
        await backend.push("late")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(push_later)
        await run_worker(backend, handler, until=16)
    assert recorder.polls == [
        (0.0, 0),
        (1.0, 0),
        (3.0, 0),
        (7.0, 0),
        (11.0, 1),  # backed off to 4 s: the push at 9.5 waits for the poll at 11
        (11.0, 0),  # drains: polls again at once
        (12.0, 0),  # the backoff started over
        (14.0, 0),
    ]
    assert seen == [("late", 11.0)]


async def test_retries_go_back_through_the_backend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = dequeue_backend(100)
    task_id = await backend.push_task(TaskBuilder("flaky").attempts(3).build())
    runs: list[tuple[int, float]] = []
    final: list[Task] = []

    async def handler(item: str, attempt: Attempt, task: Task) -> str:
        runs.append((attempt.current(), trio.current_time()))
        final[:] = [task]
        if attempt.current() < 3:
            raise RetryAfterError("not yet", 5)
        return "ok"

    await run_worker(backend, handler, until=30)
    # The retries wake the idle worker at their deadline, long before the next poll.
    assert runs == [(1, 0.0), (2, 5.0), (3, 10.0)]
    assert final[0].parts.task_id == task_id
    assert final[0].parts.status is Status.Done
    assert backend.polls == 2, "a retry is held by the backend, not fetched again"
    assert not backend.database, "nor is it sunk again"


async def test_reschedule_interrupts_the_wait_for_the_next_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    backend = recorder.backend(IntervalStrategy(10))
    runs: list[tuple[str, float]] = []

    async def handler(item: str) -> None:
        runs.append((item, trio.current_time()))

    async def outside() -> None:
        await trio.sleep_until(3)
        await backend.reschedule(Task("now"), 0)  # wakes the idle worker
        await trio.sleep_until(4)
        await backend.reschedule(Task("soon"), 2)  # re-arms its wait for 6

    async with trio.open_nursery() as nursery:
        nursery.start_soon(outside)
        await run_worker(backend, handler, until=15)
    assert runs == [("now", 3.0), ("soon", 6.0)]
    # The interrupted wait for the next poll kept its time.
    assert recorder.polls == [(0.0, 0), (10.0, 0)]


async def test_retry_policy_and_failure_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from pyapalis._worker._retry import BackoffMode, RetryPolicy

    backend = dequeue_backend(50)
    await backend.push("doomed")
    runs: list[float] = []
    tasks: list[Task] = []

    async def handler(item: str, task: Task) -> None:
        runs.append(trio.current_time())
        tasks.append(task)
        raise ValueError("always")

    policy = RetryPolicy.retries(2, BackoffMode.constant(3))
    await run_worker(backend, handler, until=20, configure=lambda b: b.retry(policy))
    assert runs == [0.0, 3.0, 6.0]
    assert tasks[-1].parts.status is Status.Failed


async def test_scheduled_task_waits_in_the_backend_until_due(
    wall_clock: WallClock, autojump_clock: trio.testing.MockClock
) -> None:
    backend = dequeue_backend(1000)
    start = trio.current_time()
    due = wall_clock.after(30)
    task = TaskBuilder("later").id("t-later").attempts(4).run_at_timestamp(due).meta("m").build()
    assert await backend.push_task(task) == TaskId("t-later")
    await backend.push("now")
    ran: list[tuple[str, float, int | None]] = []

    async def handler(item: str, task: Task) -> None:
        ran.append((item, trio.current_time() - start, task.parts.max_attempts))

    await run_worker(backend, handler, until=40)
    assert [item for item, _, _ in ran] == ["now", "later"]
    assert ran[1][1] == 30  # the wall clock moves only with trio's: exactly when due
    assert ran[1][2] == 4
    assert backend.polls == 2, "both fetched at t=0: the scheduled one waited here"


async def test_interrupted_task_comes_back_to_the_front(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = dequeue_backend(1, buffer_size=5)
    await backend.push_bulk(["long", "next"])
    started = trio.Event()

    async def slow(item: str) -> None:
        started.set()
        await trio.sleep_forever()

    worker = WorkerBuilder("doomed").backend(backend).build(slow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await started.wait()
        nursery.cancel_scope.cancel()
    seen: list[tuple[str, int]] = []

    async def quick(item: str, attempt: Attempt) -> None:
        seen.append((item, attempt.current()))

    await run_worker(backend, quick, until=trio.current_time() + 1)
    assert seen == [("long", 1), ("next", 1)]


async def test_one_poll_at_a_time_with_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db: deque[int] = deque(range(12))
    fetching = 0
    most = 0
    polls: list[float] = []

    async def fetch(db: deque[int], config: CustomConfig) -> list[int]:
        nonlocal fetching, most
        fetching += 1
        most = max(most, fetching)
        polls.append(trio.current_time())
        await trio.sleep(1)  # a slow query
        fetching -= 1
        return [db.popleft() for _ in range(min(len(db), config.buffer_size))]

    backend = (
        BackendBuilder()
        .database(db)
        .fetcher(fetch)
        .sink(_sink)
        .config(CustomConfig(poll=IntervalStrategy(10), buffer_size=4))
        .build()
    )
    started: list[tuple[int, float]] = []

    async def handler(item: int) -> None:
        started.append((item, trio.current_time()))
        await trio.sleep(0.5)

    await run_worker(backend, handler, until=9, configure=lambda b: b.concurrency(3))
    assert most == 1, "only one consumer polls; the others wait for its tasks"
    by_time: dict[float, set[int]] = {}
    for item, at in started:
        by_time.setdefault(at, set()).add(item)
    # A fetch takes 1 s and hands out 4 tasks: three consumers run three of
    # them, the first to finish runs the fourth while another polls again.
    assert by_time == {
        1.0: {0, 1, 2},
        1.5: {3},
        2.5: {4, 5, 6},
        3.0: {7},
        4.0: {8, 9, 10},
        4.5: {11},
    }
    assert polls == [0.0, 1.5, 3.0, 4.5]  # the last finds nothing; the next is due at 15.5


async def test_a_cancelled_take_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    db: deque[str] = deque(["a", "b"])

    async def fetch(db: deque[str], config: CustomConfig) -> list[str]:
        taken = list(db)
        db.clear()  # claimed before the slow part
        await trio.sleep(1)
        return taken

    backend = BackendBuilder().database(db).fetcher(fetch).sink(_sink).config(_CONFIG).build()
    with trio.move_on_after(0.5):
        task = await backend.take()
    # The fetch ran to its end despite the cancel; its first task was returned.
    assert trio.current_time() == 1.0
    assert task.args == "a"
    rest = backend.take_nowait()
    assert rest is not None
    assert rest.args == "b"


async def test_cancelled_while_waiting_for_the_next_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    backend = recorder.backend(IntervalStrategy(4))
    with trio.move_on_after(1) as scope:
        await backend.take()
    assert scope.cancelled_caught
    await backend.push("x")
    task = await backend.take()
    assert task.args == "x"
    # The interrupted wait kept its deadline: the poll that finds x is at 4.
    assert recorder.polls == [(0.0, 0), (4.0, 1)]


async def test_sync_and_async_fetcher_and_sink(autojump_clock: trio.testing.MockClock) -> None:
    db: list[Any] = []
    sunk: list[list[Any]] = []

    async def sink(db: list[Any], config: CustomConfig, tasks: list[Task]) -> None:
        await trio.sleep(0)
        sunk.append([task.args for task in tasks])
        db.extend(task.args for task in tasks)  # stores plain args

    def fetch(db: list[Any], config: CustomConfig) -> Iterable[Any] | None:
        if not db:
            return None
        items = list(db)
        db.clear()
        return iter(items)

    backend = BackendBuilder().database(db).fetcher(fetch).sink(sink).config(_CONFIG).build()
    first = await backend.push("a")
    bulk = await backend.push_bulk(["b", "c"])

    async def source() -> AsyncIterator[str]:
        for item in ("d", "e"):
            yield item

    assert await backend.push_stream(source()) == 2
    assert isinstance(backend, TaskSink)
    assert len({first, *bulk}) == 3
    assert sunk == [["a"], ["b", "c"], ["d"], ["e"]], "push_bulk is one sink call"
    seen: list[tuple[str, TaskId | None]] = []

    async def handler(item: str, task_id: TaskId) -> None:
        seen.append((item, task_id))

    await run_worker(backend, handler, until=1)
    assert [item for item, _ in seen] == ["a", "b", "c", "d", "e"]
    assert all(isinstance(task_id, TaskId) for _, task_id in seen), "args get fresh ids"


async def test_fetcher_errors_stop_the_worker(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    def fetch(db: Any, config: CustomConfig) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("database went away")

    backend = BackendBuilder().database(None).fetcher(fetch).sink(_sink).config(_CONFIG).build()
    worker = WorkerBuilder("w").backend(backend).build(lambda item: None)
    with pytest.raises(ConnectionError, match="database went away"):
        await worker.run()
    assert trio.current_time() == 2.0


@pytest.mark.parametrize(
    "bad", ["text", b"bytes", 42, Task("one")], ids=lambda bad: type(bad).__name__
)
async def test_fetcher_must_return_an_iterable(bad: object) -> None:
    backend = (
        BackendBuilder()
        .database(None)
        .fetcher(lambda db, config: bad)
        .sink(_sink)
        .config(_CONFIG)
        .build()
    )
    message = (
        "fetcher: must return an iterable of tasks or args (a list, even of one), or None; "
        f"got {type(bad).__name__}"
    )
    with pytest.raises(TypeError, match="^" + re.escape(message) + "$"):
        await backend.take()


async def test_stream_driven_backend_polls_on_notification(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[None](math.inf)
    recorder = Recorder()
    backend = recorder.backend(MultiStrategy(StreamStrategy(lambda: receive), IntervalStrategy(60)))
    seen: list[tuple[str, float]] = []

    async def handler(item: str) -> None:
        seen.append((item, trio.current_time()))

    async def producer() -> None:
        for at, item in ((2, "a"), (5, "b")):
            await trio.sleep_until(at)
            await backend.push(item)
            send.send_nowait(None)  # like Postgres NOTIFY
        await trio.sleep_until(7)
        await backend.push("c")  # no notification: found by the 60 s interval

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await run_worker(backend, handler, until=70)
    assert seen == [("a", 2.0), ("b", 5.0), ("c", 65.0)]
    await backend.aclose()


async def test_aclose_closes_a_stream_generator(autojump_clock: trio.testing.MockClock) -> None:
    closed: list[float] = []

    async def ticks() -> AsyncIterator[None]:
        try:
            while True:
                await trio.sleep(1)
                yield None
        finally:
            closed.append(trio.current_time())

    def fetch(db: Any, config: CustomConfig) -> list[str] | None:
        return ["x"] if trio.current_time() >= 1 else None

    backend = (
        BackendBuilder()
        .database(None)
        .fetcher(fetch)
        .sink(_sink)
        .config(StreamStrategy(ticks))
        .build()
    )
    task = await backend.take()  # empty poll at 0, the stream ticks at 1, x found
    assert (task.args, trio.current_time()) == ("x", 1.0)
    assert closed == [], "the generator waits at its yield for the next wait"
    await backend.aclose()
    assert closed == [1.0]


def test_repr() -> None:
    assert repr(dequeue_backend(2)) == (
        "CustomBackend(ready=0, scheduled=0, poll=IntervalStrategy(2.0))"
    )


# -- the conformance suite ---------------------------------------------------------------


class TestDequeueBackendConformance(BackendConformance):
    @pytest.fixture
    def harness(self) -> BackendHarness:
        backend = dequeue_backend(0.5)
        # Its sink appends to a deque: user code that does not look ids up.
        return BackendHarness(open=lambda: backend, unique_ids=False)


# -- the example -----------------------------------------------------------------------


def test_custom_backend_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_backend.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "sent welcome email to ada@example.com (attempt 1)",
        "sent welcome email to bob@example.com (attempt 1)",
        "mail server busy for eve@example.com, retrying",
        "sent welcome email to eve@example.com (attempt 2)",
        "rows left in the table: 0",
    ]
    assert proc.stderr == ""
