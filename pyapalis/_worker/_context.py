"""A worker's state and event outlet: ``WorkerContext``, and the worker's side of it.

:class:`WorkerContext` is what users and handlers see (name, state, ``stop()``,
``pause()``, ``emit()``, listeners). :class:`WorkerControl` is the side its
worker drives (start and finish a run, the idle waits ``stop()`` must
interrupt, the run's worker id), reached as ``context.control``: public
attributes, meant for the worker that owns the context.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

import trio

from .._errors import WorkerStateError
from ._events import Event

__all__ = ["EventCallback", "LoopMark", "WorkerContext", "WorkerControl", "WorkerState"]

logger = logging.getLogger("pyapalis.worker")

EventCallback = Callable[["WorkerContext", Event], Any]


class WorkerState(enum.Enum):
    """Where a worker is in its life."""

    Pending = "Pending"
    """Built, not yet running."""
    Running = "Running"
    """Pulling and executing tasks."""
    Paused = "Paused"
    """Not pulling new tasks; in-flight tasks go on."""
    ShuttingDown = "ShuttingDown"
    """Stop was asked: not pulling, in-flight tasks finishing."""
    Stopped = "Stopped"
    """Drained and finished."""


class LoopMark:
    """Whether one consumer loop is running a task now (``WorkerContext.task_count`` adds them up).

    A loop sets ``busy`` around each task: two stores, cheaper per task than
    counting up and down in a shared attribute.
    """

    __slots__ = ("busy",)

    def __init__(self) -> None:
        self.busy = False


class WorkerControl:
    """The side of a :class:`WorkerContext` that its worker drives.

    ``state`` is read by the consumer loops before each pull; ``listeners``
    is the list events go to (the worker checks it is empty to skip building
    events); ``idle_scopes`` and ``idle_wakers`` are the waits of idle loops
    that ``stop()`` and ``pause()`` interrupt; ``loops`` holds a
    :class:`LoopMark` per running consumer loop; ``worker_id`` is the id of
    the current (or last) run.
    """

    __slots__ = (
        "_resumed",
        "_stopped",
        "idle_scopes",
        "idle_wakers",
        "listeners",
        "loops",
        "name",
        "state",
        "worker_id",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = WorkerState.Pending
        self.listeners: list[EventCallback] = []
        # Cancel scopes of consumer loops waiting for a task: stop() and
        # pause() cancel them so no task is pulled after that moment.
        self.idle_scopes: set[trio.CancelScope] = set()
        # Or, for backends that can interrupt their own waits, their wake-up
        # calls (cheaper than a cancel scope per idle wait).
        self.idle_wakers: list[Callable[[], None]] = []
        self.loops: list[LoopMark] = []
        self.worker_id: str | None = None
        self._resumed: trio.Event | None = None
        self._stopped: trio.Event | None = None

    # -- a run -------------------------------------------------------------

    def start(self, worker_id: str) -> None:
        """Begin a run with id ``worker_id``; WorkerStateError if it cannot."""
        if self.state is WorkerState.Stopped:
            raise WorkerStateError(f"worker {self.name!r} has already run; build a new one")
        if self.state in (WorkerState.Running, WorkerState.Paused):
            raise WorkerStateError(f"worker {self.name!r} is already running")
        if self.state is WorkerState.Pending:
            self.state = WorkerState.Running
        self.worker_id = worker_id
        if self._stopped is None:
            self._stopped = trio.Event()

    def finish(self) -> None:
        """End the run: the worker is Stopped."""
        self.state = WorkerState.Stopped
        self._resumed = None
        if self._stopped is not None:
            self._stopped.set()

    async def wait_resumed(self) -> None:
        """While paused: wait for ``resume()`` (or ``stop()``)."""
        if self._resumed is not None:
            await self._resumed.wait()

    async def wait_stopped(self) -> None:
        """Wait until the worker has stopped."""
        if self.state is WorkerState.Stopped:
            await trio.lowlevel.checkpoint()
            return
        if self._stopped is None:
            self._stopped = trio.Event()
        await self._stopped.wait()

    # -- what WorkerContext's methods change ---------------------------------

    def stop(self) -> None:
        if self.state is WorkerState.Stopped:
            raise WorkerStateError(f"worker {self.name!r} is already stopped")
        if self.state is WorkerState.ShuttingDown:
            return
        self.state = WorkerState.ShuttingDown
        self._wake_consumers()

    def pause(self) -> None:
        if self.state is not WorkerState.Running:
            raise WorkerStateError(
                f"cannot pause worker {self.name!r}: it is {self.state.value}, not Running"
            )
        self.state = WorkerState.Paused
        self._resumed = trio.Event()
        self._interrupt_idle_waits()

    def resume(self) -> None:
        if self.state is not WorkerState.Paused:
            raise WorkerStateError(
                f"cannot resume worker {self.name!r}: it is {self.state.value}, not Paused"
            )
        self.state = WorkerState.Running
        self._wake_consumers()

    def _interrupt_idle_waits(self) -> None:
        for scope in self.idle_scopes:
            scope.cancel()
        for wake in self.idle_wakers:
            wake()

    def _wake_consumers(self) -> None:
        self._interrupt_idle_waits()
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None


class WorkerContext:
    """A worker's name, state and event outlet; usable before and during a run.

    ``stop()`` makes :attr:`is_shutting_down` true at once; :attr:`is_stopped`
    becomes true once in-flight work has drained. ``pause()``/``resume()``
    stop and restart pulling. A call the current state does not allow raises
    :class:`WorkerStateError`.
    """

    __slots__ = ("control", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.control = WorkerControl(name)
        """The worker's side of this context (see :class:`WorkerControl`)."""

    # -- state queries -----------------------------------------------------

    @property
    def state(self) -> WorkerState:
        """The current :class:`WorkerState`."""
        return self.control.state

    @property
    def is_running(self) -> bool:
        """Running and pulling tasks (not paused, not shutting down)."""
        return self.control.state is WorkerState.Running

    @property
    def is_paused(self) -> bool:
        """Paused: not pulling new tasks."""
        return self.control.state is WorkerState.Paused

    @property
    def is_shutting_down(self) -> bool:
        """Stop was asked (true at once after ``stop()``, and after the worker stopped)."""
        return self.control.state in (WorkerState.ShuttingDown, WorkerState.Stopped)

    @property
    def is_stopped(self) -> bool:
        """The run is over and in-flight work drained."""
        return self.control.state is WorkerState.Stopped

    @property
    def task_count(self) -> int:
        """Tasks executing right now."""
        return sum(loop.busy for loop in self.control.loops)

    @property
    def worker_id(self) -> str | None:
        """The id of the current (or last) run: a fresh ULID per run; None before the first."""
        return self.control.worker_id

    # -- state changes -----------------------------------------------------

    def stop(self) -> None:
        """Stop pulling; the run returns once in-flight tasks finish.

        Calling it again while shutting down does nothing; calling it after the
        worker stopped raises :class:`WorkerStateError`.
        """
        self.control.stop()

    def pause(self) -> None:
        """Stop pulling new tasks until :meth:`resume`; in-flight tasks go on."""
        self.control.pause()

    def resume(self) -> None:
        """Start pulling again after :meth:`pause`."""
        self.control.resume()

    async def wait_stopped(self) -> None:
        """Wait until the worker has stopped."""
        await self.control.wait_stopped()

    # -- events --------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Send ``event`` to every listener (a listener that raises is logged, not fatal)."""
        for listener in self.control.listeners:
            try:
                listener(self, event)
            except Exception:
                logger.exception("event listener %r of worker %r failed", listener, self.name)

    def add_listener(self, callback: EventCallback) -> None:
        """Call ``callback(ctx, event)`` for every event from now on."""
        self.control.listeners.append(callback)

    def remove_listener(self, callback: EventCallback) -> None:
        """Stop calling ``callback`` (nothing happens if it is not a listener)."""
        listeners = self.control.listeners
        if callback in listeners:
            listeners.remove(callback)

    @property
    def listeners(self) -> tuple[EventCallback, ...]:
        """The listeners, in the order they are called."""
        return tuple(self.control.listeners)

    def __repr__(self) -> str:
        return f"WorkerContext(name={self.name!r}, state={self.control.state.value})"
