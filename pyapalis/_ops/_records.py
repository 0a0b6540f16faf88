"""Tasks, results and workers as JSON-able data: what ``--json`` prints, ``/api`` serves."""

from __future__ import annotations

import datetime
from typing import Any

from .._implementation import Task
from ..backends._capabilities import TaskResult, WorkerInfo

__all__ = ["iso", "task_record", "ulid_time", "worker_record"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def iso(seconds: float | None) -> str | None:
    """UNIX seconds as an ISO 8601 UTC time with milliseconds, or None."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ulid_time(task_id: str) -> float | None:
    """When a ULID task id was generated (its first 10 characters: milliseconds), or None.

    Ids chosen by the user (``TaskBuilder.id("task-1")``) carry no time.
    """
    if len(task_id) != 26:
        return None
    milliseconds = 0
    for char in task_id[:10].upper():
        digit = _CROCKFORD.find(char)
        if digit < 0:
            return None
        milliseconds = milliseconds * 32 + digit
    return milliseconds / 1000


def task_record(task: Task, result: TaskResult | None = None) -> dict[str, Any]:
    """A task's fields as JSON-able data; with ``result``, its outcome and error too.

    ``timeline`` lists what is known of the task's life in time order: when
    it was created (from a ULID id), when it is (or was) due, and how it ended.
    """
    parts = task.parts
    task_id = str(parts.task_id)
    created = ulid_time(task_id)
    record: dict[str, Any] = {
        "id": task_id,
        "status": parts.status.value,
        "args": task.args,
        "attempts": parts.attempt.current(),
        "max_attempts": parts.max_attempts,
        "priority": parts.priority,
        "timeout": parts.timeout,
        "run_at": iso(parts.run_at),
        "created_at": iso(created),
        "meta": parts.ctx,
        "result": None,
        "error": None,
    }
    if result is not None and result.result is not None:
        try:
            record["result"] = result.result.unwrap()
        except Exception as error:
            record["error"] = str(error)
    timeline: list[dict[str, Any]] = []
    if created is not None:
        timeline.append({"at": iso(created), "what": "created"})
    timeline.append({"at": iso(parts.run_at), "what": "due"})
    if parts.attempt.current():
        timeline.append({"at": None, "what": f"executed {parts.attempt.current()} time(s)"})
    if parts.status.is_final:
        timeline.append({"at": None, "what": f"ended {parts.status.value}"})
    record["timeline"] = timeline
    return record


def worker_record(worker: WorkerInfo) -> dict[str, Any]:
    """A worker's fields as JSON-able data, times in ISO 8601."""
    return {
        "name": worker.name,
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": iso(worker.started_at),
        "last_seen": iso(worker.last_seen),
    }
