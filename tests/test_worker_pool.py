"""WorkerPool: dispatch by TASK_NAME, retries and backoff, queues, app data, retention, shutdown.

Each task records ``(trio.current_time(), attempt)`` when it runs, so the
tests assert the exact virtual instants of every execution, to the millisecond:
MemoryStorage turns a task's wall-clock ``run_at`` into a trio deadline, and
while the virtual clock stands still the wall clock runs on, so tasks enqueued
in one virtual instant become due a few microseconds apart.
"""

from __future__ import annotations

import datetime
import fcntl
import math
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyapalis import (
    AbortError,
    BackoffMode,
    CodecError,
    DeferredError,
    EventKind,
    MemoryStorage,
    RetryAfterError,
    Status,
    Task,
    TaskBuilder,
    TaskId,
    TaskTimeoutError,
    WorkerStateError,
)
from pyapalis.backends._json._storage import JsonStorage
from pyapalis.backends._memory._queues import MemoryQueues
from pyapalis.testing import WallClock
from pyapalis.typed._pool import QueueConfig, RetentionMode, WorkerPool
from pyapalis.typed._task import BackgroundTask, CurrentTask, UnknownTaskError

RUNS: list[tuple[float, str, int]] = []
"""(virtual time, task name and payload, attempt) of every execution, in order."""


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


def now() -> float:
    """Virtual time to the millisecond (see the module docstring)."""
    return round(trio.current_time(), 3)


def record(task: BackgroundTask, current: CurrentTask) -> None:
    RUNS.append((now(), f"{current.task_name}:{task.to_payload()}", current.attempt))


class Flaky(BackgroundTask):
    """Fails its first ``failures`` executions, then returns its ``label``."""

    TASK_NAME = "flaky"

    label: str
    failures: int = 100

    async def run(self, task: CurrentTask, app: Any) -> str:
        record(self, task)
        if task.attempt <= self.failures:
            raise RuntimeError(f"{self.label} failed attempt {task.attempt}")
        return self.label


def flaky_type(name: str, retries: int, backoff: BackoffMode) -> type[Flaky]:
    return type(  # type: ignore[return-value]
        name,
        (Flaky,),
        {
            "__module__": __name__,
            "__qualname__": name,
            "TASK_NAME": name,
            "MAX_RETRIES": retries,
            "BACKOFF_MODE": backoff,
        },
    )


class Add(BackgroundTask):
    TASK_NAME = "add"

    a: int
    b: int

    async def run(self, task: CurrentTask, app: Any) -> int:
        record(self, task)
        return self.a + self.b


class Shout(BackgroundTask):
    TASK_NAME = "shout"

    text: str

    async def run(self, task: CurrentTask, app: Any) -> str:
        record(self, task)
        return self.text.upper()


async def run_for(pool: WorkerPool, seconds: float) -> None:
    """Run ``pool`` for ``seconds`` virtual seconds, then shut it down."""

    async def signal() -> None:
        await trio.sleep(seconds)

    await pool.run_until(signal)


def lock_is_free(path: Path) -> bool:
    """True once every handle on the JsonStorage file at ``path`` is closed."""
    fd = os.open(str(path), os.O_RDONLY)  # the lock is on the journal file itself
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def times(name: str | None = None) -> list[float]:
    return [at for at, what, _ in RUNS if name is None or what.startswith(name + ":")]


# -- retries and backoff -------------------------------------------------------------------


async def test_exponential_backoff_is_backies_two_to_the_n(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Flaky)
    await Flaky("x").enqueue(storage)
    await run_for(pool, 100)
    # MAX_RETRIES = 3: four executions, 2 s, 4 s and 8 s apart.
    assert RUNS == [
        (0.0, "flaky:{'label': 'x', 'failures': 100}", 1),
        (2.0, "flaky:{'label': 'x', 'failures': 100}", 2),
        (6.0, "flaky:{'label': 'x', 'failures': 100}", 3),
        (14.0, "flaky:{'label': 'x', 'failures': 100}", 4),
    ]
    assert len(storage) == 0


@pytest.mark.parametrize(
    ("backoff", "retries", "expected"),
    [
        (BackoffMode.NoBackoff, 3, [0.0, 0.0, 0.0, 0.0]),
        (BackoffMode.constant(5), 2, [0.0, 5.0, 10.0]),
        (BackoffMode.linear(3), 3, [0.0, 3.0, 9.0, 18.0]),
        (BackoffMode.linear(3, max_delay=4), 3, [0.0, 3.0, 7.0, 11.0]),
        (BackoffMode.exponential(1, factor=3, max_delay=5), 4, [0.0, 1.0, 4.0, 9.0, 14.0]),
        (BackoffMode.NoBackoff, 0, [0.0]),
    ],
    ids=["none", "constant", "linear", "linear-capped", "exponential-capped", "no-retries"],
)
async def test_each_backoff_mode_gives_exact_delays(
    backoff: BackoffMode,
    retries: int,
    expected: list[float],
    autojump_clock: trio.testing.MockClock,
) -> None:
    task_type = flaky_type("flaky-mode", retries, backoff)
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(task_type)
    await task_type("x").enqueue(storage)
    await run_for(pool, 100)
    assert times() == expected
    assert [attempt for _, _, attempt in RUNS] == list(range(1, retries + 2))


