"""How built-in layers fit the stack: the two zones, the fast path, hand-backs, shortcuts.

Task layers wrap the whole trip and see the task settled; execution layers
(``wraps_execution``) sit inside the backend acknowledgement, so what they
return or raise is what the backend records.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from _optional import needs
from conftest import EventLog

from pyapalis import (
    AbortError,
    BuildError,
    MemoryStorage,
    RetryPolicy,
    Status,
    Task,
    TaskBuilder,
    TaskFailedError,
    TaskTimeoutError,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis._worker._service import NotReadyError, Zone, compose, readiness_checks, zone_of
from pyapalis.layers import Service
from pyapalis.layers._ack import AcknowledgeLayer, EventListenerLayer
from pyapalis.layers._circuit import CircuitBreakerLayer
from pyapalis.layers._execution import CatchPanicLayer, RetryLayer, TimeoutLayer
from pyapalis.layers._limits import ConcurrencyLimitLayer, LoadShedLayer, RateLimitLayer
from pyapalis.layers._long_running import LongRunningLayer, Runner
from pyapalis.layers._otel import OpenTelemetryLayer
from pyapalis.layers._prometheus import PrometheusLayer
from pyapalis.layers._tracing import TracingLayer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Recording:
    """A layer that records the task's status when it enters and leaves."""

    def __init__(self, name: str, log: list[str], *, execution: bool = False) -> None:
        self.name = name
        self.log = log
        self.wraps_execution = execution

    def layer(self, inner: Service) -> Service:
        name, log = self.name, self.log

        async def service(task: Task) -> Any:
            log.append(f"{name}-in:{task.parts.status}")
            try:
                result = await inner(task)
            except Exception as exc:
                log.append(f"{name}-error:{task.parts.status}:{exc}")
                raise
            log.append(f"{name}-out:{task.parts.status}:{result!r}")
            return result

        return service


# -- zones -----------------------------------------------------------------------------


async def test_execution_layers_run_inside_the_ack_task_layers_outside(
    storage: MemoryStorage,
) -> None:
    log: list[str] = []

    async def handler(item: str, ctx: WorkerContext) -> str:
        log.append(f"handler:{item}")
        ctx.stop()
        return item.upper()

    await storage.push("x")
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(Recording("T1", log))
        .layer(Recording("E1", log, execution=True))
        .layer(Recording("T2", log))
        .layer(Recording("E2", log, execution=True))
        .build(handler)
    )
    await worker.run()
    # Task layers (in order) first, then the execution layers (in order); the
    # execution layers see the task Running, the task layers see it Done.
    assert log == [
        "T1-in:Queued",
        "T2-in:Queued",
        "E1-in:Queued",
        "E2-in:Queued",
        "handler:x",
        "E2-out:Running:'X'",
        "E1-out:Running:'X'",
        "T2-out:Done:'X'",
        "T1-out:Done:'X'",
    ]


