"""Retries, backoff, steering errors, final statuses and timeouts, in virtual time.

Each test records ``(trio.current_time(), attempt)`` in the handler and asserts
the exact instants of every execution.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import (
    AbortError,
    Attempt,
    BackoffMode,
    DeferredError,
    MemoryStorage,
    RetryAfterError,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    TaskFailedError,
    TaskTimeoutError,
    WorkerBuilder,
)


async def run_one(
    task: Task,
    handler: Any,
    *,
    policy: RetryPolicy | None = None,
    timeout: float | None = None,
    event_log: EventLog | None = None,
    horizon: float = 1000.0,
) -> MemoryStorage:
    """Push ``task``, run a worker until ``horizon`` virtual seconds, stop it."""
    storage = MemoryStorage()
    await storage.push_task(task)
    builder = WorkerBuilder("retry").backend(storage)
    if policy is not None:
        builder.retry(policy)
    if timeout is not None:
        builder.timeout(timeout)
    if event_log is not None:
        builder.on_event(event_log)
    worker = builder.build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(horizon)
        worker.context.stop()
    return storage


class Recorder:
    """A handler that fails with ``error`` (a value, or a factory of the attempt)
    while the attempt is in ``fail_on``, and records each execution."""

    def __init__(self, error: Any = None, fail_on: Any = None, result: Any = "ok") -> None:
        self.calls: list[tuple[float, int]] = []
        self.error = error if error is not None else (lambda n: RuntimeError(f"fail {n}"))
        self.fail_on = fail_on
        self.result = result

    async def __call__(self, item: Any, attempt: Attempt) -> Any:
        n = attempt.current()
        self.calls.append((trio.current_time(), n))
        if self.fail_on is None or n in self.fail_on:
            raise self.error(n) if callable(self.error) else self.error
        return self.result

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.calls]

    @property
    def attempts(self) -> list[int]:
        return [n for _, n in self.calls]


# -- the attempt budget -----------------------------------------------------------------


async def test_without_a_policy_one_execution(autojump_clock: trio.testing.MockClock) -> None:
    task = Task("x")
    handler = Recorder()
    await run_one(task, handler)
    assert handler.calls == [(0.0, 1)]
    assert task.parts.status is Status.Failed
    assert task.parts.attempt.current() == 1


@pytest.mark.parametrize("n", [0, 1, 3])
async def test_retries_n_means_n_plus_one_executions(
    n: int, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = Task("x")
    handler = Recorder()
    storage = await run_one(task, handler, policy=RetryPolicy.retries(n), event_log=event_log)
    assert handler.calls == [(0.0, k) for k in range(1, n + 2)]
    assert task.parts.status is Status.Failed  # exhausted: Failed, not Done
    assert task.parts.attempt.current() == n + 1
    errors = event_log.of("Error")
    assert [str(e.error) for e in errors] == [f"fail {k}" for k in range(1, n + 2)]
    assert event_log.of("Success") == []
    assert len(storage) == 0


async def test_success_on_a_retry_is_done(autojump_clock: trio.testing.MockClock) -> None:
    task = Task("x")
    handler = Recorder(fail_on={1, 2}, result=42)
    await run_one(task, handler, policy=RetryPolicy.retries(5))
    assert handler.attempts == [1, 2, 3]
    assert task.parts.status is Status.Done


async def test_the_tasks_max_attempts_wins_over_the_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fewer = TaskBuilder("x").attempts(2).build()
    handler = Recorder()
    await run_one(fewer, handler, policy=RetryPolicy.retries(5))
    assert handler.attempts == [1, 2]
    assert fewer.parts.status is Status.Failed

    more = TaskBuilder("y").attempts(4).build()
    handler = Recorder()
    await run_one(more, handler, policy=RetryPolicy.retries(1))
    assert handler.attempts == [1, 2, 3, 4]

    without_policy = TaskBuilder("z").attempts(3).build()
    handler = Recorder()
    await run_one(without_policy, handler)
    assert handler.attempts == [1, 2, 3]


async def test_the_first_execution_sees_attempt_one(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[int, int]] = []

    async def handler(item: int, attempt: Attempt) -> None:
        seen.append((item, attempt.current()))
        assert int(attempt) == attempt.current()

    await storage.push_bulk([1, 2])
    worker = WorkerBuilder("w").backend(storage).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    assert seen == [(1, 1), (2, 1)]


async def test_returning_false_is_a_failure(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = Task("x")
    calls = []

    async def handler(item: str, attempt: Attempt) -> bool:
        calls.append(attempt.current())
        return False

    await run_one(task, handler, policy=RetryPolicy.retries(1), event_log=event_log)
    assert calls == [1, 2]
    assert task.parts.status is Status.Failed
    errors = [e.error for e in event_log.of("Error")]
    assert len(errors) == 2
    assert all(type(e) is TaskFailedError for e in errors)
    assert str(errors[0]) == "Task returned false"


@pytest.mark.parametrize("value", [None, 0, "", [], True, {"a": 1}])
async def test_other_return_values_are_success(
    value: Any, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = Task("x")

    async def handler(item: str) -> Any:
        return value

    await run_one(task, handler, policy=RetryPolicy.retries(3), event_log=event_log)
    assert task.parts.status is Status.Done
    assert task.parts.attempt.current() == 1
    assert [e.result for e in event_log.of("Success")] == [value]


# -- backoff -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "times"),
    [
        (BackoffMode.NoBackoff, [0, 0, 0, 0]),
        (BackoffMode.constant(5), [0, 5, 10, 15]),
        (BackoffMode.linear(2), [0, 2, 6, 12]),
        (BackoffMode.linear(2, max_delay=3), [0, 2, 5, 8]),
        (BackoffMode.exponential(1), [0, 1, 3, 7]),
        (BackoffMode.exponential(0.5, factor=3), [0, 0.5, 2, 6.5]),
        (BackoffMode.exponential(1, max_delay=3), [0, 1, 3, 6]),
        # backie's 2^k seconds after the k-th failure: 2, 4, 8
        (BackoffMode.ExponentialBackoff, [0, 2, 6, 14]),
    ],
)
async def test_backoff_delays_are_exact(
    backoff: BackoffMode, times: list[float], autojump_clock: trio.testing.MockClock
) -> None:
    task = Task("x")
    handler = Recorder()
    await run_one(task, handler, policy=RetryPolicy.retries(3, backoff))
    assert handler.calls == [(float(t), k) for k, t in enumerate(times, start=1)]
    assert task.parts.status is Status.Failed


async def test_exponential_jitter_is_drawn_from_the_given_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = BackoffMode.exponential(4, jitter=0.5, rng=random.Random(1234))
    draws = random.Random(1234)
    expected = [0.0]
    for k in (1, 2, 3):
        delay = 4 * 2 ** (k - 1)
        expected.append(expected[-1] + delay * (1 - 0.5 * draws.random()))
    task = Task("x")
    handler = Recorder()
    await run_one(task, handler, policy=RetryPolicy.retries(3, backoff))
    assert handler.times == pytest.approx(expected, abs=1e-9)
    # Each jittered delay stays within [d/2, d].
    gaps = [b - a for a, b in zip(handler.times, handler.times[1:], strict=False)]
    for k, gap in enumerate(gaps, start=1):
        assert 4 * 2 ** (k - 1) * 0.5 <= gap <= 4 * 2 ** (k - 1)


async def test_the_policy_backoff_applies_to_a_tasks_own_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    task = TaskBuilder("x").attempts(3).build()
    handler = Recorder()
    await run_one(task, handler, policy=RetryPolicy.retries(0, BackoffMode.constant(7)))
    assert handler.times == [0.0, 7.0, 14.0]


def test_backoff_delay_values() -> None:
    assert [BackoffMode.ExponentialBackoff.delay(k) for k in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert BackoffMode.NoBackoff.delay(10) == 0.0
    assert BackoffMode.constant(3).delay(1) == BackoffMode.constant(3).delay(9) == 3.0
    linear = BackoffMode.linear(1.5, max_delay=4)
    assert [linear.delay(k) for k in (1, 2, 3, 4)] == [1.5, 3.0, 4.0, 4.0]
    capped = BackoffMode.exponential(1, max_delay=60)
    assert [capped.delay(k) for k in (1, 2, 3, 6, 7, 10_000)] == [1, 2, 4, 32, 60, 60]
    # A huge failure count neither overflows nor exceeds the cap.
    assert BackoffMode.exponential(1, factor=10, max_delay=5).delay(10**9) == 5
    with pytest.raises(ValueError, match="failures"):
        BackoffMode.constant(1).delay(0)


def test_backoff_validation() -> None:
    with pytest.raises(ValueError, match="delay"):
        BackoffMode.constant(-1)
    with pytest.raises(TypeError, match="delay"):
        BackoffMode.constant("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step"):
        BackoffMode.linear(math.nan)
    with pytest.raises(ValueError, match="max_delay"):
        BackoffMode.linear(1, max_delay=-1)
    with pytest.raises(ValueError, match="factor"):
        BackoffMode.exponential(1, factor=0.5)
    with pytest.raises(ValueError, match="jitter"):
        BackoffMode.exponential(1, jitter=1.5)
    with pytest.raises(ValueError, match="base"):
        BackoffMode.exponential(math.inf)


def test_retry_policy() -> None:
    policy = RetryPolicy.retries(3)
    assert policy.max_retries == 3
    assert policy.max_attempts == 4
    assert policy.backoff == BackoffMode.NoBackoff
    with_backoff = policy.with_backoff(BackoffMode.constant(2))
    assert with_backoff.backoff == BackoffMode.constant(2)
    assert with_backoff.max_attempts == 4
    assert policy.backoff == BackoffMode.NoBackoff  # immutable
    assert RetryPolicy.retries(0).max_attempts == 1
    with pytest.raises(ValueError, match="n must be >= 0"):
        RetryPolicy.retries(-1)
    with pytest.raises(TypeError):
        RetryPolicy.retries(True)
    with pytest.raises(TypeError):
        RetryPolicy.retries(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BackoffMode"):
        policy.with_backoff(5)  # type: ignore[arg-type]


# -- errors that steer retries --------------------------------------------------------------


async def test_abort_is_never_retried_and_kills_the_task(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = TaskBuilder("x").attempts(10).build()
    cause = ValueError("corrupt input")
    handler = Recorder(error=AbortError(cause))
    storage = await run_one(task, handler, policy=RetryPolicy.retries(5), event_log=event_log)
    assert handler.calls == [(0.0, 1)]
    assert task.parts.status is Status.Killed
    error = event_log.of("Error")[0].error
    assert type(error) is AbortError
    assert error.error is cause
    assert error.__cause__ is cause
    assert len(storage) == 0


async def test_retry_after_waits_its_delay(autojump_clock: trio.testing.MockClock) -> None:
    task = Task("x")
    # The error's delay wins over the policy's backoff.
    handler = Recorder(error=lambda n: RetryAfterError(f"busy {n}", 7 * n), fail_on={1, 2})
    await run_one(task, handler, policy=RetryPolicy.retries(3, BackoffMode.constant(100)))
    assert handler.calls == [(0.0, 1), (7.0, 2), (21.0, 3)]
    assert task.parts.status is Status.Done


async def test_retry_after_needs_an_attempt_left(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = TaskBuilder("x").attempts(2).build()
    handler = Recorder(error=lambda n: RetryAfterError(ConnectionError("down"), 3))
    await run_one(task, handler, event_log=event_log)
    assert handler.calls == [(0.0, 1), (3.0, 2)]
    assert task.parts.status is Status.Failed
    error = event_log.of("Error")[-1].error
    assert type(error) is RetryAfterError
    assert error.delay == 3.0
    assert type(error.__cause__) is ConnectionError


async def test_deferred_retries_at_once(autojump_clock: trio.testing.MockClock) -> None:
    task = Task("x")
    handler = Recorder(error=lambda n: DeferredError(), fail_on={1, 2})
    await run_one(task, handler, policy=RetryPolicy.retries(2, BackoffMode.constant(100)))
    assert handler.calls == [(0.0, 1), (0.0, 2), (0.0, 3)]
    assert task.parts.status is Status.Done


async def test_deferred_uses_up_attempts(autojump_clock: trio.testing.MockClock) -> None:
    task = TaskBuilder("x").attempts(3).build()
    handler = Recorder(error=lambda n: DeferredError("later"))
    await run_one(task, handler)
    assert handler.attempts == [1, 2, 3]
    assert task.parts.status is Status.Failed


def test_steering_error_validation() -> None:
    with pytest.raises(ValueError, match="delay"):
        RetryAfterError("x", -1)
    with pytest.raises(ValueError, match="delay"):
        RetryAfterError("x", math.nan)
    assert str(RetryAfterError("busy", 2.5)) == "busy (retry after 2.5s)"
    assert str(AbortError()) == "task aborted"
    assert str(DeferredError()) == "task deferred"


async def test_a_retry_goes_behind_waiting_tasks(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    # A retry goes back through the backend: it frees the loop for the next task.
    order: list[tuple[str, int]] = []

    async def handler(item: str, attempt: Attempt) -> None:
        order.append((item, attempt.current()))
        if item == "a" and attempt.current() == 1:
            raise DeferredError()

    await storage.push_bulk(["a", "b", "c"])
    worker = WorkerBuilder("w").backend(storage).retry(RetryPolicy.retries(1)).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(1)
        worker.context.stop()
    assert order == [("a", 1), ("b", 1), ("c", 1), ("a", 2)]


# -- timeouts ------------------------------------------------------------------------------


class Sleeper:
    def __init__(self, durations: dict[int, float]) -> None:
        self.durations = durations
        self.calls: list[tuple[float, int]] = []
        self.finished: list[float] = []

    async def __call__(self, item: Any, attempt: Attempt) -> str:
        self.calls.append((trio.current_time(), attempt.current()))
        await trio.sleep(self.durations.get(attempt.current(), 0))
        self.finished.append(trio.current_time())
        return "done"


async def test_per_task_timeout(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = TaskBuilder("x").timeout(5).attempts(2).build()
    handler = Sleeper({1: 10, 2: 10})
    await run_one(task, handler, event_log=event_log)
    # Each execution is cut at exactly 5 s; the timeout is retryable.
    assert handler.calls == [(0.0, 1), (5.0, 2)]
    assert handler.finished == []
    assert task.parts.status is Status.Failed
    errors = [e.error for e in event_log.of("Error")]
    assert [type(e) for e in errors] == [TaskTimeoutError, TaskTimeoutError]
    assert errors[0].timeout == 5.0
    assert isinstance(errors[0], TimeoutError)
    assert [t for t, ev in event_log.records if ev.kind.value == "Error"] == [5.0, 10.0]


async def test_timeout_then_success(autojump_clock: trio.testing.MockClock) -> None:
    task = TaskBuilder("x").timeout(5).attempts(3).build()
    handler = Sleeper({1: 10, 2: 4.5})
    await run_one(task, handler)
    assert handler.calls == [(0.0, 1), (5.0, 2)]
    assert handler.finished == [9.5]
    assert task.parts.status is Status.Done


async def test_per_worker_timeout(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = Task("x")
    handler = Sleeper({1: 10, 2: 10})
    await run_one(
        task,
        handler,
        timeout=3,
        policy=RetryPolicy.retries(1, BackoffMode.constant(2)),
        event_log=event_log,
    )
    # 0 -> timeout at 3, backoff 2 s, 5 -> timeout at 8.
    assert handler.calls == [(0.0, 1), (5.0, 2)]
    assert [t for t, ev in event_log.records if ev.kind.value == "Error"] == [3.0, 8.0]
    assert task.parts.status is Status.Failed
    assert all(type(e.error) is TaskTimeoutError for e in event_log.of("Error"))


async def test_the_tasks_timeout_wins_over_the_workers(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    short = TaskBuilder("short").timeout(1).build()
    handler = Sleeper({1: 5})
    await run_one(short, handler, timeout=10, event_log=event_log)
    assert [t for t, ev in event_log.records if ev.kind.value == "Error"] == [1.0]

    long = TaskBuilder("long").timeout(20).build()
    handler = Sleeper({1: 15})
    start = trio.current_time()
    await run_one(long, handler, timeout=10)
    assert handler.finished == [start + 15.0]
    assert long.parts.status is Status.Done


async def test_a_handler_within_its_timeout_succeeds(
    autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    task = Task("x")
    handler = Sleeper({1: 2.5})
    await run_one(task, handler, timeout=3, event_log=event_log)
    assert handler.finished == [2.5]
    assert task.parts.status is Status.Done
    assert [e.result for e in event_log.of("Success")] == ["done"]


async def test_a_timed_out_sync_handler_is_not_interrupted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Plain def handlers run inline: a timeout cannot interrupt them, and the
    # result stands.
    task = TaskBuilder("x").timeout(1).build()

    def handler(item: str) -> str:
        return "sync"

    await run_one(task, handler)
    assert task.parts.status is Status.Done


async def test_a_retry_is_never_refused_by_a_full_storage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = MemoryStorage(maxsize=1)
    flaky = Task("flaky")
    await storage.push_task(flaky)
    calls: list[tuple[float, str, int]] = []
    pushed_at: list[float] = []

    async def handler(item: str, attempt: Attempt) -> None:
        calls.append((trio.current_time(), item, attempt.current()))
        await trio.sleep(1)
        if item == "flaky" and attempt.current() == 1:
            raise RuntimeError("once")

    async def producer() -> None:
        for name in ("p1", "p2"):
            await storage.push(name)
            pushed_at.append(trio.current_time())

    sizes_at_error: list[int] = []
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .retry(RetryPolicy.retries(1))
        .on_event(lambda ctx, ev: ev.kind.value == "Error" and sizes_at_error.append(len(storage)))
        .build(handler)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(0.5)
        nursery.start_soon(producer)
        await trio.sleep(0.1)
        # The storage is full: p1 waits there, p2's push waits for room.
        assert len(storage) == 1
        assert storage.statistics().producers_waiting == 1
        await trio.sleep(10)
        worker.context.stop()
    # When flaky failed at t=1 the storage was full (p1), yet the retry went in.
    assert sizes_at_error == [2]
    assert calls == [(0.0, "flaky", 1), (1.0, "p1", 1), (2.0, "flaky", 2), (3.0, "p2", 1)]
    assert pushed_at == [0.5, 2.0]
    assert flaky.parts.status is Status.Done