async def test_exponential_backoff_with_jitter_draws_from_the_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = BackoffMode.exponential(2, max_delay=16, jitter=0.5, rng=random.Random(7))
    reference = random.Random(7)
    expected = [0.0]
    for failures in range(1, 5):
        delay = min(2 * 2 ** (failures - 1), 16) * (1 - 0.5 * reference.random())
        expected.append(expected[-1] + delay)
    task_type = flaky_type("flaky-jitter", 4, backoff)
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(task_type)
    await task_type("x").enqueue(storage)
    await run_for(pool, 100)
    assert times() == [round(at, 3) for at in expected]
    assert times() != [0.0, 2.0, 6.0, 14.0, 30.0]  # jitter moved them


async def test_a_task_that_recovers_stops_retrying(autojump_clock: trio.testing.MockClock) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage)
    pool.register_task_type(Flaky)
    events: list[tuple[EventKind, Any]] = []
    pool.on_event(lambda ctx, ev: events.append((ev.kind, ev.result)))
    await Flaky("x", failures=1).enqueue(storage)
    await run_for(pool, 100)
    assert [(at, attempt) for at, _, attempt in RUNS] == [(0.0, 1), (2.0, 2)]
    assert [(kind, result) for kind, result in events if kind is EventKind.Success] == [
        (EventKind.Success, "x")
    ]


async def test_steering_errors_keep_their_meaning(autojump_clock: trio.testing.MockClock) -> None:
    class Steer(BackgroundTask):
        TASK_NAME = "steer"
        BACKOFF_MODE = BackoffMode.constant(100)
        how: str

        async def run(self, task: CurrentTask, app: Any) -> None:
            record(self, task)
            if self.how == "abort":
                raise AbortError("no")
            if task.attempt == 1 and self.how == "after":
                raise RetryAfterError("later", 7)
            if task.attempt == 1 and self.how == "defer":
                raise DeferredError("now")
            return None

    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Steer)
    for how in ("abort", "after", "defer"):
        await Steer(how).enqueue(storage)
    await run_for(pool, 1000)
    # AbortError: one execution; RetryAfterError and DeferredError choose
    # their own delay instead of the type's 100 s backoff.
    assert [(at, what, attempt) for at, what, attempt in RUNS] == [
        (0.0, "steer:{'how': 'abort'}", 1),
        (0.0, "steer:{'how': 'after'}", 1),
        (0.0, "steer:{'how': 'defer'}", 1),
        (0.0, "steer:{'how': 'defer'}", 2),
        (7.0, "steer:{'how': 'after'}", 2),
    ]


async def test_retry_error_wraps_the_tasks_error(autojump_clock: trio.testing.MockClock) -> None:
    task_type = flaky_type("flaky-errors", 1, BackoffMode.constant(3))
    storage = MemoryStorage()
    errors: list[BaseException | None] = []
    pool = WorkerPool(storage).register_task_type(task_type)
    pool.on_event(lambda ctx, ev: errors.append(ev.error) if ev.kind is EventKind.Error else None)
    await task_type("x").enqueue(storage)
    await run_for(pool, 100)
    retry, final = errors
    # A retry with a delay travels as RetryAfterError (the worker waits its
    # delay); its cause is the task's own error. The last failure is bare.
    assert isinstance(retry, RetryAfterError) and retry.delay == 3.0
    assert isinstance(retry.__cause__, RuntimeError)
    assert str(retry.__cause__) == "x failed attempt 1"
    assert type(final) is RuntimeError and str(final) == "x failed attempt 2"


# -- dispatch -------------------------------------------------------------------------


async def test_one_queue_dispatches_several_types_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Add).register_task_type(Shout)
    await Add(1, 2).enqueue(storage)
    await Shout("hi").enqueue(storage)
    await Add(3, 4).enqueue(storage)
    results: list[Any] = []
    pool.on_event(
        lambda ctx, ev: results.append(ev.result) if ev.kind is EventKind.Success else None
    )
    await run_for(pool, 1)
    assert [what for _, what, _ in RUNS] == [
        "add:{'a': 1, 'b': 2}",
        "shout:{'text': 'hi'}",
        "add:{'a': 3, 'b': 4}",
    ]
    assert results == [3, "HI", 7]


async def test_unknown_name_fails_that_task_and_the_worker_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Add).register_task_type(Shout)
    errors: list[tuple[TaskId | None, BaseException | None]] = []
    pool.on_event(
        lambda ctx, ev: (
            errors.append((ev.task_id, ev.error)) if ev.kind is EventKind.Error else None
        )
    )
    unknown = await storage.push_task(
        TaskBuilder({"task_name": "resize", "payload": {}}).attempts(4).build()
    )
    await Add(1, 1).enqueue(storage)
    await run_for(pool, 100)
    assert [what for _, what, _ in RUNS] == ["add:{'a': 1, 'b': 1}"]
    ((task_id, error),) = errors  # one failure: not retried although 4 attempts were allowed
    assert task_id == unknown
    assert isinstance(error, UnknownTaskError)
    assert str(error) == (
        "no task type named 'resize' is registered with this worker pool "
        "(registered: 'add', 'shout')"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "plain text",
            "not a background task: expected {'task_name': str, 'payload': ...}, got 'plain text'",
        ),
        ({"task_name": "add"}, "task 'add' has no payload: {'task_name': 'add'}"),
        (
            {"task_name": "add", "payload": [1, 2]},
            "Add: expected the payload to be a JSON object, got list",
        ),
        (
            {"task_name": "add", "payload": {"a": 1}},
            "cannot rebuild Add ('add') from payload {'a': 1}: TypeError: "
            "Add.__init__() missing 1 required positional argument: 'b'",
        ),
    ],
    ids=["not-an-envelope", "no-payload", "payload-not-object", "missing-field"],
)
async def test_a_payload_that_does_not_fit_fails_without_retry(
    args: Any, message: str, autojump_clock: trio.testing.MockClock
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Add)
    errors: list[BaseException | None] = []
    pool.on_event(lambda ctx, ev: errors.append(ev.error) if ev.kind is EventKind.Error else None)
    await storage.push_task(TaskBuilder(args).attempts(4).build())
    await Add(2, 2).enqueue(storage)
    await run_for(pool, 100)
    assert [what for _, what, _ in RUNS] == ["add:{'a': 2, 'b': 2}"]
    (error,) = errors
    assert isinstance(error, CodecError)
    assert str(error) == message


