"""Observability layers: TracingLayer (stdlib logging) and the Prometheus and OpenTelemetry extras.

The extras' tests skip when their library is not installed
(``pip install -e '.[prometheus,otel]'``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from _optional import needs

from pyapalis import (
    AbortError,
    BackoffMode,
    MemoryStorage,
    RetryPolicy,
    Task,
    TaskBuilder,
    WorkerBuilder,
    WorkerContext,
)
from pyapalis.layers._tracing import TracingLayer

needs_prometheus = needs("prometheus_client", "prometheus")
needs_otel = needs("opentelemetry.sdk", "otel")


async def run_mixed(storage: MemoryStorage, layer: Any, *, name: str = "obs") -> list[Task]:
    """Four tasks: done after 2.5 s; retried once then done (last); killed; failed for good."""
    tasks = [
        TaskBuilder("slow").id("t-slow").build(),
        TaskBuilder("flaky").id("t-flaky").attempts(2).build(),
        TaskBuilder("abort").id("t-abort").build(),
        TaskBuilder("broken").id("t-broken").build(),
    ]
    for task in tasks:
        await storage.push_task(task)
    attempts: dict[str, int] = {}

    async def handler(item: str, ctx: WorkerContext) -> str:
        attempts[item] = attempts.get(item, 0) + 1
        if item == "slow":
            await trio.sleep(2.5)
        elif item == "flaky" and attempts[item] == 1:
            raise ConnectionError("reset")
        elif item == "flaky":
            ctx.stop()
        elif item == "abort":
            raise AbortError("bad input")
        elif item == "broken":
            raise ValueError("bug")
        return item.upper()

    worker = (
        WorkerBuilder(name)
        .backend(storage)
        .retry(RetryPolicy.retries(0, BackoffMode.NoBackoff))
        .layer(layer)
        .build(handler)
    )
    await worker.run()
    return tasks


# -- TracingLayer ------------------------------------------------------------------------


async def test_tracing_logs_one_record_per_trip(
    storage: MemoryStorage,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="pyapalis.task"):
        await run_mixed(storage, TracingLayer())
    records = [r for r in caplog.records if r.name == "pyapalis.task"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "task t-slow Done (attempt 1, 2.500000s)"),
        ("INFO", "task t-flaky Retry (attempt 1, 0.000000s): ConnectionError('reset')"),
        ("ERROR", "task t-abort Killed (attempt 1, 0.000000s): AbortError('bad input')"),
        ("ERROR", "task t-broken Failed (attempt 1, 0.000000s): ValueError('bug')"),
        ("INFO", "task t-flaky Done (attempt 2, 0.000000s)"),
    ]
    first = records[0]
    assert (first.task_id, first.attempt, first.duration, first.outcome, first.worker) == (  # type: ignore[attr-defined]
        "t-slow",
        1,
        2.5,
        "Done",
        "obs",
    )
    assert records[1].exc_info is None
    assert records[3].exc_info is not None and isinstance(records[3].exc_info[1], ValueError)


async def test_tracing_with_start_records_and_a_custom_logger(
    storage: MemoryStorage,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.tracing")

    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    await storage.push_task(TaskBuilder(1).id("t-1").build())
    layer = TracingLayer(logger, level=logging.WARNING, started=True)
    with caplog.at_level(logging.DEBUG, logger="tests.tracing"):
        await WorkerBuilder("w").backend(storage).layer(layer).build(handler).run()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "task t-1 started"),
        ("WARNING", "task t-1 Done (attempt 1, 0.000000s)"),
    ]


async def test_tracing_formats_nothing_when_the_logger_drops_it(
    storage: MemoryStorage,
) -> None:
    made: list[object] = []

    class Strict(logging.Logger):
        def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
            made.append(msg)

    async def handler(item: int, ctx: WorkerContext) -> None:
        ctx.stop()

    await storage.push(1)
    layer = TracingLayer(Strict("strict", level=logging.WARNING))
    await WorkerBuilder("w").backend(storage).layer(layer).build(handler).run()
    assert made == []
    layer = TracingLayer(Strict("strict", level=logging.INFO))
    await storage.push(2)
    await WorkerBuilder("w").backend(storage).layer(layer).build(handler).run()
    assert made == ["task %s %s (attempt %d, %.6fs)"]


def test_tracing_bad_input() -> None:
    with pytest.raises(TypeError, match=r"^TracingLayer: logger must be a logging.Logger"):
        TracingLayer(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^TracingLayer: level must be a logging level"):
        TracingLayer(level="INFO")  # type: ignore[arg-type]


# -- PrometheusLayer ---------------------------------------------------------------------


@needs_prometheus
async def test_prometheus_counts_final_statuses_retries_durations_and_in_flight(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    from prometheus_client import CollectorRegistry

    from pyapalis.layers._prometheus import PrometheusLayer

    registry = CollectorRegistry()
    layer = PrometheusLayer(registry, buckets=(1, 5))
    seen_in_flight: list[float | None] = []

    async def watch() -> None:
        await trio.sleep(1)
        seen_in_flight.append(
            registry.get_sample_value("pyapalis_tasks_in_flight", {"worker": "obs"})
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await run_mixed(storage, layer)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"worker": "obs", **labels})

    assert seen_in_flight == [1.0]
    assert sample("pyapalis_tasks_in_flight") == 0.0
    assert sample("pyapalis_tasks_total", status="Done") == 2.0
    assert sample("pyapalis_tasks_total", status="Killed") == 1.0
    assert sample("pyapalis_tasks_total", status="Failed") == 1.0
    assert sample("pyapalis_task_retries_total") == 1.0
    assert sample("pyapalis_task_duration_seconds_count") == 5.0
    assert sample("pyapalis_task_duration_seconds_sum") == 2.5
    assert sample("pyapalis_task_duration_seconds_bucket", le="1.0") == 4.0
    assert sample("pyapalis_task_duration_seconds_bucket", le="5.0") == 5.0


@needs_prometheus
def test_prometheus_layers_share_metric_families_per_registry() -> None:
    from prometheus_client import CollectorRegistry

    from pyapalis.layers._prometheus import PrometheusLayer

    registry = CollectorRegistry()
    first, second = PrometheusLayer(registry), PrometheusLayer(registry)
    assert first._metrics is second._metrics  # no "Duplicated timeseries" error
    other = PrometheusLayer(registry, namespace="jobs")
    assert other._metrics is not first._metrics
    with pytest.raises(TypeError, match=r"^PrometheusLayer: registry must be a prometheus_client"):
        PrometheusLayer(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^PrometheusLayer: namespace must be a metric-name"):
        PrometheusLayer(registry, namespace="my jobs")
    with pytest.raises(TypeError, match=r"^PrometheusLayer: buckets must be a sequence of numbers"):
        PrometheusLayer(registry, buckets="1,2")


# -- OpenTelemetryLayer ------------------------------------------------------------------


@needs_otel
async def test_otel_a_span_per_trip_with_id_attempt_queue_and_outcome(
    storage: MemoryStorage, autojump_clock: trio.testing.MockClock
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from pyapalis.layers._otel import OpenTelemetryLayer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await run_mixed(storage, OpenTelemetryLayer(provider, queue="emails"))
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["process emails"] * 5
    assert all(s.kind is SpanKind.CONSUMER for s in spans)
    summary = [
        (
            s.attributes["messaging.message.id"],
            s.attributes["pyapalis.task.attempt"],
            s.attributes["pyapalis.task.outcome"],
            s.status.status_code,
        )
        for s in spans
        if s.attributes is not None
    ]
    assert summary == [
        ("t-slow", 1, "Done", StatusCode.UNSET),
        ("t-flaky", 1, "Retry", StatusCode.ERROR),
        ("t-abort", 1, "Killed", StatusCode.ERROR),
        ("t-broken", 1, "Failed", StatusCode.ERROR),
        ("t-flaky", 2, "Done", StatusCode.UNSET),
    ]
    first = spans[0].attributes
    assert first is not None
    assert first["messaging.system"] == "pyapalis"
    assert first["messaging.operation.type"] == "process"
    assert first["messaging.destination.name"] == "emails"
    assert first["pyapalis.worker"] == "obs"
    assert spans[0].end_time - spans[0].start_time >= 0  # type: ignore[operator]
    assert [e.name for e in spans[3].events] == ["exception"]
    assert spans[3].status.description == "ValueError: bug"


@needs_otel
async def test_otel_span_is_current_in_the_handler_and_named_after_the_worker(
    storage: MemoryStorage,
) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pyapalis.layers._otel import OpenTelemetryLayer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("handler")

    async def handler(item: int, ctx: WorkerContext) -> None:
        with tracer.start_as_current_span("inside"):
            pass
        ctx.stop()

    await storage.push(1)
    layer = OpenTelemetryLayer(provider)
    await WorkerBuilder("mailer").backend(storage).layer(layer).build(handler).run()
    inside, outer = exporter.get_finished_spans()
    assert outer.name == "process mailer"
    assert inside.parent is not None and inside.parent.span_id == outer.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked out of the worker
    with pytest.raises(TypeError, match=r"^OpenTelemetryLayer: tracer_provider must be"):
        OpenTelemetryLayer("provider")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^OpenTelemetryLayer: queue must be a non-empty string"):
        OpenTelemetryLayer(provider, queue="")
