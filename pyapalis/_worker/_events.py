"""What a worker tells its listeners: started, idle, a task succeeded or failed, stopped."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._implementation import TaskId

__all__ = ["Event", "EventKind"]


class EventKind(enum.Enum):
    """The kinds of :class:`Event`."""

    Start = "Start"
    """The first event of a run."""
    Idle = "Idle"
    """The backend had nothing to hand out; the worker is waiting."""
    HeartBeat = "HeartBeat"
    """The worker renewed its liveness with the backend."""
    Success = "Success"
    """A task execution succeeded (``task_id``, ``result``)."""
    Error = "Error"
    """A task execution failed (``task_id``, ``error``: the exception itself)."""
    Stop = "Stop"
    """The last event of a run, after in-flight work drained."""
    Custom = "Custom"
    """Emitted by user code through ``WorkerContext.emit`` (``value``)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Event:
    """One worker event. Which fields are set depends on ``kind``."""

    kind: EventKind
    task_id: TaskId | None = None
    error: BaseException | None = None
    value: Any = None
    result: Any = None

    def __str__(self) -> str:
        if self.kind is EventKind.Success:
            return f"Success({self.task_id})"
        if self.kind is EventKind.Error:
            return f"Error({self.task_id}: {self.error!r})"
        if self.kind is EventKind.Custom:
            return f"Custom({self.value!r})"
        return str(self.kind.value)

    @classmethod
    def custom(cls, value: Any) -> Event:
        """A ``Custom`` event carrying ``value``."""
        return cls(EventKind.Custom, value=value)


# Events without payload are immutable singletons: emitting them allocates nothing.
START = Event(EventKind.Start)
IDLE = Event(EventKind.Idle)
HEARTBEAT = Event(EventKind.HeartBeat)
STOP = Event(EventKind.Stop)
