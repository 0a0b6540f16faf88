"""The actions on a store: list, show, retry, kill, purge, counts, workers.

Each takes an opened backend, asks it for the capability protocol it needs
(:func:`require`, an UNSUPPORTED error naming the protocol otherwise) and
returns JSON-able data (:mod:`._records`). An unknown id is NOT_FOUND; a task
whose status forbids the action is a CONFLICT naming that status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._implementation import Task, TaskId
from .._status import Status
from ..backends._capabilities import (
    CountTasks,
    Delete,
    FetchById,
    Kill,
    ListTasks,
    ListWorkers,
    ResumeById,
    TaskResult,
    WaitForCompletion,
)
from ._errors import ExitCode, OperationError
from ._records import task_record, worker_record
from ._store import describe, require

__all__ = [
    "KILL_REASON",
    "PURGEABLE",
    "count_tasks",
    "kill_task",
    "list_tasks",
    "list_workers",
    "parse_status",
    "purge_tasks",
    "retry_task",
    "show_task",
    "task_ids",
]

PURGEABLE = (Status.Pending, Status.Done, Status.Failed, Status.Killed)
"""Statuses ``purge`` deletes. Running tasks belong to their workers: never purged."""

KILL_REASON = "killed by an operator"
"""The error recorded on a task killed without a reason given."""

_SCAN_PAGE = 500
"""Tasks read per ``list_tasks`` call when an action walks a whole status."""


def parse_status(text: str) -> Status:
    """A status from its name, any case (``failed`` -> ``Status.Failed``); USAGE otherwise."""
    for status in Status:
        if status.value.lower() == text.strip().lower():
            return status
    names = ", ".join(status.value for status in Status)
    raise OperationError(f"unknown status {text!r} (one of: {names})", ExitCode.USAGE)


async def list_tasks(
    backend: Any, status: Status | None = None, page: int = 1, page_size: int = 20
) -> list[dict[str, Any]]:
    """One page of tasks (pages start at 1), optionally of one status."""
    if page < 1 or page_size < 1:
        raise OperationError(
            f"page and page size must be >= 1 (got {page}, {page_size})", ExitCode.USAGE
        )
    lister = require(backend, ListTasks, "list tasks")
    tasks: list[Task] = await lister.list_tasks(status=status, page=page, page_size=page_size)
    return [task_record(task) for task in tasks]


async def _fetch(backend: Any, task_id: str, action: str) -> Task:
    fetcher = require(backend, FetchById, action)
    task: Task | None = await fetcher.fetch_by_id(TaskId(task_id))
    if task is None:
        raise OperationError(f"no task {task_id!r} in {describe(backend)}", ExitCode.NOT_FOUND)
    return task


async def show_task(backend: Any, task_id: str) -> dict[str, Any]:
    """Everything known of one task: fields, and its result or error once it is final."""
    task = await _fetch(backend, task_id, "show a task")
    result: TaskResult | None = None
    if task.parts.status.is_final and isinstance(backend, WaitForCompletion):
        try:
            [result] = await backend.check_status([TaskId(task_id)])
        except KeyError:  # deleted in between
            raise OperationError(
                f"no task {task_id!r} in {describe(backend)}", ExitCode.NOT_FOUND
            ) from None
    return task_record(task, result)


async def retry_task(backend: Any, task_id: str) -> dict[str, Any]:
    """Make a Failed, Killed or abandoned task Pending again (a fresh attempt budget)."""
    resumer = require(backend, ResumeById, "retry a task")
    task = await _fetch(backend, task_id, "retry a task")
    if not await resumer.resume_by_id(TaskId(task_id)):
        raise OperationError(
            f"task {task_id} is {task.parts.status.value}: only Failed, Killed or "
            f"abandoned tasks can be retried",
            ExitCode.CONFLICT,
        )
    return await show_task(backend, task_id)


async def kill_task(backend: Any, task_id: str, reason: str = KILL_REASON) -> dict[str, Any]:
    """Make a task that has not finished Killed: it never runs again."""
    killer = require(backend, Kill, "kill a task")
    task = await _fetch(backend, task_id, "kill a task")
    if not await killer.kill_by_id(TaskId(task_id), reason):
        raise OperationError(
            f"task {task_id} is {task.parts.status.value}: only tasks that have not "
            f"finished can be killed",
            ExitCode.CONFLICT,
        )
    return await show_task(backend, task_id)


async def task_ids(backend: Any, status: Status) -> list[TaskId]:
    """The ids of every task of ``status``, read a page at a time."""
    lister = require(backend, ListTasks, "list tasks")
    ids: list[TaskId] = []
    page = 1
    while True:
        tasks: list[Task] = await lister.list_tasks(status=status, page=page, page_size=_SCAN_PAGE)
        ids.extend(task.parts.task_id for task in tasks if task.parts.task_id is not None)
        if len(tasks) < _SCAN_PAGE:
            return ids
        page += 1


async def purge_tasks(
    backend: Any,
    status: Status,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete every task of ``status``; returns how many were deleted.

    ``progress(done, total)`` is called after each deletion. Tasks that
    changed status meanwhile (a worker took a Pending one) are left alone.
    """
    if status not in PURGEABLE:
        names = ", ".join(s.value for s in PURGEABLE)
        raise OperationError(
            f"purge --status {status.value}: tasks that are {status.value} belong to "
            f"their workers; purge one of: {names}",
            ExitCode.USAGE,
        )
    deleter = require(backend, Delete, "delete tasks")
    fetcher = require(backend, FetchById, "delete tasks")
    ids = await task_ids(backend, status)
    deleted = 0
    for done, task_id in enumerate(ids, 1):
        current: Task | None = await fetcher.fetch_by_id(task_id)
        if current is not None and current.parts.status is status:
            deleted += bool(await deleter.delete(task_id))
        if progress is not None:
            progress(done, len(ids))
    return deleted


async def count_tasks(backend: Any) -> dict[str, int]:
    """How many tasks of each status the backend holds (every status, zeros included).

    One call to a backend that can count (:class:`CountTasks`); otherwise
    every task is listed, status by status (fine for small stores only).
    """
    if isinstance(backend, CountTasks):
        counted: dict[Status, int] = await backend.count_tasks()
        return {status.value: counted.get(status, 0) for status in Status}
    counts: dict[str, int] = {}
    for status in Status:
        counts[status.value] = len(await task_ids(backend, status))
    return counts


async def list_workers(backend: Any) -> list[dict[str, Any]]:
    """The workers the backend knows of, with their last heartbeat."""
    lister = require(backend, ListWorkers, "list workers")
    return [worker_record(worker) for worker in await lister.list_workers()]
