"""OpenTelemetryLayer: a span per task (the ``pyapalis[otel]`` extra).

opentelemetry-api is imported when a layer is created, never when pyapalis is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._implementation import Task
from .._worker._context import WorkerContext
from .._worker._service import AlwaysReady, Service
from ._common import outcome_label

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["OpenTelemetryLayer"]


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as error:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "OpenTelemetryLayer needs opentelemetry-api: pip install 'pyapalis[otel]'"
        ) from error
    return trace


class OpenTelemetryLayer:
    """Wraps each task's trip through the layer in a ``CONSUMER`` span (a task layer).

    The span is named ``process <queue>`` and carries the messaging semantic
    conventions plus pyapalis's own attributes:

    * ``messaging.system`` = ``pyapalis``, ``messaging.operation.type`` =
      ``process``, ``messaging.destination.name`` = ``queue`` (default: the
      worker's name), ``messaging.message.id`` = the task id;
    * ``pyapalis.worker``, ``pyapalis.task.attempt`` (the attempt that ran),
      ``pyapalis.task.outcome`` (``Done``, ``Retry``, ``Failed``, ``Killed``,
      ``Error`` or ``HandedBack``, as :class:`~pyapalis.TracingLayer` logs).

    A failure records the exception on the span and sets its status to
    ``ERROR``. The span is current while the task runs, so spans the handler
    starts are its children. ``tracer_provider`` defaults to the global one.
    Needs the ``otel`` extra; ``ImportError`` says so if it is missing.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, queue: str | None = None
    ) -> None:
        trace = _import_trace()
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise TypeError(
                f"OpenTelemetryLayer: tracer_provider must be an opentelemetry TracerProvider, "
                f"got {type(tracer_provider).__name__} {tracer_provider!r}"
            )
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise ValueError(f"OpenTelemetryLayer: queue must be a non-empty string, got {queue!r}")
        self.tracer: Tracer = trace.get_tracer("pyapalis", tracer_provider=tracer_provider)
        self.queue = queue
        self._trace = trace

    def layer(self, inner: Service) -> Service:
        return _SpanService(inner, self, "")

    def layer_for_worker(self, inner: Service, worker: WorkerContext) -> Service:
        return _SpanService(inner, self, worker.name)

    def __repr__(self) -> str:
        return f"OpenTelemetryLayer(queue={self.queue!r})"


class _SpanService(AlwaysReady):
    __slots__ = ("_attributes", "_consumer", "_inner", "_name", "_status", "_tracer")

    def __init__(self, inner: Service, config: OpenTelemetryLayer, worker: str) -> None:
        trace = config._trace
        queue = config.queue or worker or "pyapalis"
        self._inner = inner
        self._tracer = config.tracer
        self._name = f"process {queue}"
        self._consumer = trace.SpanKind.CONSUMER
        self._status = (trace.Status, trace.StatusCode.ERROR)
        self._attributes = {
            "messaging.system": "pyapalis",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
            "pyapalis.worker": worker,
        }

    async def __call__(self, task: Task) -> Any:
        attributes = dict(self._attributes)
        attributes["messaging.message.id"] = str(task.parts.task_id)
        with self._tracer.start_as_current_span(
            self._name,
            kind=self._consumer,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await self._inner(task)
            except Exception as error:
                self._end(span, task, error)
                raise
            self._end(span, task, None)
            return result

    def _end(self, span: Any, task: Task, error: Exception | None) -> None:
        span.set_attribute("pyapalis.task.attempt", task.parts.attempt.current())
        span.set_attribute("pyapalis.task.outcome", outcome_label(task, error))
        if error is not None:
            span.record_exception(error)
            status, code = self._status
            span.set_status(status(code, f"{type(error).__name__}: {error}"))
