"""The tower-style Service and Layer protocols, and how a stack is put together.

A **Service** is an async callable ``await service(task) -> result``, optionally
with ``async def ready()`` for backpressure. A **Layer** wraps a service in
another: an object with ``.layer(inner) -> Service``, or a plain function
``inner -> Service``. Layers added first end up outermost.

A worker's stack has two zones around the backend acknowledgement (the step
that tells the backend Done, retry or Failed):

* **task layers** (the default) wrap the whole trip of a task. They run outside
  the acknowledgement, so when the inner service returns or raises, the task is
  already settled: ``task.parts.status`` is its new status (``Done``,
  ``Failed``, ``Killed``, or ``Pending`` for a retry), and what they return or
  raise afterwards does not change it. Limits, circuit breakers, tracing and
  metrics live here.
* **execution layers** (a layer whose ``wraps_execution`` attribute is true)
  wrap each execution, inside the acknowledgement: what they return or raise
  is what the backend records. Retries in place, timeouts, ``CatchPanicLayer``,
  ``AcknowledgeLayer`` and ``LongRunningLayer`` live here.

Within each zone the first layer added is the outermost.

Two optional extras of the protocols, both zero-cost when unused:

* ``layer.layer_for_worker(inner, context)``: preferred to ``layer(inner)``
  when a worker builds its stack, so a layer can learn the worker it serves
  (its name for metrics, its event outlet).
* ``service.ready_nowait() -> bool``: reserve capacity for one call by the
  current trio task without waiting (True) or report that there is none
  (False, nothing reserved). :class:`~pyapalis.LoadShedLayer` uses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

from .._errors import NotReadyError
from .._implementation import Task

if TYPE_CHECKING:
    from ._context import WorkerContext

__all__ = [
    "WORKER_NURSERY",
    "Layer",
    "LayerLike",
    "NotReadyError",
    "Service",
    "always_ready",
    "apply_layer",
    "compose",
    "readiness_checks",
    "readiness_nowait",
    "ready_nowait_of",
    "wraps_execution",
]


@runtime_checkable
class Service(Protocol):
    """Handles one task: ``result = await service(task)``."""

    def __call__(self, task: Task) -> Awaitable[Any]: ...


@runtime_checkable
class Layer(Protocol):
    """Wraps a service in another one."""

    def layer(self, inner: Service) -> Service: ...


LayerLike = Layer | Callable[[Service], Service]


WORKER_NURSERY: ContextVar[trio.Nursery | None] = ContextVar(
    "pyapalis_worker_nursery", default=None
)
"""In a worker's consumer loops: the nursery of the worker's run.

A layer may start background work there that must not outlive the run
(``LongRunningLayer`` does, instead of opening a nursery per task); it is
cancelled if the run is. None outside a worker run.
"""


def wraps_execution(layer: LayerLike) -> bool:
    """Whether ``layer`` belongs inside the backend acknowledgement (see the module doc)."""
    return getattr(layer, "wraps_execution", False) is True


def apply_layer(layer: LayerLike, inner: Service, worker: WorkerContext | None = None) -> Service:
    """``layer.layer(inner)``, or ``layer(inner)`` for a plain function.

    With ``worker`` given, a layer's ``layer_for_worker(inner, worker)`` is
    preferred, so the layer can learn the worker it is built into.
    """
    method = getattr(layer, "layer_for_worker", None) if worker is not None else None
    if callable(method):
        service: Service = method(inner, worker)
    else:
        method = getattr(layer, "layer", None)
        if callable(method):
            service = method(inner)
        elif callable(layer):
            service = layer(inner)
        else:
            raise TypeError(
                f"a layer must have a .layer(inner) method or be a function of the inner "
                f"service, got {type(layer).__name__}"
            )
    if not callable(service):
        raise TypeError(f"layer {layer!r} returned {service!r}, which is not a service")
    return service


def compose(
    layers: Sequence[LayerLike], inner: Service, worker: WorkerContext | None = None
) -> tuple[Service, list[Service]]:
    """Wrap ``inner`` in ``layers`` (the first is outermost).

    Returns the outermost service and every distinct service of the stack,
    outermost first, so the worker can find the ones that have a ``ready()``.
    A layer that returns its inner service unchanged (it only configured the
    worker) adds nothing to the stack.
    """
    services = [inner]
    service = inner
    for layer in reversed(layers):
        service = apply_layer(layer, service, worker)
        if service is not services[-1]:
            services.append(service)
    services.reverse()
    return service, services


def readiness_checks(services: Sequence[Service]) -> list[Callable[[], Awaitable[None]]]:
    """The ``ready()`` methods of a stack, outermost first.

    The worker awaits each before it pulls a task: a layer that is not ready
    stops the pull (backpressure), even if an outer layer forgot to forward
    its inner service's readiness. Below a service whose
    ``polls_inner_readiness`` attribute is true (``LoadShedLayer``) nothing is
    awaited: that service asks its inner service itself, without waiting.
    """
    checks = []
    for service in services:
        ready = getattr(service, "ready", None)
        if callable(ready) and not getattr(ready, "_always_ready", False):
            checks.append(ready)
        if getattr(service, "polls_inner_readiness", False) is True:
            break
    return checks


def readiness_nowait(services: Sequence[Service]) -> list[Callable[[], bool]] | None:
    """The ``ready_nowait()`` methods matching :func:`readiness_checks`, or None.

    None unless every service with a ``ready()`` to await also answers
    ``ready_nowait()``: only then can the worker skip awaiting (and the cancel
    scope that wait needs) when all of them are ready now, which is the usual
    case under a limit that is not reached.
    """
    nowaits = []
    for service in services:
        ready = getattr(service, "ready", None)
        if callable(ready) and not getattr(ready, "_always_ready", False):
            nowait = ready_nowait_of(service)
            if nowait is None:
                return None
            nowaits.append(nowait)
        if getattr(service, "polls_inner_readiness", False) is True:
            break
    return nowaits


def always_ready(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a ``ready()`` that never waits, so the worker does not await it per task."""
    function._always_ready = True  # type: ignore[attr-defined]
    return function


def ready_nowait_of(service: Service) -> Callable[[], bool] | None:
    """The service's non-blocking readiness check, or None if it has none.

    A service whose ``ready()`` is marked :func:`always_ready` (or that has no
    ``ready()``) is always ready: None is returned for it too.
    """
    method = getattr(service, "ready_nowait", None)
    return method if callable(method) else None