async def test_an_execution_layer_changes_what_the_backend_records(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    class Double:
        wraps_execution: ClassVar[bool] = True

        def layer(self, inner: Service) -> Service:
            async def service(task: Task) -> Any:
                return 2 * await inner(task)

            return service

    async def handler(item: int, ctx: WorkerContext) -> int:
        ctx.stop()
        return item

    await storage.push(21)
    worker = WorkerBuilder("w").backend(storage).layer(Double()).on_event(event_log).build(handler)
    await worker.run()
    assert [e.result for e in event_log.of("Success")] == [42]


async def test_an_execution_layer_failing_before_the_handler_counts_an_attempt(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    refused: list[int] = []

    def refuse(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            refused.append(task.parts.attempt.current())
            raise PermissionError("no")

        return service

    refuse.wraps_execution = True  # type: ignore[attr-defined]
    task = TaskBuilder("x").attempts(3).build()
    await storage.push_task(task)
    worker = WorkerBuilder("w").backend(storage).layer(refuse).on_event(event_log)
    built = worker.build(lambda item: None)
    with trio.move_on_after(1):
        await built.run()
    assert refused == [0, 1, 2]
    assert task.parts.attempt.current() == 3
    assert task.parts.status is Status.Failed
    assert len(event_log.of("Error")) == 3


async def test_an_execution_layer_answering_without_the_handler_settles_once(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    def cached(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            return "cached"

        return service

    cached.wraps_execution = True  # type: ignore[attr-defined]
    task = Task("x")
    await storage.push_task(task)
    handled: list[str] = []
    worker = (
        WorkerBuilder("w").backend(storage).layer(cached).on_event(event_log).build(handled.append)
    )
    with trio.move_on_after(1):
        await worker.run()
    assert handled == []
    assert task.parts.status is Status.Done
    assert [e.result for e in event_log.of("Success")] == ["cached"]


@pytest.mark.parametrize(
    ("zone", "calls_inner"), [("task", False), ("execution", False), ("execution", True)]
)
async def test_false_from_a_layer_is_a_failure_like_false_from_the_handler(
    zone: str,
    calls_inner: bool,
    storage: MemoryStorage,
    autojump_clock: trio.testing.MockClock,
    event_log: EventLog,
) -> None:
    """One rule judges every value the acknowledgement records: ``False`` is a failure
    ("Task returned false"), retried while attempts last, whoever returned it: the
    handler, an execution layer that turned the handler's value into ``False``, or a
    layer that answered in the handler's place (an attempt counted all the same)."""

    def answer_false(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            if calls_inner:
                await inner(task)
            return False

        return service

    if zone == "execution":
        answer_false.wraps_execution = True  # type: ignore[attr-defined]
    task = TaskBuilder("x").attempts(2).build()
    await storage.push_task(task)
    handled: list[str] = []
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(answer_false)
        .on_event(event_log)
        .build(handled.append)
    )
    with trio.move_on_after(1):
        await worker.run()
    assert handled == (["x", "x"] if calls_inner else [])
    assert task.parts.status is Status.Failed
    assert task.parts.attempt.current() == 2
    errors = [e.error for e in event_log.of("Error")]  # type: ignore[attr-defined]
    assert [str(error) for error in errors] == ["Task returned false"] * 2
    assert all(isinstance(error, TaskFailedError) for error in errors)
    assert event_log.of("Success") == []


def test_layers_declare_their_zone() -> None:
    assert zone_of(AcknowledgeLayer(lambda task, outcome: None)) is Zone.Execution
    assert zone_of(CatchPanicLayer()) is Zone.Execution
    assert zone_of(LongRunningLayer()) is Zone.Execution
    assert zone_of(CircuitBreakerLayer()) is Zone.Task
    assert zone_of(RateLimitLayer(1, 1)) is Zone.Task
    assert zone_of(lambda inner: inner) is Zone.Task
    assert zone_of(Recording("r", [], execution=False)) is Zone.Task  # declared, and false


# -- zero cost when no service is added ---------------------------------------------------


def test_a_worker_without_layers_runs_the_one_frame_path() -> None:
    worker = WorkerBuilder("w").backend(MemoryStorage()).build(lambda item: None)
    assert worker.dispatch.layered is None
    assert worker.dispatch.readiness == []


def test_layers_that_add_no_service_keep_the_one_frame_path() -> None:
    seen: list[object] = []
    worker = (
        WorkerBuilder("w")
        .backend(MemoryStorage())
        .layer(EventListenerLayer(lambda ctx, ev: seen.append(ev)))
        .layer(lambda inner: inner)
        .build(lambda item: None)
    )
    assert worker.dispatch.layered is None
    assert worker.dispatch.readiness == []


def test_built_in_services_that_never_wait_are_not_awaited_per_task() -> None:
    worker = (
        WorkerBuilder("w")
        .backend(MemoryStorage())
        .catch_panic()
        .ack_with(lambda task, outcome: None)
        .long_running()
        .build(lambda item: None)
    )
    assert worker.dispatch.layered is not None
    assert worker.dispatch.readiness == []


def test_compose_skips_layers_that_return_their_inner_service() -> None:
    async def inner(task: Task) -> None:
        return None

    def wrap(inner: Service) -> Service:
        async def outer(task: Task) -> None:
            await inner(task)

        return outer

    service, services = compose([lambda s: s, wrap, lambda s: s], inner)
    assert services == [service, inner]
    assert readiness_checks(services) == []


# -- hand-back --------------------------------------------------------------------------------


async def test_not_ready_before_the_handler_hands_the_task_back_uncounted(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    class OnceNotReady:
        """Refuses the first call with NotReadyError, then is not ready for 5 s."""

        def __init__(self) -> None:
            self.calls = 0
            self.open_at = 0.0

        def layer(self, inner: Service) -> Service:
            gate = self

            class GateService:
                async def ready(self) -> None:
                    await trio.sleep_until(gate.open_at)

                async def __call__(self, task: Task) -> Any:
                    gate.calls += 1
                    if gate.calls == 1:
                        gate.open_at = trio.current_time() + 5
                        raise NotReadyError("not yet")
                    return await inner(task)

            return GateService()

    task = TaskBuilder("x").attempts(1).build()
    await storage.push_task(task)
    task.parts.attempt.increment()  # as if it had run once before (resumed)
    ran: list[tuple[float, int]] = []

    async def handler(item: str, ctx: WorkerContext) -> None:
        ran.append((trio.current_time(), task.parts.attempt.current()))
        ctx.stop()

    gate = OnceNotReady()
    worker = WorkerBuilder("w").backend(storage).layer(gate).on_event(event_log).build(handler)
    await worker.run()
    # Handed back without counting; taken again once ready, 5 s later.
    assert ran == [(5.0, 2)]
    assert gate.calls == 2
    assert task.parts.status is Status.Done
    assert event_log.kinds == ["Start", "Success", "Stop"]


async def test_cancelled_before_the_handler_keeps_the_attempt_count(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    def slow_gate(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            await trio.sleep(10)
            return await inner(task)

        return service

    task = Task("x")
    await storage.push_task(task)
    task.parts.attempt.increment()
    task.parts.attempt.increment()
    worker = WorkerBuilder("w").backend(storage).layer(slow_gate).build(lambda item: None)
    with trio.move_on_after(2):
        await worker.run()
    assert task.parts.attempt.current() == 2  # handed back: nothing counted, nothing lost
    assert task.parts.status is Status.Pending
    assert len(storage) == 1


# -- shortcuts -------------------------------------------------------------------------------


def test_shortcuts_add_the_built_in_layers_in_order() -> None:
    builder = (
        WorkerBuilder("w")
        .backend(MemoryStorage())
        .break_circuit()
        .rate_limit(5, 1)
        .catch_panic()
        .long_running()
        .ack_with(lambda task, outcome: None)
    )
    kinds = [type(layer).__name__ for layer in builder._layers]
    assert kinds == [
        "CircuitBreakerLayer",
        "RateLimitLayer",
        "CatchPanicLayer",
        "LongRunningLayer",
        "AcknowledgeLayer",
    ]
    rate = builder._layers[1]
    assert isinstance(rate, RateLimitLayer)
    assert (rate.n, rate.per_seconds) == (5, 1.0)


def test_shortcuts_check_their_arguments() -> None:
    builder = WorkerBuilder("w")
    with pytest.raises(TypeError, match=r"^AcknowledgeLayer: acknowledger must be callable"):
        builder.ack_with(42)
    with pytest.raises(TypeError, match=r"^CircuitBreakerLayer: config must be"):
        builder.break_circuit("fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^LongRunningLayer: config must be"):
        builder.long_running(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^RateLimitLayer: n must be >= 1, got 0$"):
        builder.rate_limit(0, 1)
    with pytest.raises(ValueError, match=r"^RateLimitLayer: per_seconds must be"):
        builder.rate_limit(1, -1)
    assert builder._layers == []


def test_every_built_in_layer_has_a_shortcut_configured_as_given() -> None:
    policy = RetryPolicy.retries(2)
    builder = (
        WorkerBuilder("w")
        .retry_in_place(policy)
        .total_timeout(7)
        .load_shed()
        .concurrency_limit(3)
        .trace("my.tasks", level=logging.DEBUG)
        .catch_panic((ConnectionError,))
    )
    retry, limit, shed, concurrency, trace, panic = builder._layers
    assert isinstance(retry, RetryLayer) and retry.policy is policy
    assert isinstance(limit, TimeoutLayer) and limit.seconds == 7.0
    assert isinstance(shed, LoadShedLayer)
    assert isinstance(concurrency, ConcurrencyLimitLayer) and concurrency.limit == 3
    assert isinstance(trace, TracingLayer)
    assert trace.logger.name == "my.tasks" and trace.level == logging.DEBUG
    assert isinstance(panic, CatchPanicLayer) and panic.retryable == (ConnectionError,)


@needs("prometheus_client", "prometheus")
def test_prometheus_shortcut_uses_the_registry_given() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    [layer] = WorkerBuilder("w").prometheus(registry, namespace="jobs")._layers
    assert isinstance(layer, PrometheusLayer)
    assert any(name.startswith("jobs_") for name in registry._names_to_collectors)


@needs("opentelemetry.sdk", "otel")
def test_open_telemetry_shortcut_uses_the_provider_given() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    [layer] = WorkerBuilder("w").open_telemetry(TracerProvider(), queue="emails")._layers
    assert isinstance(layer, OpenTelemetryLayer) and layer.queue == "emails"


def test_new_shortcuts_check_their_arguments() -> None:
    builder = WorkerBuilder("w")
    with pytest.raises(TypeError, match=r"^RetryLayer: policy must be a RetryPolicy"):
        builder.retry_in_place(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"TimeoutLayer"):
        builder.total_timeout(-1)
    with pytest.raises(ValueError, match=r"ConcurrencyLimitLayer"):
        builder.concurrency_limit(0)
    assert builder._layers == []


async def test_total_timeout_bounds_the_retries_in_place_too(
    storage: MemoryStorage, event_log: EventLog, autojump_clock: trio.testing.MockClock
) -> None:
    task = Task("slow")
    await storage.push_task(task)
    calls = 0

    async def handler(item: str, ctx: WorkerContext) -> None:
        nonlocal calls
        calls += 1
        ctx.stop()
        await trio.sleep(4)
        raise ConnectionError("down")

    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .total_timeout(10)  # outside: 4 s + 4 s + (cut at 10 s)
        .retry_in_place(RetryPolicy.retries(5))
        .on_event(event_log)
        .build(handler)
    )
    start = trio.current_time()
    await worker.run()
    assert calls == 3
    assert trio.current_time() - start == pytest.approx(10)
    assert task.parts.status is Status.Failed
    assert isinstance(event_log.of("Error")[-1].error, TaskTimeoutError)


def test_a_runner_parameter_without_long_running_fails_at_build() -> None:
    async def handler(item: int, runner: Runner) -> None:
        pass

    builder = WorkerBuilder("w").backend(MemoryStorage())
    with pytest.raises(BuildError, match=r"MissingLayer: .*takes a Runner.*long_running"):
        builder.build(handler)
    builder.long_running().build(handler)


async def test_catch_panic_shortcut_kills_instead_of_retrying(
    storage: MemoryStorage, event_log: EventLog
) -> None:
    from pyapalis import RetryPolicy

    task = Task({"a": 1})
    await storage.push_task(task)

    async def handler(item: dict[str, int], ctx: WorkerContext) -> int:
        ctx.stop()
        return item["missing"]

    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .retry(RetryPolicy.retries(5))
        .catch_panic()
        .on_event(event_log)
        .build(handler)
    )
    await worker.run()
    assert task.parts.status is Status.Killed
    assert task.parts.attempt.current() == 1
    [event] = event_log.of("Error")
    assert isinstance(event.error, AbortError)
    assert isinstance(event.error.__cause__, KeyError)


# -- imports ------------------------------------------------------------------------------------


def test_importing_pyapalis_imports_no_optional_dependency() -> None:
    code = (
        "import sys, pyapalis, pyapalis.layers._prometheus, pyapalis.layers._otel\n"
        "bad = [m for m in sys.modules if m.startswith(('prometheus_client', 'opentelemetry'))]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


# -- the seed's LoggingLayer example ----------------------------------------------------------


def test_logging_layer_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "logging_layer.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Start"
    assert lines[1:3] == [
        "request = 'first@example.com', target = 'email-worker'",
        "sending to first@example.com",
    ]
    assert lines[3].startswith("Success(")
    assert lines[4:6] == [
        "request = 'last@example.com', target = 'email-worker'",
        "sending to last@example.com",
    ]
    assert lines[6].startswith("Success(")
    assert lines[7:] == ["Stop"]
    assert proc.stderr == ""


async def test_logging_layer_example_forwards_readiness(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import logging_layer
    finally:
        sys.path.remove(str(EXAMPLES))

    # Its service forwards ready() to a rate limit inside it: 1 task per 10 s.
    starts: list[float] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        starts.append(trio.current_time())
        if len(starts) == 3:
            ctx.stop()

    await storage.push_bulk([1, 2, 3])
    worker = (
        WorkerBuilder("w")
        .backend(storage)
        .layer(logging_layer.LoggingLayer("t"))
        .rate_limit(1, 10)
        .build(handler)
    )
    await worker.run()
    assert starts == [0.0, 10.0, 20.0]


# -- a backend failure is not a task failure ---------------------------------------------------


async def test_a_backend_failure_in_the_ack_stops_the_worker_through_the_layers() -> None:
    class BrokenAck(MemoryStorage):
        def ack_nowait(self, task: Task, status: Status, result: Any, error: Any) -> None:
            raise OSError("disk full")

    storage = BrokenAck()
    await storage.push_bulk([1, 2])
    handled: list[int] = []
    breaker = CircuitBreakerLayer()

    async def handler(item: int) -> None:
        handled.append(item)

    worker = WorkerBuilder("w").backend(storage).layer(breaker).build(handler)
    with trio.fail_after(5), pytest.raises(OSError, match=r"^disk full$"):
        await worker.run()
    # The worker stopped at the first broken ack; the circuit did not count it.
    assert handled == [1]
    assert breaker.statistics().consecutive_failures == 0


async def test_not_ready_inside_the_ack_before_the_handler_hands_back_too(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock, event_log: EventLog
) -> None:
    refusals = 0

    def refuse_once(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            nonlocal refusals
            if refusals == 0:
                refusals += 1
                raise NotReadyError("later")
            return await inner(task)

        return service

    refuse_once.wraps_execution = True  # type: ignore[attr-defined]
    task = TaskBuilder("x").attempts(1).build()
    await storage.push_task(task)

    async def handler(item: str, ctx: WorkerContext) -> None:
        ctx.stop()

    worker = WorkerBuilder("w").backend(storage).layer(refuse_once).on_event(event_log)
    await worker.build(handler).run()
    assert task.parts.status is Status.Done
    assert task.parts.attempt.current() == 1
    assert event_log.kinds == ["Start", "Success", "Stop"]


async def test_not_ready_after_the_task_settled_is_only_logged(
    storage: MemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    def late(inner: Service) -> Service:
        async def service(task: Task) -> Any:
            await inner(task)
            raise NotReadyError("too late to refuse")

        return service

    await storage.push_bulk([1, 2])
    seen: list[int] = []

    async def handler(item: int, ctx: WorkerContext) -> None:
        seen.append(item)
        if item == 2:
            ctx.stop()

    with caplog.at_level("ERROR", logger="pyapalis.worker"):
        await WorkerBuilder("w").backend(storage).layer(late).build(handler).run()
    assert seen == [1, 2]  # the worker went on
    assert len(caplog.records) == 2
    assert all("raised after task" in r.getMessage() for r in caplog.records)
