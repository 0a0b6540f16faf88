"""What a backend can do beyond feeding a worker: apalis-core's capability traits.

Each capability is a runtime-checkable :class:`typing.Protocol`, so code can ask
``isinstance(backend, FetchById)``. Every backend documents which it supports
in a features table in its docstring (see :func:`feature_table`); the test
suite checks each table against what the backend really implements.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Literal, Protocol, runtime_checkable

import outcome

from .._errors import TaskError
from .._implementation import Task, TaskId
from .._status import Status

__all__ = [
    "Closeable",
    "CountTasks",
    "Delete",
    "FetchById",
    "Kill",
    "ListQueues",
    "ListTasks",
    "ListWorkers",
    "NamedQueue",
    "PushNowait",
    "QueueFamily",
    "RegisterWorker",
    "Reschedule",
    "ResumeAbandoned",
    "ResumeById",
    "TaskResult",
    "TaskSink",
    "Update",
    "Vacuum",
    "WaitForCompletion",
    "WorkerInfo",
    "feature_table",
    "supports",
]


@dataclasses.dataclass(frozen=True, slots=True)
class TaskResult:
    """A task's status and, once it is final, its outcome.

    ``result`` is ``outcome.Value(value)`` for a task that is ``Done``,
    ``outcome.Error(TaskError(message))`` for one that is ``Failed`` or
    ``Killed``, and ``None`` while the task is not final.
    """

    task_id: TaskId
    status: Status
    result: outcome.Outcome[Any] | None = None

    @property
    def is_final(self) -> bool:
        """True once the task will not run again."""
        return self.status.is_final

    def unwrap(self) -> Any:
        """The task's return value; raises its :class:`TaskError` if it failed.

        Raises ``ValueError`` while the task is not final.
        """
        if self.result is None:
            raise ValueError(f"task {self.task_id} is not finished (status {self.status})")
        return self.result.unwrap()

    @classmethod
    def done(cls, task_id: TaskId, value: Any) -> TaskResult:
        return cls(task_id, Status.Done, outcome.Value(value))

    @classmethod
    def failed(cls, task_id: TaskId, status: Status, message: str) -> TaskResult:
        return cls(task_id, status, outcome.Error(TaskError(message)))


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker a backend knows of: its name, owning process and last sign of life.

    Shared backends also give the worker run's ``id`` and its ``host``.
    """

    name: str
    pid: int
    started_at: float
    last_seen: float
    id: str | None = None
    host: str | None = None


@runtime_checkable
class TaskSink(Protocol):
    """Accepts new tasks."""

    async def push(self, args: Any) -> TaskId: ...
    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]: ...
    async def push_task(self, task: Task) -> TaskId: ...
    async def push_stream(self, items: AsyncIterable[Any]) -> int: ...


@runtime_checkable
class FetchById(Protocol):
    """Looks a task up by its id (None if the backend does not know it)."""

    async def fetch_by_id(self, task_id: TaskId | str) -> Task | None: ...


@runtime_checkable
class Update(Protocol):
    """Replaces a stored task's parts (status, attempts, run_at, metadata)."""

    async def update(self, task: Task) -> None: ...


@runtime_checkable
class Reschedule(Protocol):
    """Queues a task again, due ``delay`` seconds from now."""

    async def reschedule(self, task: Task, delay: float) -> None: ...


@runtime_checkable
class Vacuum(Protocol):
    """Removes finished tasks; returns how many were removed."""

    async def vacuum(self) -> int: ...


@runtime_checkable
class ResumeById(Protocol):
    """Makes a failed, killed or abandoned task Pending again; False if it cannot."""

    async def resume_by_id(self, task_id: TaskId | str) -> bool: ...


@runtime_checkable
class ResumeAbandoned(Protocol):
    """Re-queues Running tasks whose worker is gone; returns how many."""

    async def resume_abandoned(self) -> int: ...


@runtime_checkable
class RegisterWorker(Protocol):
    """Records a worker as alive (its heartbeat)."""

    async def register_worker(self, name: str) -> None: ...


@runtime_checkable
class ListWorkers(Protocol):
    """Lists the workers a backend knows of."""

    async def list_workers(self) -> list[WorkerInfo]: ...


@runtime_checkable
class ListTasks(Protocol):
    """Lists tasks, optionally by status, one page at a time (pages start at 1)."""

    async def list_tasks(
        self, status: Status | None = None, page: int = 1, page_size: int = 10
    ) -> list[Task]: ...