async def test_current_task_describes_the_execution(
    autojump_clock: trio.testing.MockClock, wall_clock: WallClock
) -> None:
    seen: list[CurrentTask] = []

    class Inspect(BackgroundTask):
        TASK_NAME = "inspect"
        QUEUE = "inspections"
        MAX_RETRIES = 1
        BACKOFF_MODE = BackoffMode.constant(1)

        async def run(self, task: CurrentTask, app: Any) -> None:
            seen.append(task)
            if task.attempt == 1:
                raise RuntimeError("again")

    queues = MemoryQueues()
    pool = WorkerPool(queues).register_task_type(Inspect)
    before = trio.current_time()
    enqueued_at = wall_clock.now()  # the test's wall clock stands still until trio's moves
    task_id = await Inspect().enqueue(queues)
    await run_for(pool, 10)
    assert before == 0.0
    first, second = seen
    assert (first.id, first.task_name, first.attempt, first.max_attempts, first.queue) == (
        task_id,
        "inspect",
        1,
        2,
        "inspections",
    )
    assert (second.id, second.attempt, second.retries) == (task_id, 2, 1)
    assert second.created_at == first.created_at
    assert first.created_at == datetime.datetime.fromtimestamp(enqueued_at, datetime.UTC)
    assert first.created_at.tzinfo is not None


# -- queues ------------------------------------------------------------------------------


class Fast(BackgroundTask):
    TASK_NAME = "fast"
    QUEUE = "fast"
    n: int

    async def run(self, task: CurrentTask, app: Any) -> str:
        record(self, task)
        await trio.sleep(1)
        return task.queue


class Slow(BackgroundTask):
    TASK_NAME = "slow"
    QUEUE = "slow"
    n: int

    async def run(self, task: CurrentTask, app: Any) -> str:
        record(self, task)
        await trio.sleep(1)
        return task.queue


async def test_queues_have_their_own_workers(autojump_clock: trio.testing.MockClock) -> None:
    queues = MemoryQueues()
    pool = (
        WorkerPool(queues, name="p")
        .register_task_type(Fast)
        .register_task_type(Slow)
        .configure_queue("fast", num_workers=3)
    )
    for n in range(3):
        await Fast(n).enqueue(queues)
        await Slow(n).enqueue(queues)
    names: list[list[str]] = []

    async def signal() -> None:
        await trio.sleep(0.5)
        names.append([worker.name for worker in pool.workers])
        await trio.sleep(10)

    await pool.run_until(signal)
    # Three workers run the fast queue at once; the slow one (not configured:
    # one worker) runs its tasks one after the other.
    assert times("fast") == [0.0, 0.0, 0.0]
    assert times("slow") == [0.0, 1.0, 2.0]
    assert names == [["p.fast.0", "p.fast.1", "p.fast.2", "p.slow.0"]]
    assert pool.workers == []
    # MemoryQueues cannot delete a task: KeepAll, the only mode it has.
    keep = RetentionMode.KeepAll
    assert pool.queues == [QueueConfig("fast", 3, keep), QueueConfig("slow", 1, keep)]


async def test_a_single_queue_backend_runs_every_type(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Fast).register_task_type(Slow)
    assert pool.queues == [QueueConfig("default", 1, RetentionMode.KeepAll)]
    await Fast(1).enqueue(storage)
    await Slow(2).enqueue(storage)
    await run_for(pool, 10)
    assert [(at, what) for at, what, _ in RUNS] == [(0.0, "fast:{'n': 1}"), (1.0, "slow:{'n': 2}")]


