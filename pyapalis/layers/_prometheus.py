"""PrometheusLayer: task metrics for prometheus_client (the ``pyapalis[prometheus]`` extra).

prometheus_client is imported when a layer is created, never when pyapalis is.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from .._implementation import Task
from .._worker._context import WorkerContext
from .._worker._service import AlwaysReady, Service
from ._common import outcome_label

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["PrometheusLayer"]

_FINAL = frozenset({"Done", "Failed", "Killed"})


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as error:  # pragma: no cover - exercised without the extra
        raise ImportError(
            "PrometheusLayer needs prometheus_client: pip install 'pyapalis[prometheus]'"
        ) from error
    return prometheus_client


class _Metrics:
    """The metric families of one (registry, namespace): created once, shared by layers."""

    def __init__(
        self,
        prometheus: Any,
        registry: CollectorRegistry,
        namespace: str,
        buckets: Sequence[float] | None,
    ) -> None:
        self.tasks: Counter = prometheus.Counter(
            "tasks",
            "Tasks that reached a final status (Done, Failed, Killed).",
            ["worker", "status"],
            namespace=namespace,
            registry=registry,
        )
        self.retries: Counter = prometheus.Counter(
            "task_retries",
            "Executions that failed and were queued again.",
            ["worker"],
            namespace=namespace,
            registry=registry,
        )
        histogram_options: dict[str, Any] = {}
        if buckets is not None:
            histogram_options["buckets"] = buckets
        self.duration: Histogram = prometheus.Histogram(
            "task_duration_seconds",
            "Time from a task entering the layer to its outcome (seconds, trio's clock).",
            ["worker"],
            namespace=namespace,
            registry=registry,
            **histogram_options,
        )
        self.in_flight: Gauge = prometheus.Gauge(
            "tasks_in_flight",
            "Tasks inside the layer now.",
            ["worker"],
            namespace=namespace,
            registry=registry,
        )


# Registering the same metric twice in a registry is an error in prometheus_client,
# so every layer on one registry and namespace shares one set of families.
_families: weakref.WeakKeyDictionary[Any, dict[str, _Metrics]] = weakref.WeakKeyDictionary()


class PrometheusLayer:
    """Counts tasks by final status, times them and gauges those in flight (a task layer).

    Metrics (``namespace`` prefix, default ``pyapalis``), labelled by worker
    name:

    * ``pyapalis_tasks_total{worker, status}``: tasks that reached a final
      status, ``Done``, ``Failed`` or ``Killed`` (or ``Error`` for a failure
      raised before the acknowledgement, which the worker then settles);
    * ``pyapalis_task_retries_total{worker}``: executions that failed and
      were queued again;
    * ``pyapalis_task_duration_seconds{worker}``: a histogram of each trip
      through the layer (``buckets`` to override prometheus_client's);
    * ``pyapalis_tasks_in_flight{worker}``: a gauge.

    ``registry`` defaults to prometheus_client's global ``REGISTRY``; pass a
    ``CollectorRegistry`` to keep them apart (tests, several apps). Needs the
    ``prometheus`` extra; ``ImportError`` says so if it is missing.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "pyapalis",
        buckets: Sequence[float] | None = None,
    ) -> None:
        prometheus = _import_prometheus()
        if registry is None:
            registry = prometheus.REGISTRY
        elif not isinstance(registry, prometheus.CollectorRegistry):
            raise TypeError(
                f"PrometheusLayer: registry must be a prometheus_client CollectorRegistry, "
                f"got {type(registry).__name__} {registry!r}"
            )
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ValueError(
                f"PrometheusLayer: namespace must be a metric-name prefix such as 'pyapalis', "
                f"got {namespace!r}"
            )
        if buckets is not None and (
            isinstance(buckets, (str, bytes))
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in buckets)
        ):
            raise TypeError(
                f"PrometheusLayer: buckets must be a sequence of numbers, got {buckets!r}"
            )
        by_namespace = _families.setdefault(registry, {})
        metrics = by_namespace.get(namespace)
        if metrics is None:
            metrics = by_namespace[namespace] = _Metrics(prometheus, registry, namespace, buckets)
        self.registry = registry
        self.namespace = namespace
        self._metrics = metrics

    def layer(self, inner: Service) -> Service:
        return _PrometheusService(inner, self._metrics, "")

    def layer_for_worker(self, inner: Service, worker: WorkerContext) -> Service:
        return _PrometheusService(inner, self._metrics, worker.name)

    def __repr__(self) -> str:
        return f"PrometheusLayer(namespace={self.namespace!r})"


class _PrometheusService(AlwaysReady):
    __slots__ = ("_by_status", "_duration", "_in_flight", "_inner", "_retries")

    def __init__(self, inner: Service, metrics: _Metrics, worker: str) -> None:
        self._inner = inner
        # Labelled children looked up once: .labels() costs more than the update.
        self._by_status: dict[str, Any] = {
            status: metrics.tasks.labels(worker, status) for status in (*_FINAL, "Error")
        }
        self._retries = metrics.retries.labels(worker)
        self._duration = metrics.duration.labels(worker)
        self._in_flight = metrics.in_flight.labels(worker)

    async def __call__(self, task: Task) -> Any:
        self._in_flight.inc()
        start = trio.current_time()
        try:
            result = await self._inner(task)
        except Exception as error:
            self._finish(task, start, error)
            raise
        except BaseException:
            self._in_flight.dec()  # interrupted: handed back, no outcome to count
            raise
        self._finish(task, start, None)
        return result

    def _finish(self, task: Task, start: float, error: Exception | None) -> None:
        self._in_flight.dec()
        outcome = outcome_label(task, error)
        if outcome == "HandedBack":
            return  # not run: it comes back later
        self._duration.observe(trio.current_time() - start)
        if outcome == "Retry":
            self._retries.inc()
        else:
            self._by_status[outcome].inc()