@runtime_checkable
class CountTasks(Protocol):
    """How many tasks of this queue are in each status (every status, zeros included).

    One query where :class:`ListTasks` would read every task: the board asks
    every few seconds. Listed as a ``count_tasks`` row in the features tables.
    """

    async def count_tasks(self) -> dict[Status, int]: ...


@runtime_checkable
class ListQueues(Protocol):
    """The names of the store's queues that hold tasks, and this handle's own, sorted.

    For a store with named queues (``storage.queue(name)``); the board shows
    each. Listed as a ``list_queues`` row in the features tables.
    """

    async def list_queues(self) -> list[str]: ...


@runtime_checkable
class Delete(Protocol):
    """Forgets one task for good; False if the backend does not hold it.

    An operation rather than a worker capability: features tables list it as a
    ``delete`` row (the command's ``purge`` and the board use it).
    """

    async def delete(self, task_id: TaskId | str) -> bool: ...


@runtime_checkable
class Kill(Protocol):
    """Makes a task that has not finished ``Killed`` (never run again), recording ``reason``.

    False for an unknown id or a task already final. A task running when it is
    killed finishes its current execution, but its worker's acknowledgement is
    fenced off (or refused), so the task stays Killed. Listed as a ``kill`` row
    in the features tables (the command's ``kill`` and the board use it).
    """

    async def kill_by_id(self, task_id: TaskId | str, reason: str = "killed") -> bool: ...


@runtime_checkable
class WaitForCompletion(Protocol):
    """Reports tasks' results as they finish."""

    def wait_for(self, task_ids: Iterable[TaskId | str]) -> AsyncIterator[TaskResult]: ...
    async def wait_for_single(self, task_id: TaskId | str) -> TaskResult: ...
    async def check_status(self, task_ids: Iterable[TaskId | str]) -> list[TaskResult]: ...


@runtime_checkable
class PushNowait(Protocol):
    """Queues a task synchronously, from any thread (``MemoryStorage``)."""

    def push_nowait(self, args: Any) -> TaskId: ...


# -- the shapes of backend the typed-task layer and pools work with -----------------


@runtime_checkable
class QueueFamily(Protocol):
    """Hands out one handle per named queue (``JsonStorage``, ``MemoryQueues``...)."""

    def queue(self, name: str) -> Any: ...


@runtime_checkable
class NamedQueue(Protocol):
    """A handle on one named queue of a family (``queue_name`` is its name)."""

    @property
    def queue_name(self) -> str: ...


@runtime_checkable
class Closeable(Protocol):
    """A handle that is released with ``close()`` (a queue opened from a family)."""

    def close(self) -> None: ...


def supports(backend: object, capability: type) -> bool:
    """Whether ``backend`` (an instance, or a backend class) implements ``capability``.

    ``capability`` is one of the runtime-checkable protocols of this module; a
    class is checked by its methods (``issubclass``), an instance by
    ``isinstance``.
    """
    if isinstance(backend, type):
        return issubclass(backend, capability)
    return isinstance(backend, capability)


Support = Literal["supported", "limited", "not supported"]

CAPABILITIES: dict[str, type] = {
    "TaskSink": TaskSink,
    "FetchById": FetchById,
    "Update": Update,
    "Reschedule": Reschedule,
    "Vacuum": Vacuum,
    "ResumeById": ResumeById,
    "ResumeAbandoned": ResumeAbandoned,
    "RegisterWorker": RegisterWorker,
    "ListWorkers": ListWorkers,
    "ListTasks": ListTasks,
    "WaitForCompletion": WaitForCompletion,
}

_ROW = re.compile(r"^\s*(\w+)\s+(supported|limited|not supported)\b", re.MULTILINE)


def feature_table(backend: type | object) -> dict[str, Support]:
    """The capabilities a backend's docstring declares, by protocol name.

    The table is a reStructuredText simple table whose rows start with a
    capability name and its support: ``supported``, ``limited`` or
    ``not supported``. Rows naming something other than a capability protocol
    (``push_nowait``, say) are left out.
    """
    doc = (backend if isinstance(backend, type) else type(backend)).__doc__ or ""
    table: dict[str, Support] = {}
    for name, support in _ROW.findall(doc):
        if name in CAPABILITIES:
            table[name] = support
    return table
