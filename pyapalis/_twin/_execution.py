"""The pure-Python twin of ``csrc/_execution.pxi``: helpers backends call on tasks."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .._status import Status
from ._attempt import uncount
from ._task import Task

__all__ = ["AckRecorder", "OutcomeRecorder", "set_status", "undo_attempt"]

_DONE = Status.Done


def undo_attempt(task: Task) -> None:
    """Un-count an execution that was interrupted before it could finish."""
    uncount(task.parts.attempt)


def set_status(task: Task, status: Status) -> None:
    """Set a task's status."""
    task.parts.status = status


class OutcomeRecorder(Protocol):
    """The owner of an :class:`AckRecorder`: records what the recorder does not."""

    def record_outcome(
        self, task: Task, status: Status, result: Any, error: BaseException | None
    ) -> None:
        """Set the task's status, keep it as the recorder would, and do the rest."""

    def listener_failed(self, listener: Callable[..., object], error: BaseException) -> None:
        """An outcome listener raised ``error`` (report it; the ack goes on)."""


class AckRecorder:
    """The ``ack_nowait`` of a backend that keeps its finished tasks in a deque.

    ``AckRecorder(append, owner)``; ``recorder.ack(task, status, result,
    error)`` records the common outcome itself, a task ``Done`` with no error
    while :attr:`attention` is false: it sets the status, calls
    ``append(task)`` (no result) or ``append((task, status, result))``, then
    calls every outcome listener (:attr:`listeners`, see :meth:`tell`). Any
    other outcome goes to ``owner.record_outcome(task, status, result,
    error)`` (:class:`OutcomeRecorder`), which must record it the same way
    and do the rest. The owner is held weakly, so an owner keeping its
    recorder makes no reference cycle.
    """

    __slots__ = ("_append", "_owner", "attention", "listeners")

    def __init__(self, append: Callable[[Any], object], owner: OutcomeRecorder) -> None:
        if not callable(append):
            raise TypeError(f"AckRecorder: append must be callable, got {append!r}")
        self._append = append
        self._owner = weakref.ref(owner)
        self.attention = False
        """True while every ack goes to the owner (someone waits)."""
        self.listeners: tuple[Callable[[Task, Status, Any, BaseException | None], object], ...] = ()
        """Called with every outcome recorded here (replaced as a whole)."""

    def ack(self, task: Task, status: Status, result: Any, error: BaseException | None) -> None:
        """Record ``task``'s final outcome (see the class)."""
        if status is _DONE and error is None and not self.attention:
            task.parts.status = _DONE
            if result is None:
                self._append(task)
            else:
                self._append((task, _DONE, result))
            if self.listeners:
                self.tell(task, status, result, error)
            return
        owner = self._owner()
        if owner is None:
            raise ReferenceError("AckRecorder: its owner is gone")
        owner.record_outcome(task, status, result, error)

    def tell(self, task: Task, status: Status, result: Any, error: BaseException | None) -> None:
        """Call each listener with the outcome; one that raises is reported to
        ``owner.listener_failed(listener, error)`` and the others are still called."""
        for listener in self.listeners:
            try:
                listener(task, status, result, error)
            except Exception as exc:
                owner = self._owner()
                if owner is not None:
                    owner.listener_failed(listener, exc)
