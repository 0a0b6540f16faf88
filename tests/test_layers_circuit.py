"""CircuitBreakerLayer: Closed, Open, HalfOpen; every config field; backpressure; no stall."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from conftest import EventLog

from pyapalis import MemoryStorage, Status, Task, TaskBuilder, WorkerBuilder, WorkerContext
from pyapalis.layers._circuit import (
    CircuitBreakerConfig,
    CircuitBreakerLayer,
    CircuitOpenError,
    CircuitState,
)


def scripted(
    failing: set[int], log: list[tuple[float, int]], stop_after: int, delay: float = 0.0
) -> Any:
    """A handler that fails for the items in ``failing`` and stops after ``stop_after`` calls."""

    async def handler(item: int, ctx: WorkerContext) -> int:
        log.append((trio.current_time(), item))
        if delay:
            await trio.sleep(delay)
        if len(log) == stop_after:
            ctx.stop()
        if item in failing:
            raise RuntimeError(f"item {item} failed")
        return item

    return handler


async def test_consecutive_failures_open_the_circuit_and_recovery_wakes_the_worker(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    layer = CircuitBreakerLayer(CircuitBreakerConfig(failure_threshold=3, recovery_timeout=30))
    log: list[tuple[float, int]] = []
    # 1, 2 fail, 3 succeeds (the count restarts), 4, 5, 6 fail: open at t=0.
    await storage.push_bulk(range(1, 10))
    handler = scripted({1, 2, 4, 5, 6}, log, stop_after=8)
    worker = WorkerBuilder("w").backend(storage).layer(layer).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(29)
        assert layer.state is CircuitState.Open
        stats = layer.statistics()
        assert stats.recovery_at == 30.0
        assert stats.opened_total == 1
        # Open: nothing pulled (backpressure); 3 tasks still in the storage.
        assert len(storage) == 3
        assert storage.statistics().taken_total == 6
    # Woken when recovery was due (not stalled); two trial successes close it.
    assert log == [(0.0, i) for i in range(1, 7)] + [(30.0, 7), (30.0, 8)]
    assert layer.state is CircuitState.Closed
    assert len(storage) == 1


async def test_a_success_while_closed_resets_the_failure_count(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    layer = CircuitBreakerLayer(CircuitBreakerConfig(failure_threshold=2, recovery_timeout=5))
    log: list[tuple[float, int]] = []
    await storage.push_bulk(range(1, 8))
    # f s f s f s f: never two in a row, never open.
    handler = scripted({1, 3, 5, 7}, log, stop_after=7)
    await WorkerBuilder("w").backend(storage).layer(layer).build(handler).run()
    assert log == [(0.0, i) for i in range(1, 8)]
    assert layer.statistics().opened_total == 0
    assert layer.statistics().consecutive_failures == 1


@pytest.mark.parametrize(
    ("threshold", "calls", "failing", "expected", "trials"),
    [
        # 0.5 of 3 trials: 2 successes close (one failure is tolerated).
        (0.5, 3, {10}, CircuitState.Closed, [10, 11, 12]),
        # 0.5 of 3: 2 failures make 2 successes impossible: open again at once.
        (0.5, 3, {10, 11}, CircuitState.Open, [10, 11]),
        # 1.0 of 2: every trial must succeed; one failure reopens.
        (1.0, 2, {11}, CircuitState.Open, [10, 11]),
        (1.0, 2, {10}, CircuitState.Open, [10]),
        # 0.2 of 4 -> ceil(0.8) = 1 success closes, even after 3 failures.
        (0.2, 4, {10, 11, 12}, CircuitState.Closed, [10, 11, 12, 13]),
    ],
)
async def test_success_threshold_is_a_fraction_of_the_half_open_calls(
    storage: MemoryStorage,
    autojump_clock: trio.testing.MockClock,
    threshold: float,
    calls: int,
    failing: set[int],
    expected: CircuitState,
    trials: list[int],
) -> None:
    config = CircuitBreakerConfig(
        failure_threshold=1,
        recovery_timeout=10,
        success_threshold=threshold,
        half_open_max_calls=calls,
    )
    layer = CircuitBreakerLayer(config)
    log: list[tuple[float, int]] = []
    await storage.push(0)  # fails: opens at t=0
    await storage.push_bulk(range(10, 10 + calls))  # the trials, from t=10
    handler = scripted({0} | failing, log, stop_after=10**6)
    worker = WorkerBuilder("w").backend(storage).layer(layer).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await trio.sleep(15)
        assert layer.state is expected
        worker.context.stop()
    # Trials run one by one until the verdict; an Open verdict stops the rest.
    assert log == [(0.0, 0)] + [(10.0, item) for item in trials]
    stats = layer.statistics()
    if expected is CircuitState.Open:
        assert stats.recovery_at == 20.0
        assert stats.opened_total == 2
    else:
        assert stats.recovery_at is None
        assert stats.consecutive_failures == 0


def test_required_successes_rounds_up_without_float_noise() -> None:
    assert CircuitBreakerConfig().required_successes == 2  # 0.5 of 3
    assert (
        CircuitBreakerConfig(success_threshold=0.7, half_open_max_calls=10).required_successes == 7
    )
    assert (
        CircuitBreakerConfig(success_threshold=1.0, half_open_max_calls=4).required_successes == 4
    )
    assert (
        CircuitBreakerConfig(success_threshold=0.01, half_open_max_calls=3).required_successes == 1
    )


async def test_half_open_admits_at_most_half_open_max_calls_at_once(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    config = CircuitBreakerConfig(
        failure_threshold=1, recovery_timeout=10, success_threshold=1.0, half_open_max_calls=2
    )
    layer = CircuitBreakerLayer(config)
    log: list[tuple[float, int]] = []
    # Trials take 4 s each.
    handler = scripted({0}, log, stop_after=7, delay=4)
    worker = WorkerBuilder("w").backend(storage).layer(layer).concurrency(5).build(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await storage.push(0)  # fails at t=4: open until t=14
        await trio.sleep(5)
        # Four loops had passed ready() while Closed: each takes a task, is
        # refused and hands it back (to the front), then waits for the circuit.
        await storage.push_bulk(range(1, 7))
        await trio.sleep(1)
        assert layer.statistics().rejected_total == 4
        assert len(storage) == 6
    # At t=14 two trials run (the other loops wait), both succeed at t=18, the
    # circuit closes and the remaining four run together.
    # (The hand-backs reached the front in trio's scheduling order.)
    assert [t for t, _ in log] == [0.0, 14.0, 14.0, 18.0, 18.0, 18.0, 18.0]
    assert sorted(item for _, item in log) == list(range(7))
    assert layer.state is CircuitState.Closed


async def test_reopening_restarts_the_recovery_timer_and_counters(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    config = CircuitBreakerConfig(
        failure_threshold=2, recovery_timeout=10, success_threshold=1.0, half_open_max_calls=1
    )
    layer = CircuitBreakerLayer(config)
    log: list[tuple[float, int]] = []
    await storage.push_bulk(range(1, 9))
    # 1, 2 fail: open at 0. Trial 3 fails at 10: open again until 20.
    # Trial 4 succeeds at 20: closed. 5 fails (count 1 after the reset), 6
    # succeeds, 7, 8 fail: open at 20 again.
    handler = scripted({1, 2, 3, 5, 7, 8}, log, stop_after=8)
    await WorkerBuilder("w").backend(storage).layer(layer).build(handler).run()
    assert log == [
        (0.0, 1),
        (0.0, 2),
        (10.0, 3),
        (20.0, 4),
        (20.0, 5),
        (20.0, 6),
        (20.0, 7),
        (20.0, 8),
    ]
    stats = layer.statistics()
    assert stats.state is CircuitState.Open
    assert stats.opened_total == 3
    assert stats.recovery_at == 30.0
    assert (stats.trial_calls, stats.trial_successes, stats.trial_failures) == (0, 0, 0)


async def test_a_loop_past_ready_when_the_circuit_opens_hands_its_task_back(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    layer = CircuitBreakerLayer(CircuitBreakerConfig(failure_threshold=1, recovery_timeout=10))
    ran: list[tuple[float, Any, int]] = []

    async def handler(item: str, ctx: WorkerContext, task: Task) -> None:
        ran.append((trio.current_time(), item, task.parts.attempt.current()))
        if item == "first":
            await trio.sleep(1)
            raise RuntimeError("down")
        ctx.stop()

    await storage.push("first")
    worker = (
        WorkerBuilder("w").backend(storage).layer(layer).concurrency(2).on_event(event_log)
    ).build(handler)
    second = TaskBuilder("second").attempts(1).build()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        # The second loop passed ready() while Closed and waits for a task.
        await trio.sleep(2)
        assert layer.state is CircuitState.Open
        await storage.push_task(second)  # taken at once, refused by the open circuit
        await trio.sleep(1)
        assert layer.statistics().rejected_total == 1
        assert second.parts.status is Status.Pending
        assert second.parts.attempt.current() == 0
    # Handed back unchanged and run as the trial once recovery was due.
    assert ran == [(0.0, "first", 1), (11.0, "second", 1)]
    assert second.parts.status is Status.Done
    # The hand-back is not an outcome: no event for it.
    assert event_log.kinds == ["Start", "Idle", "Error", "Success", "Stop"]


async def test_workers_built_with_one_layer_share_the_circuit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    layer = CircuitBreakerLayer(CircuitBreakerConfig(failure_threshold=2, recovery_timeout=10))
    storages = [MemoryStorage(), MemoryStorage()]
    log: list[tuple[float, str]] = []

    def handler_for(name: str) -> Any:
        async def handler(item: int) -> None:
            log.append((trio.current_time(), f"{name}{item}"))
            if item == 0:
                raise RuntimeError("down")

        return handler

    workers = [
        WorkerBuilder(name).backend(storage).layer(layer).build(handler_for(name))
        for name, storage in zip("ab", storages, strict=True)
    ]
    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(worker.run)
        await storages[0].push(0)
        await trio.sleep(1)
        await storages[1].push(0)  # the second failure opens the shared circuit
        await trio.sleep(1)
        await storages[0].push(1)
        await trio.sleep(20)
        for worker in workers:
            worker.context.stop()
    assert log == [(0.0, "a0"), (1.0, "b0"), (11.0, "a1")]


async def test_an_abandoned_trial_gives_its_slot_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A trial cancelled before its verdict (a hard shutdown) must not hold the
    # circuit half open forever.
    config = CircuitBreakerConfig(
        failure_threshold=1, recovery_timeout=0, success_threshold=1.0, half_open_max_calls=1
    )
    layer = CircuitBreakerLayer(config)
    release = trio.Event()

    async def inner(task: Task) -> str:
        if task.args == "fail":
            raise RuntimeError("down")
        if task.args == "hang":
            await trio.sleep_forever()
        await release.wait()
        return "ok"

    service: Any = layer.layer(inner)
    with pytest.raises(RuntimeError):
        await service(Task("fail"))
    assert layer.state is CircuitState.Open
    await service.ready()  # recovery_timeout 0: half open at once
    assert layer.state is CircuitState.HalfOpen
    with trio.move_on_after(1):
        await service(Task("hang"))
    assert layer.statistics().trial_calls == 0
    release.set()
    assert await service(Task("ok")) == "ok"
    assert layer.state is CircuitState.Closed


async def test_a_call_without_a_free_trial_is_refused_with_circuit_open_error() -> None:
    layer = CircuitBreakerLayer(
        CircuitBreakerConfig(failure_threshold=1, recovery_timeout=100, half_open_max_calls=1)
    )

    async def inner(task: Task) -> None:
        raise RuntimeError("down")

    service: Any = layer.layer(inner)
    with pytest.raises(RuntimeError):
        await service(Task(1))
    with pytest.raises(CircuitOpenError, match=r"circuit breaker is Open: task handed back"):
        await service(Task(2))
    assert layer.statistics().rejected_total == 1
    assert not service.ready_nowait()


# -- configuration ---------------------------------------------------------------------


def test_config_defaults_and_seconds() -> None:
    config = CircuitBreakerConfig()
    assert (
        config.failure_threshold,
        config.recovery_timeout,
        config.success_threshold,
        config.half_open_max_calls,
    ) == (5, 60.0, 0.5, 3)
    assert CircuitBreakerConfig(recovery_timeout=timedelta(minutes=2)).recovery_timeout == 120.0
    assert CircuitBreakerConfig(recovery_timeout=0).recovery_timeout == 0.0
    assert CircuitBreakerLayer().config == config
    assert str(CircuitState.HalfOpen) == "HalfOpen"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold must be an int, got float 2.5"),
        ({"failure_threshold": True}, TypeError, "failure_threshold must be an int, got bool True"),
        (
            {"recovery_timeout": -1},
            ValueError,
            "recovery_timeout must be a finite number of seconds >= 0, got -1",
        ),
        (
            {"recovery_timeout": math.nan},
            ValueError,
            "recovery_timeout must be a finite number of seconds >= 0, got nan",
        ),
        (
            {"recovery_timeout": math.inf},
            ValueError,
            "recovery_timeout must be a finite number of seconds >= 0, got inf",
        ),
        (
            {"recovery_timeout": "60"},
            TypeError,
            "recovery_timeout must be seconds (int, float or timedelta), got str '60'",
        ),
        (
            {"success_threshold": 0},
            ValueError,
            "success_threshold must be a fraction in (0, 1], got 0",
        ),
        (
            {"success_threshold": 1.5},
            ValueError,
            "success_threshold must be a fraction in (0, 1], got 1.5",
        ),
        (
            {"success_threshold": math.nan},
            ValueError,
            "success_threshold must be a fraction in (0, 1], got nan",
        ),
        (
            {"success_threshold": "half"},
            TypeError,
            "success_threshold must be a number, got str 'half'",
        ),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1, got 0"),
        (
            {"half_open_max_calls": None},
            TypeError,
            "half_open_max_calls must be an int, got NoneType None",
        ),
    ],
)
def test_config_bad_input(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        CircuitBreakerConfig(**kwargs)
    assert str(info.value) == f"CircuitBreakerConfig: {message}"
