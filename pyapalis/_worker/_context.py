"""The worker's state machine, shared with its handlers as ``WorkerContext``."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

import trio

from .._errors import WorkerStateError
from ._events import Event

__all__ = ["EventCallback", "WorkerContext", "WorkerState"]

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


class WorkerContext:
    """A worker's name, state and event outlet; usable before and during a run.

    ``stop()`` makes :attr:`is_shutting_down` true at once; :attr:`is_stopped`
    becomes true once in-flight work has drained. ``pause()``/``resume()``
    stop and restart pulling. A call the current state does not allow raises
    :class:`WorkerStateError`.
    """

    __slots__ = (
        "_idle_scopes",
        "_idle_wakers",
        "_listeners",
        "_resumed",
        "_state",
        "_stopped",
        "name",
        "task_count",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.task_count = 0
        """Tasks executing right now."""
        self._state = WorkerState.Pending
        self._listeners: list[EventCallback] = []
        # Cancel scopes of consumer loops waiting for a task: stop() and
        # pause() cancel them so no task is pulled after that moment.
        self._idle_scopes: set[trio.CancelScope] = set()
        # Or, for backends that can interrupt their own waits, their wake-up
        # calls (cheaper than a cancel scope per idle wait).
        self._idle_wakers: list[Callable[[], None]] = []
        self._resumed: trio.Event | None = None
        self._stopped: trio.Event | None = None

    # -- state queries -----------------------------------------------------

    @property
    def state(self) -> WorkerState:
        """The current :class:`WorkerState`."""
        return self._state

    @property
    def is_running(self) -> bool:
        """Running and pulling tasks (not paused, not shutting down)."""
        return self._state is WorkerState.Running

    @property
    def is_paused(self) -> bool:
        """Paused: not pulling new tasks."""
        return self._state is WorkerState.Paused

    @property
    def is_shutting_down(self) -> bool:
        """Stop was asked (true at once after ``stop()``, and after the worker stopped)."""
        return self._state in (WorkerState.ShuttingDown, WorkerState.Stopped)

    @property
    def is_stopped(self) -> bool:
        """The run is over and in-flight work drained."""
        return self._state is WorkerState.Stopped

    # -- state changes -----------------------------------------------------

    def stop(self) -> None:
        """Stop pulling; the run returns once in-flight tasks finish.

        Calling it again while shutting down does nothing; calling it after the
        worker stopped raises :class:`WorkerStateError`.
        """
        if self._state is WorkerState.Stopped:
            raise WorkerStateError(f"worker {self.name!r} is already stopped")
        if self._state is WorkerState.ShuttingDown:
            return
        self._state = WorkerState.ShuttingDown
        self._wake_consumers()

    def pause(self) -> None:
        """Stop pulling new tasks until :meth:`resume`; in-flight tasks go on."""
        if self._state is not WorkerState.Running:
            raise WorkerStateError(
                f"cannot pause worker {self.name!r}: it is {self._state.value}, not Running"
            )
        self._state = WorkerState.Paused
        self._resumed = trio.Event()
        self._interrupt_idle_waits()

    def resume(self) -> None:
        """Start pulling again after :meth:`pause`."""
        if self._state is not WorkerState.Paused:
            raise WorkerStateError(
                f"cannot resume worker {self.name!r}: it is {self._state.value}, not Paused"
            )
        self._state = WorkerState.Running
        self._wake_consumers()

    def emit(self, event: Event) -> None:
        """Send ``event`` to every listener (a listener that raises is logged, not fatal)."""
        for listener in self._listeners:
            try:
                listener(self, event)
            except Exception:
                logger.exception("event listener %r of worker %r failed", listener, self.name)

    # -- used by the worker ------------------------------------------------

    def _interrupt_idle_waits(self) -> None:
        for scope in self._idle_scopes:
            scope.cancel()
        for wake in self._idle_wakers:
            wake()

    def _wake_consumers(self) -> None:
        self._interrupt_idle_waits()
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None

    async def _wait_resumed(self) -> None:
        if self._resumed is not None:
            await self._resumed.wait()

    def _start(self) -> None:
        if self._state is WorkerState.Stopped:
            raise WorkerStateError(f"worker {self.name!r} has already run; build a new one")
        if self._state in (WorkerState.Running, WorkerState.Paused):
            raise WorkerStateError(f"worker {self.name!r} is already running")
        if self._state is WorkerState.Pending:
            self._state = WorkerState.Running
        if self._stopped is None:
            self._stopped = trio.Event()

    def _finish(self) -> None:
        self._state = WorkerState.Stopped
        self._resumed = None
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until the worker has stopped."""
        if self._state is WorkerState.Stopped:
            await trio.lowlevel.checkpoint()
            return
        if self._stopped is None:
            self._stopped = trio.Event()
        await self._stopped.wait()

    def __repr__(self) -> str:
        return f"WorkerContext(name={self.name!r}, state={self._state.value})"
