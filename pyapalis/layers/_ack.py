"""AcknowledgeLayer (a user's own acknowledgement of each outcome) and EventListenerLayer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import outcome

from .._implementation import Task
from .._worker._context import EventCallback, WorkerContext
from .._worker._service import AlwaysReady, Service
from ._common import check_callable

__all__ = ["AcknowledgeLayer", "Acknowledger", "EventListenerLayer"]

Acknowledger = Callable[[Task, outcome.Outcome[Any]], Any]


@runtime_checkable
class AcknowledgeTrait(Protocol):
    """An acknowledger object, as apalis's ``Acknowledge`` trait: ``ack(task, outcome)``."""

    def ack(self, task: Task, result: outcome.Outcome[Any]) -> Any: ...


"""``acknowledger(task, outcome)``: plain or ``async``; ``outcome`` is an
``outcome.Value(result)`` or an ``outcome.Error(exception)``."""


class AcknowledgeLayer:
    """Calls ``acknowledger(task, outcome)`` after each execution, before the backend records it.

    ``WorkerBuilder.ack_with(fn)`` is the shortcut. The acknowledger sees what
    the execution produced (``outcome.Value(result)`` or
    ``outcome.Error(exception)``) and is awaited inside the execution, so the
    worker counts the task in flight until it returns and a graceful shutdown
    waits for it. If it raises, its exception replaces the outcome: the task
    fails with it (retried like any failure, or Killed for an ``AbortError``),
    with the original outcome's exception, if any, as ``__context__``.

    An object with an ``ack(task, outcome)`` method works too (apalis's
    ``Acknowledge`` trait). An execution layer (see :mod:`pyapalis._worker._service`).
    """

    wraps_execution: ClassVar[bool] = True

    def __init__(self, acknowledger: Acknowledger | Any) -> None:
        if isinstance(acknowledger, AcknowledgeTrait) and not inspect.isroutine(acknowledger):
            self._acknowledger: Acknowledger = acknowledger.ack
        else:
            self._acknowledger = check_callable("AcknowledgeLayer", "acknowledger", acknowledger)

    def layer(self, inner: Service) -> Service:
        return _AcknowledgeService(inner, self._acknowledger)

    def __repr__(self) -> str:
        return f"AcknowledgeLayer({self._acknowledger!r})"


class _AcknowledgeService(AlwaysReady):
    __slots__ = ("_acknowledger", "_inner", "_is_async")

    def __init__(self, inner: Service, acknowledger: Acknowledger) -> None:
        self._inner = inner
        self._acknowledger = acknowledger
        self._is_async = inspect.iscoroutinefunction(acknowledger) or inspect.iscoroutinefunction(
            getattr(acknowledger, "__call__", None)  # noqa: B004 - callable objects
        )

    async def __call__(self, task: Task) -> Any:
        try:
            result = await self._inner(task)
        except Exception as error:
            await self._acknowledge(task, outcome.Error(error))
            raise
        # The usual case inline (a plain function, a success): no extra frame.
        if self._is_async:
            await self._acknowledger(task, outcome.Value(result))
        else:
            returned = self._acknowledger(task, outcome.Value(result))
            if returned is not None and inspect.isawaitable(returned):
                await returned
        return result

    async def _acknowledge(self, task: Task, result: outcome.Outcome[Any]) -> None:
        if self._is_async:
            await self._acknowledger(task, result)
            return
        returned = self._acknowledger(task, result)
        if returned is not None and inspect.isawaitable(returned):
            await returned


class EventListenerLayer:
    """Calls ``callback(ctx, event)`` for every event of the worker it is built into.

    The layer form of ``WorkerBuilder.on_event`` (which is the shortcut): it
    adds the listener when the worker builds its stack and no service to the
    stack, so it costs nothing per task. Applied outside a worker (plain
    ``layer(inner)``) it returns ``inner``: there are no events to listen to.
    """

    def __init__(self, callback: EventCallback) -> None:
        self._callback: EventCallback = check_callable("EventListenerLayer", "callback", callback)

    def layer(self, inner: Service) -> Service:
        return inner

    def layer_for_worker(self, inner: Service, worker: WorkerContext) -> Service:
        worker.add_listener(self._callback)
        return inner

    def __repr__(self) -> str:
        return f"EventListenerLayer({self._callback!r})"