async def test_json_storage_queues_share_one_file(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "f.jsonl"
    storage = JsonStorage(path)
    pool = WorkerPool(storage).register_task_type(Fast).register_task_type(Slow)
    for queue in ("fast", "slow"):  # keep the results to read them (default: RemoveDone)
        pool.configure_queue(queue, retention=RetentionMode.KeepAll)
    ids = [await Fast(1).enqueue(storage), await Slow(2).enqueue(storage)]

    async def finished() -> None:
        async for _ in storage.wait_for(ids):
            pass

    await pool.run_until(finished)
    assert [r.unwrap() for r in await storage.check_status(ids)] == ["fast", "slow"]
    assert sorted(what for _, what, _ in RUNS) == ["fast:{'n': 1}", "slow:{'n': 2}"]
    # The queue handles the pool opened are closed: the file closes with ours.
    storage.close()
    assert lock_is_free(path)
    with JsonStorage(path) as reopened:
        assert [r.status for r in await reopened.check_status(ids)] == [Status.Done, Status.Done]


async def test_json_storage_final_statuses_and_exact_retries(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    class Outcome(BackgroundTask):
        TASK_NAME = "outcome"
        MAX_RETRIES = 2
        BACKOFF_MODE = BackoffMode.linear(5)
        how: str

        async def run(self, task: CurrentTask, app: Any) -> str:
            record(self, task)
            if self.how == "abort":
                raise AbortError("stop here")
            if self.how == "fail":
                raise ValueError(f"attempt {task.attempt}")
            return "ok"

    storage = JsonStorage(tmp_path / "f.jsonl")
    pool = WorkerPool(storage).register_task_type(Outcome)
    pool.configure_queue("default", retention=RetentionMode.KeepAll)  # to read every status
    unknown = await storage.push_task(TaskBuilder({"task_name": "gone", "payload": {}}).build())
    fail = await Outcome("fail").enqueue(storage)

    async def finished(*ids: TaskId) -> None:
        async for _ in storage.wait_for(ids):
            pass

    await pool.run_until(lambda: finished(unknown, fail))
    # One task at a time: the retries of the failing one are exactly 5 s and 10 s apart.
    start = times()[0]
    assert [at - start for at in times()] == [0.0, 5.0, 15.0]
    ok = await Outcome("ok").enqueue(storage)
    aborted = await Outcome("abort").enqueue(storage)
    await pool.run_until(lambda: finished(ok, aborted))
    results = await storage.check_status([unknown, fail, ok, aborted])
    assert [r.status for r in results] == [Status.Failed, Status.Failed, Status.Done, Status.Killed]
    assert str(results[0].result.error) == (  # type: ignore[union-attr]
        "UnknownTaskError: no task type named 'gone' is registered with this worker pool "
        "(registered: 'outcome')"
    )
    assert str(results[1].result.error) == "ValueError: attempt 3"  # type: ignore[union-attr]
    assert results[2].unwrap() == "ok"
    assert str(results[3].result.error) == "AbortError: stop here"  # type: ignore[union-attr]
    storage.close()


# -- execution time limit: TIMEOUT (backie's timeout_msecs) ---------------------------------


class Sluggish(BackgroundTask):
    """Takes ``durations[attempt - 1]`` seconds; at most ``TIMEOUT`` = 2 s an execution."""

    TASK_NAME = "sluggish"
    MAX_RETRIES = 2
    BACKOFF_MODE = BackoffMode.constant(3)
    TIMEOUT = 2

    durations: list[float]

    async def run(self, task: CurrentTask, app: Any) -> str:
        record(self, task)
        await trio.sleep(self.durations[task.attempt - 1])
        return f"took {self.durations[task.attempt - 1]:g}s"


async def test_timeout_limits_each_execution_and_retries_after_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    errors: list[tuple[float, BaseException]] = []

    def on_event(ctx: Any, event: Any) -> None:
        if event.kind is EventKind.Error:
            errors.append((now(), event.error))

    pool = WorkerPool(storage).register_task_type(Sluggish).on_event(on_event)
    task_id = await Sluggish([5, 1]).enqueue(storage)
    await run_for(pool, 100)
    # Attempt 1 is cut at 2 s, retried 3 s later (BACKOFF_MODE), then ends at 6 s.
    assert [(at, attempt) for at, _, attempt in RUNS] == [(0.0, 1), (5.0, 2)]
    [(at, error)] = errors
    assert at == 2.0
    assert isinstance(error, RetryAfterError)  # the type's backoff, around the timeout
    assert isinstance(error.error, TaskTimeoutError)
    assert str(error.error) == "task timed out after 2s"
    [result] = await storage.check_status([task_id])
    assert (result.status, result.unwrap()) == (Status.Done, "took 1s")


async def test_a_task_that_always_times_out_fails_with_task_timeout_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Hanging(BackgroundTask):
        TASK_NAME = "hanging"
        MAX_RETRIES = 1
        BACKOFF_MODE = BackoffMode.NoBackoff
        TIMEOUT = datetime.timedelta(milliseconds=1500)

        async def run(self, task: CurrentTask, app: Any) -> None:
            record(self, task)
            await trio.sleep(1000)  # far beyond TIMEOUT

    with JsonStorage.new_temp() as storage:
        pool = WorkerPool(storage).register_task_type(Hanging)
        task_id = await Hanging().enqueue(storage)

        async def finished() -> None:
            await storage.wait_for_single(task_id)

        await pool.run_until(finished)
        assert [(at, attempt) for at, _, attempt in RUNS] == [(0.0, 1), (1.5, 2)]
        assert now() == 3.0
        # Failed is kept by the default retention (RemoveDone).
        [result] = await storage.check_status([task_id])
        assert result.status is Status.Failed
        assert str(result.result.error) == (  # type: ignore[union-attr]
            "TaskTimeoutError: task timed out after 1.5s"
        )


async def test_without_timeout_an_execution_runs_as_long_as_it_takes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    unlimited = type(
        "Unlimited",
        (Sluggish,),
        {
            "__module__": __name__,
            "__qualname__": "Unlimited",
            "TASK_NAME": "unlimited",
            "TIMEOUT": None,
        },
    )
    endless = type(
        "Endless",
        (Sluggish,),
        {
            "__module__": __name__,
            "__qualname__": "Endless",
            "TASK_NAME": "endless",
            "TIMEOUT": math.inf,
        },
    )
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(unlimited).register_task_type(endless)
    ids = [await unlimited([500]).enqueue(storage), await endless([500]).enqueue(storage)]
    await run_for(pool, 2000)
    results = await storage.check_status(ids)
    assert [r.unwrap() for r in results] == ["took 500s", "took 500s"]
    assert [at for at, _, _ in RUNS] == [0.0, 500.0]


# -- configure_queue with a QueueConfig (backie's form) --------------------------------------


async def test_configure_queue_takes_a_queue_config(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queues = MemoryQueues()
    pool = (
        WorkerPool(queues, name="p")
        .register_task_type(Fast)
        .configure_queue(QueueConfig("fast", num_workers=3))
        .configure_queue(QueueConfig("slow", 2, RetentionMode.KeepAll))
    )
    keep = RetentionMode.KeepAll
    assert pool.queues == [QueueConfig("fast", 3, keep), QueueConfig("slow", 2, keep)]
    for n in range(3):
        await Fast(n).enqueue(queues)
    await run_for(pool, 10)
    assert times("fast") == [0.0, 0.0, 0.0]  # three workers at once


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue(QueueConfig("q"), num_workers=2),
            TypeError,
            "configure_queue: pass num_workers in the QueueConfig, not besides it",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue(
                QueueConfig("q"), num_workers=2, retention=None
            ),
            TypeError,
            "configure_queue: pass num_workers and retention in the QueueConfig, not besides it",
        ),
        (
            lambda: QueueConfig(""),
            ValueError,
            "QueueConfig: name must be a non-empty str, got str ''",
        ),
        (
            lambda: QueueConfig("q", 0),
            ValueError,
            "QueueConfig: num_workers must be >= 1, got 0",
        ),
        (
            lambda: QueueConfig("q", True),
            TypeError,
            "QueueConfig: num_workers must be an int, got bool",
        ),
        (
            lambda: QueueConfig("q", 1, "RemoveDone"),
            TypeError,
            "QueueConfig: retention must be a RetentionMode or None, got 'RemoveDone'",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue(
                QueueConfig("q", retention=RetentionMode.RemoveDone)
            ),
            ValueError,
            "configure_queue: retention=RetentionMode.RemoveDone needs a backend that can "
            "delete a task (delete(task_id)); MemoryStorage keeps finished tasks and cannot "
            "(use RetentionMode.KeepAll, and vacuum() if it has one)",
        ),
    ],
)
def test_queue_config_bad_input(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        call()


# -- default retention: backie's RemoveDone where the backend can delete ---------------------


async def test_default_retention_on_json_storage_removes_done_tasks_and_keeps_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with JsonStorage.new_temp() as storage:
        pool = WorkerPool(storage).register_task_type(_RetentionEnds)
        assert pool.queues == [QueueConfig("default", 1, RetentionMode.RemoveDone)]
        ids = {
            how: await _RetentionEnds(how).enqueue(storage)
            for how in ("done", "failed", "killed", "unstorable")
        }
        await run_for(pool, 10)
        found = {how: await storage.fetch_by_id(task_id) for how, task_id in ids.items()}
        assert {how for how, task in found.items() if task is not None} == {
            "failed",
            "killed",
            "unstorable",
        }
        # Configured without a retention: the same default.
        again = WorkerPool(storage).register_task_type(_RetentionEnds)
        again.configure_queue("default", num_workers=2)
        assert again.queues == [QueueConfig("default", 2, RetentionMode.RemoveDone)]


async def test_default_retention_keeps_everything_where_the_backend_cannot_delete(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Add)
    assert pool.queues == [QueueConfig("default", 1, RetentionMode.KeepAll)]
    task_id = await Add(1, 2).enqueue(storage)
    await run_for(pool, 1)
    assert (await storage.fetch_by_id(task_id)) is not None
    [result] = await storage.check_status([task_id])
    assert result.unwrap() == 3


async def test_default_retention_of_a_family_is_decided_by_its_handles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Family:
        """A queue family the pool cannot judge before it opens a handle."""

        def __init__(self, storage: MemoryStorage) -> None:
            self.storage = storage

        def queue(self, name: str) -> MemoryStorage:
            return self.storage

    deleting = _DeletingStorage()
    pool = WorkerPool(Family(deleting)).register_task_type(Add)
    assert pool.queues == [QueueConfig("default", 1, None)]  # told when it runs
    task_id = await Add(1, 2).enqueue(deleting)
    await run_for(pool, 1)
    assert deleting.deleted == [task_id]  # its handles can delete: RemoveDone

    plain = MemoryStorage()
    pool = WorkerPool(Family(plain)).register_task_type(Add)
    await Add(1, 2).enqueue(plain)
    await run_for(pool, 1)  # its handles cannot: KeepAll, and no refusal
    assert RUNS[-1][1] == "add:{'a': 1, 'b': 2}"


# -- app data ------------------------------------------------------------------------------


async def test_app_data_factory_is_called_once_per_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    made: list[int] = []

    def factory() -> dict[str, int]:
        made.append(len(made))
        return {"worker": made[-1]}

    seen: list[tuple[str, int]] = []

    class Who(BackgroundTask):
        TASK_NAME = "who"
        QUEUE = "fast"

        async def run(self, task: CurrentTask, app: dict[str, int]) -> None:
            seen.append((task.queue, app["worker"]))
            await trio.sleep(1)

    class WhoElse(Who):
        TASK_NAME = "who-else"
        QUEUE = "slow"

    queues = MemoryQueues()
    pool = (
        WorkerPool(queues, app_data=factory)
        .register_task_type(Who)
        .register_task_type(WhoElse)
        .configure_queue("fast", num_workers=2)
    )
    for _ in range(4):
        await Who().enqueue(queues)
    await WhoElse().enqueue(queues)
    await run_for(pool, 10)
    assert made == [0, 1, 2]  # two fast workers, one slow
    assert sorted(seen) == [("fast", 0), ("fast", 0), ("fast", 1), ("fast", 1), ("slow", 2)]
    await run_for(pool, 1)
    assert made == [0, 1, 2, 3, 4, 5]  # a new run makes new values


async def test_async_app_data_factory_and_no_factory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[Any] = []

    class Peek(BackgroundTask):
        TASK_NAME = "peek"

        async def run(self, task: CurrentTask, app: Any) -> None:
            seen.append(app)

    async def connect() -> str:
        await trio.sleep(1)
        return "connection"

    storage = MemoryStorage()
    await Peek().enqueue(storage)
    await run_for(WorkerPool(storage, app_data=connect).register_task_type(Peek), 5)
    await Peek().enqueue(storage)
    await run_for(WorkerPool(storage).register_task_type(Peek), 5)
    assert seen == ["connection", None]


async def test_a_failing_factory_fails_run_before_any_task_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def factory() -> None:
        raise OSError("no database")

    path = tmp_path / "f.jsonl"
    storage = JsonStorage(path)
    await Fast(1).enqueue(storage)
    pool = WorkerPool(storage, app_data=factory).register_task_type(Fast)
    with pytest.raises(OSError, match=r"^no database$"):
        await pool.run()
    assert RUNS == []
    assert not pool.is_running
    storage.close()
    assert lock_is_free(path)  # the queue handle the run opened was closed


# -- shutdown and errors ------------------------------------------------------------------


async def test_shutdown_lets_tasks_in_flight_finish(autojump_clock: trio.testing.MockClock) -> None:
    class Long(BackgroundTask):
        TASK_NAME = "long"

        async def run(self, task: CurrentTask, app: Any) -> None:
            record(self, task)
            await trio.sleep(5)
            RUNS.append((now(), "finished", task.attempt))

    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Long).configure_queue("default", num_workers=2)
    for _ in range(3):
        await Long().enqueue(storage)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run)
        await trio.sleep(1)
        assert pool.is_running
        pool.shutdown()
    assert trio.current_time() == 5.0
    assert [(at, what) for at, what, _ in RUNS] == [
        (0.0, "long:{}"),
        (0.0, "long:{}"),
        (5.0, "finished"),
        (5.0, "finished"),
    ]
    assert len(storage) == 1  # the third was never pulled
    assert not pool.is_running


