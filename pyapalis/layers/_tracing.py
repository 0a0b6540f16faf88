"""TracingLayer: one stdlib ``logging`` record per task trip (id, attempt, duration, outcome)."""

from __future__ import annotations

import logging
from typing import Any

import trio

from .._implementation import Task
from .._worker._context import WorkerContext
from .._worker._service import AlwaysReady, Service
from ._common import outcome_label

__all__ = ["TracingLayer"]

_LEVELS = {"Failed": logging.ERROR, "Killed": logging.ERROR, "HandedBack": logging.DEBUG}


class TracingLayer:
    """Logs each task once its inner services are done (a task layer).

    The record says ``task <id> <outcome> (attempt <n>, <duration>s)`` and
    carries the same as attributes for structured handlers:
    ``record.task_id``, ``record.attempt``, ``record.duration`` (seconds on
    trio's clock), ``record.outcome`` (``Done``, ``Retry``, ``Failed``,
    ``Killed``, ``Error`` for a failure before the acknowledgement, or
    ``HandedBack``) and ``record.worker``. Success and retries log at
    ``level``; a task that failed for good (Failed, Killed) at ``ERROR`` with
    the exception attached; a task handed back unrun at ``DEBUG``.
    With ``started=True`` a ``DEBUG`` record marks each start too.

    ``logger`` is a ``logging.Logger`` or a name (default ``pyapalis.task``).
    When the logger would drop the record, nothing is formatted.
    """

    def __init__(
        self,
        logger: logging.Logger | str = "pyapalis.task",
        *,
        level: int = logging.INFO,
        started: bool = False,
    ) -> None:
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        elif not isinstance(logger, logging.Logger):
            raise TypeError(
                f"TracingLayer: logger must be a logging.Logger or a logger name, "
                f"got {type(logger).__name__} {logger!r}"
            )
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(
                f"TracingLayer: level must be a logging level (int), "
                f"got {type(level).__name__} {level!r}"
            )
        self.logger = logger
        self.level = level
        self.started = bool(started)

    def layer(self, inner: Service) -> Service:
        return _TracingService(inner, self, "")

    def layer_for_worker(self, inner: Service, worker: WorkerContext) -> Service:
        return _TracingService(inner, self, worker.name)

    def __repr__(self) -> str:
        return f"TracingLayer({self.logger.name!r}, level={self.level!r})"


class _TracingService(AlwaysReady):
    __slots__ = ("_inner", "_level", "_logger", "_started", "_worker")

    def __init__(self, inner: Service, config: TracingLayer, worker: str) -> None:
        self._inner = inner
        self._logger = config.logger
        self._level = config.level
        self._started = config.started
        self._worker = worker

    async def __call__(self, task: Task) -> Any:
        logger = self._logger
        if self._started and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "task %s started",
                task.parts.task_id,
                extra={"task_id": str(task.parts.task_id), "worker": self._worker},
            )
        start = trio.current_time()
        try:
            result = await self._inner(task)
        except Exception as error:
            self._log(task, start, error)
            raise
        self._log(task, start, None)
        return result

    def _log(self, task: Task, start: float, error: Exception | None) -> None:
        outcome = outcome_label(task, error)
        level = _LEVELS.get(outcome, self._level)
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        parts = task.parts
        duration = trio.current_time() - start
        attempt = parts.attempt.current()
        task_id = str(parts.task_id)
        message = "task %s %s (attempt %d, %.6fs)"
        args: tuple[Any, ...] = (task_id, outcome, attempt, duration)
        if error is not None:
            message += ": %r"
            args += (error,)
        logger.log(
            level,
            message,
            *args,
            exc_info=error if level >= logging.ERROR else None,
            extra={
                "task_id": task_id,
                "attempt": attempt,
                "duration": duration,
                "outcome": outcome,
                "worker": self._worker,
            },
        )
