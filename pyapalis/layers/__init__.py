"""Middleware: the Service and Layer protocols and every built-in layer.

A layer wraps the service that runs a task (tower-style); ``WorkerBuilder.layer``
adds one, and the builder's shortcuts (``.rate_limit(...)``, ``.break_circuit()``
...) add the built-in ones. Optional integrations (Prometheus, OpenTelemetry)
import their library only when used.
"""

from .._worker._service import Layer as Layer
from .._worker._service import Service as Service
from ._ack import AcknowledgeLayer as AcknowledgeLayer
from ._ack import EventListenerLayer as EventListenerLayer
from ._circuit import CircuitBreakerConfig as CircuitBreakerConfig
from ._circuit import CircuitBreakerLayer as CircuitBreakerLayer
from ._circuit import CircuitBreakerStatistics as CircuitBreakerStatistics
from ._circuit import CircuitState as CircuitState
from ._execution import CatchPanicLayer as CatchPanicLayer
from ._execution import RetryLayer as RetryLayer
from ._execution import TimeoutLayer as TimeoutLayer
from ._limits import ConcurrencyLimitLayer as ConcurrencyLimitLayer
from ._limits import LoadShedLayer as LoadShedLayer
from ._limits import RateLimitLayer as RateLimitLayer
from ._long_running import LongRunningConfig as LongRunningConfig
from ._long_running import LongRunningLayer as LongRunningLayer
from ._long_running import Operation as Operation
from ._long_running import Runner as Runner
from ._otel import OpenTelemetryLayer as OpenTelemetryLayer
from ._prometheus import PrometheusLayer as PrometheusLayer
from ._tracing import TracingLayer as TracingLayer

__all__ = [
    "AcknowledgeLayer",
    "CatchPanicLayer",
    "CircuitBreakerConfig",
    "CircuitBreakerLayer",
    "CircuitBreakerStatistics",
    "CircuitState",
    "ConcurrencyLimitLayer",
    "EventListenerLayer",
    "Layer",
    "LoadShedLayer",
    "LongRunningConfig",
    "LongRunningLayer",
    "OpenTelemetryLayer",
    "Operation",
    "PrometheusLayer",
    "RateLimitLayer",
    "RetryLayer",
    "Runner",
    "Service",
    "TimeoutLayer",
    "TracingLayer",
]
