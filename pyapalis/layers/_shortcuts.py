"""The builder shortcuts of the built-in layers (``.rate_limit(...)``, ``.break_circuit()`` ...).

``WorkerBuilder`` inherits :class:`LayerShortcuts`, so the worker imports no
layer: adding a layer with a shortcut means adding a method here, next to the
layers. Each shortcut is ``builder.layer(SomeLayer(...))``. The optional
integrations (Prometheus, OpenTelemetry) import their library only when their
layer is created.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from .._worker._retry import RetryPolicy
from .._worker._service import LayerLike
from ._ack import AcknowledgeLayer, Acknowledger
from ._circuit import CircuitBreakerConfig, CircuitBreakerLayer
from ._execution import CatchPanicLayer, RetryLayer, TimeoutLayer
from ._limits import ConcurrencyLimitLayer, LoadShedLayer, RateLimitLayer
from ._long_running import LongRunningConfig, LongRunningLayer
from ._otel import OpenTelemetryLayer
from ._prometheus import PrometheusLayer
from ._tracing import TracingLayer

__all__ = ["LayerShortcuts"]


class _AddsLayers(Protocol):
    def layer(self: B, layer: LayerLike) -> B: ...


B = TypeVar("B", bound=_AddsLayers)


class LayerShortcuts:
    """A shortcut per built-in layer, for a builder with ``.layer(layer) -> builder``."""

    __slots__ = ()

    def ack_with(self: B, acknowledger: Acknowledger | Any) -> B:
        """Call ``acknowledger(task, outcome)`` after each execution (:class:`AcknowledgeLayer`)."""
        return self.layer(AcknowledgeLayer(acknowledger))

    def break_circuit(self: B, config: CircuitBreakerConfig | None = None) -> B:
        """Stop pulling while tasks keep failing (:class:`CircuitBreakerLayer`)."""
        return self.layer(CircuitBreakerLayer(config))

    def long_running(self: B, config: LongRunningConfig | None = None) -> B:
        """Give handlers a ``Runner`` for tracked sub-work (:class:`LongRunningLayer`)."""
        return self.layer(LongRunningLayer(config))

    def rate_limit(self: B, n: int, per_seconds: float | timedelta) -> B:
        """Start at most ``n`` tasks in any ``per_seconds`` window (:class:`RateLimitLayer`)."""
        return self.layer(RateLimitLayer(n, per_seconds))

    def catch_panic(self: B, retryable: tuple[type[BaseException], ...] = ()) -> B:
        """Turn unexpected exceptions into ``AbortError`` (:class:`CatchPanicLayer`)."""
        return self.layer(CatchPanicLayer(retryable))

    def retry_in_place(self: B, policy: RetryPolicy) -> B:
        """Re-run a failing execution without handing it back (:class:`RetryLayer`)."""
        return self.layer(RetryLayer(policy))

    def total_timeout(self: B, seconds: float | timedelta) -> B:
        """Bound everything inside this point of the stack (:class:`TimeoutLayer`).

        Unlike ``.timeout()`` (each handler call), it also covers the layers
        added after it: retries in place, tracked long-running work.
        """
        return self.layer(TimeoutLayer(seconds))

    def concurrency_limit(self: B, limit: int) -> B:
        """At most ``limit`` tasks inside at once (:class:`ConcurrencyLimitLayer`)."""
        return self.layer(ConcurrencyLimitLayer(limit))

    def load_shed(self: B) -> B:
        """Reject tasks the layers added after it cannot take now (:class:`LoadShedLayer`)."""
        return self.layer(LoadShedLayer())

    def trace(
        self: B, logger: logging.Logger | str = "pyapalis.task", *, level: int = logging.INFO
    ) -> B:
        """Log each task's id, attempt, duration and outcome (:class:`TracingLayer`)."""
        return self.layer(TracingLayer(logger, level=level))

    def prometheus(self: B, registry: Any = None, *, namespace: str = "pyapalis") -> B:
        """Task metrics for prometheus_client (:class:`PrometheusLayer`, extra ``prometheus``)."""
        return self.layer(PrometheusLayer(registry, namespace=namespace))

    def open_telemetry(self: B, tracer_provider: Any = None, *, queue: str | None = None) -> B:
        """A span per task (:class:`OpenTelemetryLayer`, extra ``otel``)."""
        return self.layer(OpenTelemetryLayer(tracer_provider, queue=queue))