async def test_shutdown_before_run_stops_the_next_run_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage()
    pool = WorkerPool(storage).register_task_type(Add)
    pool.shutdown()
    await pool.run()
    assert trio.current_time() == 0.0
    await Add(1, 1).enqueue(storage)
    await run_for(pool, 1)  # the request was used up: this run works
    assert [what for _, what, _ in RUNS] == ["add:{'a': 1, 'b': 1}"]


async def test_running_twice_at_once_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    pool = WorkerPool(MemoryStorage()).register_task_type(Add)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.run)
        await trio.sleep(1)
        with pytest.raises(WorkerStateError, match=r"^WorkerPool 'pool' is already running$"):
            await pool.run()
        pool.shutdown()


class _BrokenQueues(MemoryQueues):
    """A queue family whose "broken" queue fails when a worker pulls from it."""

    broken: _BrokenStorage | None = None

    def queue(self, name: str) -> Any:
        if name != "broken":
            return super().queue(name)
        if self.broken is None:
            self.broken = _BrokenStorage()
        return self.broken


class _BrokenStorage(MemoryStorage):
    def take_nowait(self) -> Task | None:  # type: ignore[override]
        raise OSError("disk gone")


async def test_a_failing_worker_stops_the_pool_gracefully(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken(BackgroundTask):
        TASK_NAME = "broken"
        QUEUE = "broken"

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    queues = _BrokenQueues()
    pool = WorkerPool(queues).register_task_type(Fast).register_task_type(Broken)
    await Fast(1).enqueue(queues)
    with pytest.raises(OSError, match=r"^disk gone$"):
        await pool.run()
    # The healthy worker finished its task in flight before the pool stopped.
    assert RUNS == [(0.0, "fast:{'n': 1}", 1)]
    assert trio.current_time() == 1.0

    pool.configure_queue("broken", num_workers=2)
    with pytest.raises(ExceptionGroup) as group:
        await pool.run()
    assert str(group.value) == "WorkerPool 'pool': 2 workers failed (2 sub-exceptions)"
    assert [str(error) for error in group.value.exceptions] == ["disk gone", "disk gone"]


# -- retention -------------------------------------------------------------------------------


class _DeletingStorage(MemoryStorage):
    """A MemoryStorage that claims to keep finished tasks and records deletions."""

    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[TaskId] = []

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None:
        return None

    async def delete(self, task_id: TaskId) -> bool:
        await trio.lowlevel.checkpoint()
        self.deleted.append(task_id)
        return True


@pytest.mark.parametrize(
    ("retention", "removed"),
    [
        (RetentionMode.KeepAll, []),
        (RetentionMode.RemoveDone, ["done"]),
        (RetentionMode.RemoveAll, ["done", "killed", "failed"]),
    ],
)
async def test_retention_deletes_finished_tasks(
    retention: RetentionMode, removed: list[str], autojump_clock: trio.testing.MockClock
) -> None:
    class Ends(BackgroundTask):
        TASK_NAME = "ends"
        MAX_RETRIES = 1
        BACKOFF_MODE = BackoffMode.constant(1)
        how: str

        async def run(self, task: CurrentTask, app: Any) -> None:
            if self.how == "killed":
                raise AbortError("killed")
            if self.how == "failed":
                raise RuntimeError("failed")

    storage = _DeletingStorage()
    pool = WorkerPool(storage).register_task_type(Ends)
    pool.configure_queue("default", retention=retention)
    ids = {how: await Ends(how).enqueue(storage) for how in ("done", "killed", "failed")}
    await run_for(pool, 10)
    assert storage.deleted == [ids[how] for how in removed]


class _RetentionEnds(BackgroundTask):
    """Ends as its ``how`` says: done, failed (after a retry), killed, or a codec failure."""

    TASK_NAME = "retention-ends"
    MAX_RETRIES = 1
    BACKOFF_MODE = BackoffMode.constant(1)
    how: str

    async def run(self, task: CurrentTask, app: Any) -> Any:
        record(self, task)
        if self.how == "killed":
            raise AbortError("killed")
        if self.how == "failed":
            raise RuntimeError("failed")
        if self.how == "unstorable":
            return {1, 2}  # a set: the JSON codec cannot store this result
        return self.how


@pytest.mark.parametrize(
    ("retention", "kept"),
    [
        (RetentionMode.KeepAll, {"done", "failed", "killed", "unstorable", "other"}),
        (RetentionMode.RemoveDone, {"failed", "killed", "unstorable", "other"}),
        (RetentionMode.RemoveAll, {"other"}),
    ],
)
async def test_retention_on_json_storage_removes_exactly_what_it_should(
    retention: RetentionMode,
    kept: set[str],
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = JsonStorage.new_temp()
    pool = WorkerPool(storage).register_task_type(_RetentionEnds)
    pool.configure_queue("default", retention=retention)
    ids = {
        how: await _RetentionEnds(how).enqueue(storage)
        for how in ("done", "failed", "killed", "unstorable")
    }
    # A task of another queue of the same file: the pool does not serve it.
    other = storage.queue("other")
    ids["other"] = await other.push("untouched")
    await run_for(pool, 10)
    assert sorted(RUNS) == sorted(
        [
            (0.0, "retention-ends:{'how': 'done'}", 1),
            (0.0, "retention-ends:{'how': 'failed'}", 1),
            (1.0, "retention-ends:{'how': 'failed'}", 2),
            (0.0, "retention-ends:{'how': 'killed'}", 1),
            (0.0, "retention-ends:{'how': 'unstorable'}", 1),
        ]
    )
    found = {how: await storage.fetch_by_id(task_id) for how, task_id in ids.items()}
    assert {how for how, task in found.items() if task is not None} == kept
    statuses = {how: task.parts.status for how, task in found.items() if task is not None}
    expected = {
        "done": Status.Done,
        "failed": Status.Failed,
        "killed": Status.Killed,
        "unstorable": Status.Failed,  # Done by the handler, Failed in the file: kept
        "other": Status.Pending,
    }
    assert statuses == {how: expected[how] for how in kept}
    # The deletions are in the file (fsynced): a copy of it, opened anew, holds the same.
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(storage.path, copy)
    other.close()
    storage.close()
    with JsonStorage(copy) as reopened:
        assert {
            how for how, task_id in ids.items() if await reopened.fetch_by_id(task_id) is not None
        } == kept


async def test_retention_deletes_a_retried_task_only_once_it_is_final(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Twice(BackgroundTask):
        TASK_NAME = "twice"
        MAX_RETRIES = 1
        BACKOFF_MODE = BackoffMode.constant(5)

        async def run(self, task: CurrentTask, app: Any) -> int:
            record(self, task)
            if task.attempt == 1:
                raise RuntimeError("first attempt fails")
            return task.attempt

    with JsonStorage.new_temp() as storage:
        pool = WorkerPool(storage).register_task_type(Twice)
        pool.configure_queue("default", retention=RetentionMode.RemoveDone)
        task_id = await Twice().enqueue(storage)

        async def signal() -> None:
            await trio.sleep(2)  # between the two attempts
            task = await storage.fetch_by_id(task_id)
            assert task is not None and task.parts.status is Status.Pending
            await trio.sleep(8)

        await pool.run_until(signal)
        assert [(at, attempt) for at, _, attempt in RUNS] == [(0.0, 1), (5.0, 2)]
        assert await storage.fetch_by_id(task_id) is None


async def test_retention_needs_a_backend_that_can_delete(tmp_path: Path) -> None:
    def message(name: str, mode: str) -> str:
        return re.escape(
            f"configure_queue: retention=RetentionMode.{mode} needs a backend that can "
            f"delete a task (delete(task_id)); {name} keeps finished tasks and cannot "
            f"(use RetentionMode.KeepAll, and vacuum() if it has one)"
        )

    class Undeletable(JsonStorage):
        delete = None  # type: ignore[assignment]

    storage = Undeletable(tmp_path / "f.jsonl")
    with pytest.raises(ValueError, match=message("Undeletable", "RemoveDone")):
        WorkerPool(storage).configure_queue("default", retention=RetentionMode.RemoveDone)
    storage.close()
    # JsonStorage can delete: every mode is accepted.
    with JsonStorage(tmp_path / "g.jsonl") as json_storage:
        for mode in RetentionMode:
            WorkerPool(json_storage).configure_queue("default", retention=mode)


async def test_memory_storage_retention_is_decided_alike_for_a_queue_and_a_family(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bare MemoryStorage and a MemoryQueues (of MemoryStorage) get the same answer.

    MemoryStorage keeps its last finished tasks (``results``) for fetch_by_id
    and wait_for. Without a ``delete`` it cannot apply RemoveDone/RemoveAll, and
    both are refused at configure_queue; with one, both accept. (A MemoryQueues
    used to be accepted and then fail its run with an AttributeError.)
    """
    can_delete = callable(getattr(MemoryStorage, "delete", None))
    for mode in (RetentionMode.RemoveDone, RetentionMode.RemoveAll):
        answers = []
        for backend in (MemoryStorage(), MemoryQueues()):
            try:
                WorkerPool(backend).configure_queue("default", retention=mode)
            except ValueError as error:
                answers.append(str(error))
            else:
                answers.append(None)
        if can_delete:
            assert answers == [None, None]
        else:
            refusal = (
                f"configure_queue: retention={mode} needs a backend that can delete a task "
                f"(delete(task_id)); MemoryStorage keeps finished tasks and cannot "
                f"(use RetentionMode.KeepAll, and vacuum() if it has one)"
            )
            assert answers == [refusal, refusal]
        WorkerPool(MemoryQueues()).configure_queue("default", retention=RetentionMode.KeepAll)


async def test_a_family_whose_handles_cannot_delete_is_refused_before_any_task_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Family:
        """A queue family the pool cannot judge before it opens a handle."""

        def __init__(self) -> None:
            self.storage = MemoryStorage()

        def queue(self, name: str) -> MemoryStorage:
            return self.storage

    family = Family()
    pool = WorkerPool(family).register_task_type(Add)
    pool.configure_queue("default", retention=RetentionMode.RemoveAll)  # cannot tell yet
    await Add(1, 2).enqueue(family.storage)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "WorkerPool 'pool', queue 'default': retention=RetentionMode.RemoveAll needs "
            "a backend that can delete a task"
        ),
    ):
        await pool.run()
    assert RUNS == []
    assert len(family.storage) == 1, "the task is still queued"


# -- registration and bad input -------------------------------------------------------------


def test_duplicate_task_names_name_both_classes() -> None:
    class Again(BackgroundTask):
        TASK_NAME = "add"

        async def run(self, task: CurrentTask, app: Any) -> None:
            return None

    pool = WorkerPool(MemoryStorage()).register_task_type(Add)
    pool.register_task_type(Add)  # the same class again is fine
    with pytest.raises(
        ValueError,
        match="^"
        + re.escape(
            f"register_task_type: TASK_NAME 'add' of {__name__}."
            f"test_duplicate_task_names_name_both_classes.<locals>.Again is already used by "
            f"{__name__}.Add"
        )
        + "$",
    ):
        pool.register_task_type(Again)
    assert pool.task_types == {"add": Add}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: WorkerPool("storage"),
            TypeError,
            "WorkerPool: backend must be a backend or a queue family with queue(name), "
            "got 'storage'",
        ),
        (
            lambda: WorkerPool(MemoryStorage(), app_data=42),
            TypeError,
            "WorkerPool: app_data must be a factory called once per worker (e.g. lambda: value) "
            "or None, got int 42",
        ),
        (
            lambda: WorkerPool(MemoryStorage(), name=""),
            ValueError,
            "WorkerPool: name must be a non-empty str, got ''",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).register_task_type(Add(1, 2)),  # type: ignore[arg-type]
            TypeError,
            "register_task_type: expected a BackgroundTask subclass, got Add(a=1, b=2)",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).register_task_type(BackgroundTask),
            TypeError,
            "register_task_type: BackgroundTask is abstract (it has no TASK_NAME)",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue(""),
            ValueError,
            "configure_queue: name must be a non-empty str, got str ''",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue("q", num_workers=0),
            ValueError,
            "configure_queue: num_workers must be >= 1, got 0",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue("q", num_workers=1.5),
            TypeError,
            "configure_queue: num_workers must be an int, got float",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue("q", retention="KeepAll"),
            TypeError,
            "configure_queue: retention must be a RetentionMode or None, got 'KeepAll'",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).configure_queue("a").configure_queue("b"),
            ValueError,
            "configure_queue: MemoryStorage is a single queue, already configured as 'a'; "
            "use a queue family (MemoryQueues, JsonStorage) for several queues",
        ),
        (
            lambda: WorkerPool(MemoryStorage()).on_event("print"),
            TypeError,
            "on_event: expected a callable, got 'print'",
        ),
    ],
)
def test_pool_bad_input(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        call()


async def test_run_without_task_types_and_enqueue_bad_input() -> None:
    pool = WorkerPool(MemoryStorage())
    with pytest.raises(
        ValueError,
        match=r"^WorkerPool 'pool': no task type is registered; call register_task_type\(\) first$",
    ):
        await pool.run()
    with pytest.raises(TypeError, match=r"^enqueue: expected a BackgroundTask, got dict$"):
        await pool.enqueue({"task_name": "add"})  # type: ignore[arg-type]


async def test_pool_enqueue_uses_its_backend(autojump_clock: trio.testing.MockClock) -> None:
    queues = MemoryQueues()
    pool = WorkerPool(queues).register_task_type(Fast)
    await pool.enqueue(Fast(5))
    assert len(queues.queue("fast")) == 1
    assert repr(pool) == "WorkerPool('pool', task_types=['fast'], queues=['fast'])"
