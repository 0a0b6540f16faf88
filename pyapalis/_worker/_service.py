"""The tower-style Service and Layer protocols, their optional hooks, and how a stack is built.

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
* **execution layers** wrap each execution, inside the acknowledgement: what
  they return or raise is what the backend records. Retries in place,
  timeouts, ``CatchPanicLayer``, ``AcknowledgeLayer`` and ``LongRunningLayer``
  live here. A layer declares it with a true ``wraps_execution`` attribute
  (:class:`DeclaresZone`); :func:`zone_of` reads it.

Within each zone the first layer added is the outermost.

The optional hooks are declared as protocols, checked once when a worker is
built, and cost nothing when unused:

* :class:`WorkerAware`: ``layer.layer_for_worker(inner, context)`` is preferred
  to ``layer(inner)`` when a worker builds its stack, so a layer can learn the
  worker it serves (its name for metrics, its event outlet).
* :class:`Backpressured`: ``await service.ready()`` before each pull. A
  service whose ``ready()`` never waits derives from :class:`AlwaysReady`
  instead, and the worker does not await it.
* :class:`ReadyNowait`: ``service.ready_nowait() -> bool`` reserves capacity
  for one call by the current trio task without waiting (True) or reports
  that there is none (False, nothing reserved). :class:`~pyapalis.LoadShedLayer`
  uses it.
* :class:`PollsInnerReadiness`: a service whose true ``polls_inner_readiness``
  says it asks the services inside it itself, without waiting (a load
  shedder): the worker awaits nothing below it.
"""

from __future__ import annotations

import enum
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
    "AlwaysReady",
    "Backpressured",
    "DeclaresZone",
    "Layer",
    "LayerLike",
    "NotReadyError",
    "PollsInnerReadiness",
    "ReadyNowait",
    "Service",
    "WorkerAware",
    "Zone",
    "apply_layer",
    "compose",
    "readiness_checks",
    "readiness_nowait",
    "ready_nowait_of",
    "zone_of",
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


# -- the optional hooks ------------------------------------------------------------


class Zone(enum.Enum):
    """Where a layer sits in a worker's stack (see the module documentation)."""

    Task = "task"
    """Outside the acknowledgement: sees the task settled (the default)."""
    Execution = "execution"
    """Inside the acknowledgement: what it returns or raises is recorded."""


@runtime_checkable
class DeclaresZone(Protocol):
    """A layer that declares its zone: a true ``wraps_execution`` makes it an execution layer."""

    wraps_execution: bool


@runtime_checkable
class WorkerAware(Protocol):
    """A layer that wants to know the worker it is built into."""

    def layer_for_worker(self, inner: Service, worker: WorkerContext) -> Service: ...


@runtime_checkable
class Backpressured(Protocol):
    """A service that may not be ready for a task: the worker awaits ``ready()`` before a pull."""

    async def ready(self) -> None: ...


@runtime_checkable
class ReadyNowait(Protocol):
    """A service that can reserve capacity without waiting (see the module documentation)."""

    def ready_nowait(self) -> bool: ...


@runtime_checkable
class PollsInnerReadiness(Protocol):
    """A service that asks the services inside it for readiness itself, when true."""

    polls_inner_readiness: bool


class AlwaysReady:
    """A base for services that are always ready: their ``ready()`` returns at once.

    The worker knows not to await it before each pull (it costs a coroutine
    per task otherwise); code calling ``await service.ready()`` directly still
    may.
    """

    __slots__ = ()

    async def ready(self) -> None:
        """Always ready."""


WORKER_NURSERY: ContextVar[trio.Nursery | None] = ContextVar(
    "pyapalis_worker_nursery", default=None
)
"""In a worker's consumer loops: the nursery of the worker's run.

A layer may start background work there that must not outlive the run
(``LongRunningLayer`` does, instead of opening a nursery per task); it is
cancelled if the run is. None outside a worker run.
"""


def zone_of(layer: LayerLike) -> Zone:
    """The zone ``layer`` declares (:class:`DeclaresZone`), by default :attr:`Zone.Task`."""
    if isinstance(layer, DeclaresZone) and layer.wraps_execution is True:
        return Zone.Execution
    return Zone.Task


# -- building a stack ------------------------------------------------------------


def apply_layer(layer: LayerLike, inner: Service, worker: WorkerContext | None = None) -> Service:
    """``layer.layer(inner)``, or ``layer(inner)`` for a plain function.

    With ``worker`` given, a :class:`WorkerAware` layer's
    ``layer_for_worker(inner, worker)`` is preferred, so the layer can learn
    the worker it is built into.
    """
    service: Service
    if worker is not None and isinstance(layer, WorkerAware):
        service = layer.layer_for_worker(inner, worker)
    elif isinstance(layer, Layer):
        service = layer.layer(inner)
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


def _waiting(services: Sequence[Service]) -> list[Service]:
    """The services of a stack whose ``ready()`` the worker awaits, outermost first.

    Nothing below a :class:`PollsInnerReadiness` service (it asks them itself).
    """
    waiting: list[Service] = []
    for service in services:
        if isinstance(service, Backpressured) and not isinstance(service, AlwaysReady):
            waiting.append(service)
        if isinstance(service, PollsInnerReadiness) and service.polls_inner_readiness is True:
            break
    return waiting


def readiness_checks(services: Sequence[Service]) -> list[Callable[[], Awaitable[None]]]:
    """The ``ready()`` methods of a stack, outermost first.

    The worker awaits each before it pulls a task: a layer that is not ready
    stops the pull (backpressure), even if an outer layer forgot to forward
    its inner service's readiness. Below a :class:`PollsInnerReadiness`
    service (``LoadShedLayer``) nothing is awaited: that service asks its
    inner service itself, without waiting.
    """
    return [service.ready for service in _waiting(services)]  # type: ignore[attr-defined]


def readiness_nowait(services: Sequence[Service]) -> list[Callable[[], bool]] | None:
    """The ``ready_nowait()`` methods matching :func:`readiness_checks`, or None.

    None unless every service with a ``ready()`` to await also answers
    ``ready_nowait()``: only then can the worker skip awaiting (and the cancel
    scope that wait needs) when all of them are ready now, which is the usual
    case under a limit that is not reached.
    """
    nowaits = []
    for service in _waiting(services):
        nowait = ready_nowait_of(service)
        if nowait is None:
            return None
        nowaits.append(nowait)
    return nowaits


def ready_nowait_of(service: Service) -> Callable[[], bool] | None:
    """The service's non-blocking readiness check (:class:`ReadyNowait`), or None if it has none."""
    return service.ready_nowait if isinstance(service, ReadyNowait) else None
